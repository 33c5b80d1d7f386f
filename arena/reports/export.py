"""Exports: the votes, scores, leaderboard and agreement tables as files, and a
self-contained ``report.html``.

Tables are built by pure functions of the store's frames (:func:`votes_table`,
:func:`scores_table`) and written by :func:`write_table` in one of
:data:`FORMATS`. :func:`export_workspace` reads the store once, computes the
leaderboard (:mod:`arena.reports.leaderboard`) and the agreement report
(:mod:`arena.stats.agreement`) with the workspace's seed, and writes everything into
a staging folder that is moved into place only when complete: an export that
fails leaves the previous one untouched.

Determinism: for the same data (and seed and rounds) the files are identical
byte for byte: rows are sorted, floats are written with 10 significant digits,
times are the votes' own times in ISO format, and nothing records when the
export ran.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena.reports import plots
from arena.reports.agreement import AgreementService
from arena.reports.frames import load_report_frames
from arena.reports.leaderboard import LeaderboardService, direction_note
from arena.reports.stand_in import stand_in_label, stand_in_warning
from arena.stats.agreement import PROTOCOLS, AgreementReport
from arena.storage.columnar import positions
from arena.storage.table_io import restore_text, write_csv

FORMATS = ("csv", "parquet", "json")
FLOAT_FORMAT = "%.10g"
JSON_DIGITS = 10
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
PROMPT_COLUMNS = {  # votes table column -> Store.prompts_frame() column
    "prompt_external_id": "external_id",
    "prompt_text": "text",
    "prompt_tags": "tags",
}

VOTE_COLUMNS = [
    "vote_id",
    "created_at",
    "rater_id",
    "rater_kind",
    "prompt_id",
    "prompt_set",
    "prompt_external_id",
    "prompt_text",
    "prompt_tags",
    "category",
    "left_model",
    "right_model",
    "left_image_id",
    "right_image_id",
    "left_sha256",
    "right_sha256",
    "outcome",
    "winner_model",
    "decision_ms",
    "flag",
    "policy",
]
SCORE_COLUMNS = [
    "image_id",
    "sha256",
    "model",
    "prompt_id",
    "metric",
    "version",
    "value",
    "higher_is_better",
    "broken",
]


MODEL_METRIC_COLUMNS = [
    "model",
    "metric",
    "reference",
    "value",
    "higher_is_better",
    "std",
    "n",
    "extractor",
    "warning",
]


class ExportError(ValueError):
    """An export that cannot be written; the message says how to fix it."""


# -- tables ------------------------------------------------------------------------------------
def votes_table(votes: pd.DataFrame, prompts: pd.DataFrame) -> pd.DataFrame:
    """One row per vote: the prompt, both models and image hashes, the outcome.

    ``votes`` is ``Store.votes_frame()`` (the votes the leaderboard counts),
    ``prompts`` is ``Store.prompts_frame()``. Rows in vote order (time, id).
    """
    stamp = pd.to_datetime(votes["created_at"]).to_numpy("datetime64[us]")
    order = np.lexsort((votes["vote_id"].to_numpy(np.int64), stamp.view(np.int64)))
    if np.array_equal(order, np.arange(len(order))):  # Store.votes_frame is in vote order
        out = votes.reset_index(drop=True)
    else:
        out, stamp = votes.iloc[order].reset_index(drop=True), stamp[order]
    at = positions(out["prompt_id"].to_numpy(np.int64), prompts["prompt_id"].to_numpy(np.int64))
    for column, name in PROMPT_COLUMNS.items():
        out[column] = prompts[name].array.take(at, allow_fill=True)  # -1: no such prompt
    outcome = out["outcome"].to_numpy()
    out["winner_model"] = np.where(
        outcome == "left",
        out["left_model"].to_numpy(),
        np.where(outcome == "right", out["right_model"].to_numpy(), ""),
    )
    text = np.datetime_as_string(stamp, unit="us").astype(object)  # TIME_FORMAT, vectorised
    text[np.isnat(stamp)] = None
    out["created_at"] = text
    out["decision_ms"] = out["decision_ms"].astype("Int64")
    return out[VOTE_COLUMNS]


def scores_table(scores: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """One row per image and metric (and version), with the image's hash, model and prompt.

    ``images`` should include broken images (``images_frame(include_broken=True)``);
    their scores are kept and marked in ``broken``.
    """
    img = images[["image_id", "sha256", "model", "prompt_id", "broken"]]
    out = scores.merge(img, on="image_id", how="left", sort=False)
    out["prompt_id"] = out["prompt_id"].astype("Int64")
    out = out.sort_values(["image_id", "metric", "version"], kind="stable")
    return out[SCORE_COLUMNS].reset_index(drop=True)


def model_metrics_table(model_metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model × model-level metric × reference set (``Store.model_metrics_frame()``).

    ``extractor`` is the feature key the number was computed from
    (``name@version#fingerprint``, with ``+demo-random`` for the demo's random-weight
    stand-ins); ``reference`` is "" for reference-free numbers (diversity).
    """
    if model_metrics is None or model_metrics.empty:
        return pd.DataFrame(columns=MODEL_METRIC_COLUMNS)
    out = model_metrics[model_metrics["model_kind"] != "reference"].copy()
    out["extractor"] = [str(d.get("features", "")) for d in out["details"]]
    out["n"] = out["n"].astype("Int64")
    out = out.sort_values(["model", "metric", "reference"], kind="stable")
    return out[MODEL_METRIC_COLUMNS].reset_index(drop=True)


