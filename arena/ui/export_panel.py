"""The export panel of the Admin app: build every export table and report.html, download a zip.

The same files as `arena export` (:func:`arena.reports.export.export_workspace`), zipped
in a fresh temporary folder that Gradio serves as a download. Its **Raters** filter is the
Leaderboard tab's (a kind, or ``group: NAME``; *(all)*: every kind but the judges), as
`arena export --rater-kind/--rater-group` take it.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

import gradio as gr

from arena.reports.export import FORMATS, ExportError, export_workspace
from arena.reports.frames import ReportError, filter_options
from arena.ui.filter_row import ALL, filters_of, rater_choices

TITLE = "Exports"


def build_zip(store, fmt: str = "csv", raters: str | None = None) -> tuple[Path, str]:
    """Export into a fresh temporary folder and zip it: (zip path, summary markdown).

    ``raters`` is a value of the Raters dropdown (a kind, ``group: NAME``, or *(all)*);
    raises :class:`arena.reports.frames.ReportError` for one it cannot read."""
    filters = filters_of(rater_kind=raters)
    folder = Path(tempfile.mkdtemp(prefix="arena-export-"))
    result = export_workspace(store, folder / "export", fmt=fmt, filters=filters)
    archive = folder / f"arena-export-{fmt}.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(result.files):
            zf.write(path, arcname=path.name)
    rows = ", ".join(f"{name} {n}" for name, n in result.rows.items())
    return archive, (
        f"Export ready ({fmt}, votes: {filters.describe()}): {len(result.files)} files. "
        f"Rows: {rows}."
    )


def run(store, fmt: str | None, raters: str | None = None):
    """The Build button: (message, download button)."""
    try:
        path, text = build_zip(store, fmt or "csv", raters)
    except (ExportError, ReportError) as exc:
        return f"**Export failed:** {exc}", gr.DownloadButton(visible=False)
    return text, gr.DownloadButton(value=str(path), visible=True)


def render(store) -> None:
    gr.Markdown(
        "Votes joined with prompts, models and image hashes; scores; the leaderboard; the "
        "agreement tables and the rater groups compared; and a self-contained `report.html` "
        "— the same files as `arena export --out DIR`. **Raters** restricts the votes of "
        "every table, as `--rater-kind` / `--rater-group` do. Columns are documented in "
        "docs/exports.md."
    )
    with gr.Row():
        fmt = gr.Dropdown(list(FORMATS), value="csv", label="Format")
        raters = gr.Dropdown(rater_choices(filter_options(store)), value=ALL, label="Raters")
        build = gr.Button("Build export", variant="primary")
    message = gr.Markdown()
    download = gr.DownloadButton("Download export (.zip)", visible=False)
    build.click(
        lambda chosen, who: run(store, chosen, who),
        [fmt, raters],
        [message, download],
        api_visibility="private",
    )
