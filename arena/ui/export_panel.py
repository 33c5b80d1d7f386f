"""The export panel of the Admin app: build every export table and report.html, download a zip.

The same files as `arena export` (:func:`arena.reports.export.export_workspace`), zipped
in a fresh temporary folder that Gradio serves as a download.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import gradio as gr

from arena.reports.export import FORMATS, ExportError, export_workspace

TITLE = "Exports"


def build_zip(store, fmt: str = "csv") -> tuple[Path, str]:
    """Export into a fresh temporary folder and zip it: (zip path, summary markdown)."""
    folder = Path(tempfile.mkdtemp(prefix="arena-export-"))
    result = export_workspace(store, folder / "export", fmt=fmt)
    archive = folder / f"arena-export-{fmt}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(result.files):
            zf.write(path, arcname=path.name)
    rows = ", ".join(f"{name} {n}" for name, n in result.rows.items())
    return archive, f"Export ready ({fmt}): {len(result.files)} files. Rows: {rows}."


def render(store) -> None:
    gr.Markdown(
        "Votes joined with prompts, models and image hashes; scores; the leaderboard; the "
        "agreement tables; and a self-contained `report.html` — the same files as "
        "`arena export --out DIR`. Columns are documented in docs/exports.md."
    )
    with gr.Row():
        fmt = gr.Dropdown(list(FORMATS), value="csv", label="Format")
        build = gr.Button("Build export", variant="primary")
    message = gr.Markdown()
    download = gr.DownloadButton("Download export (.zip)", visible=False)

    def run(chosen: str):
        try:
            path, text = build_zip(store, chosen or "csv")
        except ExportError as exc:
            return f"**Export failed:** {exc}", gr.DownloadButton(visible=False)
        return text, gr.DownloadButton(value=str(path), visible=True)

    build.click(run, fmt, [message, download], api_visibility="private")