def leaderboard_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard frame as exported (ranked models by rating, then provisional ones)."""
    return frame.reset_index(drop=True)


# -- writing -----------------------------------------------------------------------------------
def write_table(frame: pd.DataFrame, folder: Path, name: str, fmt: str) -> Path:
    """Write ``frame`` as ``folder/name.<fmt>``; deterministic bytes for the same frame."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    path = Path(folder) / f"{name}.{fmt}"
    if fmt == "csv":  # formulas neutralised for spreadsheets; parquet and json keep raw text
        write_csv(frame, path, FLOAT_FORMAT)  # the bytes of pandas' to_csv, faster
    elif fmt == "json":
        text = frame.to_json(
            orient="records", double_precision=JSON_DIGITS, force_ascii=False, indent=None
        )
        path.write_text(text + "\n", encoding="utf-8")
    else:
        frame.to_parquet(path, index=False, engine="pyarrow", compression="zstd")
    return path


def read_table(path: str | Path) -> pd.DataFrame:
    """Read an exported table back (by its extension)."""
    path = Path(path)
    if path.suffix == ".csv":  # text cells lose the apostrophe that neutralised a formula
        return restore_text(pd.read_csv(path, keep_default_na=False, na_values=[""]))
    if path.suffix == ".json":
        return pd.read_json(path, orient="records", dtype=False)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    raise ExportError(f"{path}: expected a .csv, .json or .parquet export.")


# -- the report --------------------------------------------------------------------------------
def _fmt_table(frame: pd.DataFrame, digits: int = 3, max_rows: int = 200) -> str:
    if frame is None or frame.empty:
        return "<p><em>Nothing yet.</em></p>"
    shown = frame.head(max_rows).copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = [("–" if pd.isna(v) else f"{v:.{digits}f}") for v in shown[col]]
    more = len(frame) - len(shown)
    note = f"<p><em>{more} more rows in the exported file.</em></p>" if more > 0 else ""
    return shown.to_html(index=False, border=0, classes="t", na_rep="–") + note


def _img(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{plots.png_base64(fig)}">'


REPORT_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.t th,table.t td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right}
table.t th{background:#f3f3f3}table.t td:first-child,table.t th:first-child{text-align:left}
img{max-width:100%}p.note{color:#555;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
"""


def report_html(
    leaderboard: pd.DataFrame,
    report: AgreementReport,
    summary: dict,
    files: list[str],
    model_metrics: pd.DataFrame | None = None,
) -> str:
    """A self-contained HTML report: tables and base64 PNG figures, no scripts, no links out."""
    acc = report.accuracy
    metrics = list(report.info.get("metrics", []))
    protocol_list = "".join(
        f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in PROTOCOLS.items()
    )
    boards = report.leaderboards
    side_by_side = (
        boards.pivot(index="model", columns="decider", values="rating").reset_index()
        if len(boards)
        else boards
    )
    slice_figs = "".join(
        _img(plots.slices_figure(report.slices, kind=kind), f"accuracy by {kind}")
        for kind in ("category", "tags", "model pair")
        if (report.slices["slice_kind"] == kind).any()
    )
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    file_list = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in files)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>t2i-arena report</title>",
        f"<style>{REPORT_CSS}</style></head><body>",
        "<h1>t2i-arena report</h1>",
        f"<table class='t'>{facts}</table>",
        "<h2>Leaderboard</h2>",
        "<p class='note'>Bradley-Terry ratings on the Elo scale (ties and both-bad as half a win "
        "each way) with bootstrap 95% intervals; rank is the rank upper bound. A model with "
        "<code>identified</code> false never won or never lost against the others: the votes "
        "determine no finite rating for it, so it has none and is not ranked.</p>",
        _fmt_table(leaderboard, 3),
        _img(plots.ratings_figure(leaderboard), "ratings with intervals"),
        *_model_metrics_section(model_metrics),
        "<h2>Which metric agrees with the raters</h2>",
        f"<p class='note'>Pairwise accuracy of each metric. Protocols:</p><ul>{protocol_list}</ul>",
        "<p class='note'><code>ci_low</code>/<code>ci_high</code>: bootstrap over prompts "
        "(the default interval); <code>wilson_*</code>: Wilson interval treating votes as "
        "independent. The human ceiling is how often one rater agrees with the majority of "
        "the other raters of the same image pair. <code>chance</code>: what a metric blind to "
        "the images expects under the protocol (0.5 for a and b; for c, with human ties "
        "among the outcomes, the better of always predicting a tie and always a side: "
        "max(tie share, (1 − tie share)/2)); read each accuracy against it.</p>",
        _fmt_table(acc, 3),
        _img(plots.accuracy_figure(acc), "accuracy by metric and protocol"),
        "<h2>Model level</h2>",
        "<p class='note'>Spearman and Kendall correlation between the human ratings and each "
        "metric's per-model mean (<code>level</code> = image mean) or model-level number "
        "(<code>level</code> = model: KID, FID, CMMD, FD-DINO, diversity, AS, oriented so that "
        "&gt; 0 means agreement, e.g. lower FID for a higher rating; their intervals bootstrap "
        "the human side only); <code>spearman_bt</code> compares with the metric's own "
        "Bradley-Terry leaderboard (the same battles decided by the metric). "
        "<code>spearman_p</code>, <code>kendall_p</code>: exact permutation p-values across "
        "the models (two-sided; 9,999 random pairings above 8 models). "
        "<code>few_models</code>: fewer than 6 models, so no bootstrap interval is given "
        "(the prompt bootstrap holds the models fixed; read the p-value).</p>",
        _fmt_table(report.correlations, 3),
        _img(
            plots.scatter_figure(
                report.models,
                [*metrics, *report.info.get("model_metrics", [])],
                stand_in_label(_extractors(model_metrics)),
            ),
            "human rating vs metric per model",
        ),
        "<h3>Leaderboards side by side (ratings)</h3>",
        "<p class='note'>– : no rating; that decider never (or always) preferred the model, "
        "so its rating is not identified (<code>identified</code> in "
        "<code>agreement_leaderboards</code>).</p>",
        _fmt_table(side_by_side, 1),
        "<h2>Where metrics fail: slices</h2>",
        f"<p class='note'>Protocol <code>{html.escape(str(report.info.get('slice_protocol')))}"
        "</code>. <code>prompts</code>: distinct prompts in the slice; <code>few_prompts</code>: "
        "fewer than 20, too few clusters for the prompt bootstrap, so its interval (marked * in "
        "the figures) is not to be trusted; compare the Wilson interval, which is too narrow "
        "when votes on a prompt agree.</p>",
        slice_figs or "<p><em>Nothing yet.</em></p>",
        _fmt_table(report.slices, 3),
        "<h2>Position bias</h2>",
        "<p class='note'>Share of decisive votes won by the left image, exact binomial test "
        "against 1/2.</p>",
        _fmt_table(report.position_bias, 4),
        "<h2>Inter-rater reliability</h2>",
        "<p class='note'>Krippendorff's α (nominal) over image pairs with several raters.</p>",
        _fmt_table(report.reliability, 3),
        f"<h2>Files</h2><ul>{file_list}</ul>",
        "<p class='note'>Column definitions: docs/exports.md.</p>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


def _extractors(model_metrics: pd.DataFrame | None) -> list:
    """The feature keys of the exported model-level table (its ``extractor`` column)."""
    return [] if model_metrics is None else list(model_metrics.get("extractor", []))


def _model_metrics_section(model_metrics: pd.DataFrame | None) -> list[str]:
    if model_metrics is None or model_metrics.empty:
        return []
    warning = stand_in_warning(_extractors(model_metrics))
    warning = f"<p class='note'><strong>{html.escape(warning)}</strong></p>" if warning else ""
    return [
        "<h2>Model-level metrics</h2>",
        "<p class='note'>One number per model over all its images, against the reference set "
        f"(KID: mean ± std over subsets); {html.escape(direction_note(model_metrics))}. "
        "<code>extractor</code> is the feature network the number was computed from.</p>",
        warning,
        _fmt_table(model_metrics, 4),
    ]


# -- the whole export --------------------------------------------------------------------------
@dataclass
class ExportResult:
    folder: Path
    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


def compute_tables(store, rounds: int | None = None, seed: int | None = None):
    """Everything an export writes, as frames: (tables by name, leaderboard, report, summary).

    The same frames, metric columns and agreement report as the Leaderboard and
    Agreement pages with no filter (:mod:`arena.reports.frames`), at ``seed`` and
    ``rounds`` (default: the settings').
    """
    settings = store.settings
    rounds = settings.bootstrap_rounds if rounds is None else int(rounds)
    seed = settings.seed if seed is None else int(seed)
    if rounds < 1:
        raise ExportError(f"bootstrap rounds {rounds}: expected at least 1.")
    # The leaderboard and the agreement report come from the pages' own services (one
    # cache per store): an export right after a page view does not compute them again,
    # and on a miss they are computed from these frames (the votes are read once). A vote
    # landing while the frames load changes the signature: read again.
    for _ in range(5):
        frames = load_report_frames(store)
        if store.data_signature() != frames.signature:
            continue
        board = LeaderboardService.of(store).get(rounds=rounds, seed=seed, frames=frames).frame
        report = AgreementService.of(store).get(rounds=rounds, seed=seed, frames=frames).report
        break
    else:
        raise ExportError("the data kept changing while the export read it; try again.")
    votes, prompts = frames.votes, frames.prompts
    tables = {
        "votes": votes_table(votes, prompts),
        "scores": scores_table(frames.scores, frames.images_all),
        "leaderboard": leaderboard_table(board),
        "model_metrics": model_metrics_table(frames.model_metrics),
        **report.tables(),
    }
    summary = {
        "votes": len(votes),
        "models": len(board),
        "prompts": len(prompts),
        "images": len(frames.images_all),
        "metrics": ", ".join(report.info.get("metrics", [])) or "none",
        "raters": int(votes["rater_id"].nunique()) if len(votes) else 0,
        "bootstrap rounds": rounds,
        "seed": seed,
    }
    return tables, board, report, summary


def export_workspace(
    store,
    out: str | Path,
    fmt: str = "csv",
    rounds: int | None = None,
    seed: int | None = None,
    report: bool = True,
) -> ExportResult:
    """Write every table (and ``report.html``) into ``out``; all or nothing."""
    if fmt not in FORMATS:
        raise ExportError(f"format {fmt!r}: expected one of {', '.join(FORMATS)}.")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; give --out a folder (it is created if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"{out}: cannot create the folder ({exc.strerror}).") from None
    if not os.access(out, os.W_OK):
        raise ExportError(f"{out} is not writable; choose another --out folder.")
    tables, board, agreement, summary = compute_tables(store, rounds, seed)
    result = ExportResult(folder=out)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        names = []
        for name, frame in tables.items():
            write_table(frame, staging, name, fmt)
            names.append(f"{name}.{fmt}")
            result.rows[name] = len(frame)
        manifest = {
            "format": fmt,
            "summary": summary,
            "tables": {
                name: {"file": f"{name}.{fmt}", "rows": len(frame), "columns": list(frame.columns)}
                for name, frame in tables.items()
            },
        }
        if report:
            names.append("report.html")
            (staging / "report.html").write_text(
                report_html(
                    board,
                    agreement,
                    summary,
                    [*names, "manifest.json"],
                    tables["model_metrics"],
                ),
                encoding="utf-8",
            )
        names.append("manifest.json")
        (staging / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        for name in names:
            os.replace(staging / name, out / name)
            result.files.append(out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result
