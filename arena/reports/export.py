"""Exports: the votes, scores, leaderboard and agreement tables as files, and a
self-contained ``report.html``.

Tables are built by pure functions of the store's frames (:func:`votes_table`,
:func:`scores_table`) and written by :func:`write_table` in one of
:data:`FORMATS`. :func:`export_workspace` reads the store once, computes the
leaderboard (:mod:`arena.reports.leaderboard`, with the rating method a
:class:`arena.reports.methods.BoardOptions` names: its style coefficients and flip counts
become tables of their own), the agreement report (:mod:`arena.stats.agreement`) and the
comparison of the rater groups (:mod:`arena.stats.agreement.groups`) with the workspace's
seed, and writes everything (``report.html``:
:mod:`arena.reports.report_page`) into a staging folder that is moved into place only
when complete: an export that fails leaves the previous one untouched.

Determinism: for the same data (and seed and rounds) the files are identical
byte for byte: rows are sorted, floats are written with 10 significant digits,
times are the votes' own times in ISO format, and nothing records when the
export ran.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from arena.reports import failures as fl
from arena.reports.agreement import AgreementService
from arena.reports.analyses import Analyses, AnalysesService
from arena.reports.frames import Filters, ReportError, load_report_frames
from arena.reports.leaderboard import LeaderboardResult, LeaderboardService
from arena.reports.methods import BoardOptions
from arena.reports.report_page import report_html
from arena.stats.agreement import AgreementReport
from arena.stats.agreement.groups import GroupComparison
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
    "rater_group",
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
    "details",
]


PROMPT_TABLE_COLUMNS = [
    "prompt_id",
    "prompt_set",
    "external_id",
    "text",
    "tags",
    "category",
    "held_out",
]
MODEL_METRIC_COLUMNS = [
    "model",
    "metric",
    "reference",
    "slice",
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
    outcome = out["outcome"]  # Series ops: Arrow-backed strings stay in Arrow
    right = out["right_model"].where(outcome == "right", "")
    out["winner_model"] = out["left_model"].where(outcome == "left", right)
    text = np.datetime_as_string(stamp, unit="us").astype(object)  # TIME_FORMAT, vectorised
    text[np.isnat(stamp)] = None
    out["created_at"] = text
    out["decision_ms"] = out["decision_ms"].astype("Int64")
    if "rater_group" not in out:  # a frame from before rater groups
        out["rater_group"] = None
    return out[VOTE_COLUMNS]


def details_text(details) -> str | None:
    """A score's details as compact JSON with sorted keys (the same bytes every export)."""
    if not isinstance(details, dict):
        return None
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def scores_table(
    scores: pd.DataFrame, images: pd.DataFrame, details: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per image and metric (and version), with the image's hash, model and prompt.

    ``images`` should include broken images (``images_frame(include_broken=True)``);
    their scores are kept and marked in ``broken``. ``details``
    (``Store.score_details_frame()``) fills the ``details`` column (JSON text) where a
    metric stores them (the tags metric's per-tag hits); empty elsewhere.
    """
    img = images[["image_id", "sha256", "model", "prompt_id", "broken"]]
    out = scores.merge(img, on="image_id", how="left", sort=False)
    if details is not None and len(details):
        text = details.assign(details=[details_text(d) for d in details["details"]])
        out = out.merge(text, on=["image_id", "metric", "version"], how="left", sort=False)
    else:
        out["details"] = None
    out["prompt_id"] = out["prompt_id"].astype("Int64")
    out = out.sort_values(["image_id", "metric", "version"], kind="stable")
    return out[SCORE_COLUMNS].reset_index(drop=True)


def prompts_table(prompts: pd.DataFrame) -> pd.DataFrame:
    """One row per prompt (``Store.prompts_frame()``): its set, id, text, tags, category
    and whether its set is held out (``arena prompt-sets``)."""
    return prompts[PROMPT_TABLE_COLUMNS].reset_index(drop=True)


def model_metrics_table(model_metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per model × model-level metric × reference set × slice
    (``Store.model_metrics_frame()``).

    ``extractor`` is the feature key the number was computed from
    (``name@version#fingerprint``, with ``+demo-random`` for the demo's random-weight
    stand-ins); ``reference`` is "" for reference-free numbers (diversity); ``slice``
    is "" for all the model's images, else the prompt category or set it is over
    (``category=<name>``, ``prompt_set=<name>``: ``arena distribution --by``);
    ``warning`` holds the sample-size, slice and image-size warnings.
    """
    if model_metrics is None or model_metrics.empty:
        return pd.DataFrame(columns=MODEL_METRIC_COLUMNS)
    out = model_metrics[model_metrics["model_kind"] != "reference"].copy()
    out["extractor"] = [str(d.get("features", "")) for d in out["details"]]
    out["n"] = out["n"].astype("Int64")
    if "slice" not in out.columns:
        out["slice"] = ""
    out = out.sort_values(["model", "metric", "reference", "slice"], kind="stable")
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


# -- the whole export --------------------------------------------------------------------------
@dataclass
class ExportResult:
    folder: Path
    files: list[Path] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)


@dataclass
class ExportTables:
    """Everything an export writes, as frames: the tables by name, the leaderboard's
    result (its options, notes and extras), the agreement report, the summary and the
    comparison of the rater groups."""

    tables: dict[str, pd.DataFrame]
    board: LeaderboardResult
    report: AgreementReport
    summary: dict
    groups: GroupComparison | None = None
    failures: dict[str, pd.DataFrame] = field(default_factory=dict)
    analyses: Analyses | None = None


def compute_tables(store, rounds: int | None = None, seed: int | None = None):
    """(tables by name, leaderboard frame, agreement report, summary) of
    :func:`compute_export` with the default rating method."""
    out = compute_export(store, rounds, seed)
    return out.tables, out.board.frame, out.report, out.summary


def compute_export(
    store,
    rounds: int | None = None,
    seed: int | None = None,
    options: BoardOptions | None = None,
    filters: Filters | None = None,
) -> ExportTables:
    """Everything an export writes.

    The same frames, metric columns and agreement report as the Leaderboard and
    Agreement pages with no filter (:mod:`arena.reports.frames`), at ``seed`` and
    ``rounds`` (default: the settings'), the leaderboard made as ``options`` says
    (default :class:`BoardOptions`: ties split, bootstrap, flip counts). Raises
    :class:`ExportError` for options the leaderboard refuses (e.g. a style feature
    without stored values). ``filters`` (default none: every kind but judges) restricts
    the votes of every table, e.g. to one rater kind or group.
    """
    settings = store.settings
    rounds = settings.bootstrap_rounds if rounds is None else int(rounds)
    seed = settings.seed if seed is None else int(seed)
    options = options or BoardOptions()
    if rounds < 1:
        raise ExportError(f"bootstrap rounds {rounds}: expected at least 1.")
    # The leaderboard and the agreement report come from the pages' own services (one
    # cache per store): an export right after a page view does not compute them again,
    # and on a miss they are computed from these frames (the votes are read once). A vote
    # landing while the frames load changes the signature: read again.
    for _ in range(5):
        frames = load_report_frames(store, filters)
        if store.data_signature() != frames.signature:
            continue
        try:
            board = LeaderboardService.of(store).get(
                rounds=rounds, seed=seed, frames=frames, options=options
            )
        except ReportError as exc:  # an option the leaderboard refuses (a style feature)
            raise ExportError(f"leaderboard: {exc}") from None
        agreement = AgreementService.of(store)
        report = agreement.get(rounds=rounds, seed=seed, frames=frames).report
        groups = agreement.groups(rounds=rounds, seed=seed, frames=frames).comparison
        details = store.score_details_frame()
        analyses = (
            AnalysesService.of(store)
            .get(rounds=rounds, seed=seed, frames=frames, details=details)
            .analyses
        )
        break
    else:
        raise ExportError("the data kept changing while the export read it; try again.")
    votes, prompts = frames.votes, frames.prompts
    rates = fl.rates_for(store, frames)
    failures = fl.export_tables(
        rates, fl.correlation_with(rates, report.models, seed), store.image_flags_frame()
    )
    tables = {
        "votes": votes_table(votes, prompts),
        "scores": scores_table(frames.scores, frames.images_all, details),
        "leaderboard": leaderboard_table(board.frame),
        **({"leaderboard_style": board.style} if options.style else {}),
        **({"leaderboard_flips": board.flips} if options.flips else {}),
        "prompts": prompts_table(prompts),
        "model_metrics": model_metrics_table(
            frames.model_metrics if frames.model_metrics_all is None else frames.model_metrics_all
        ),
        **report.tables(),
        **groups.tables(),
        **failures,
        **analyses.tables(),
    }
    summary = {
        "votes": len(votes),
        "models": len(board.frame),
        "prompts": len(prompts),
        "images": len(frames.images_all),
        "metrics": ", ".join(report.info.get("metrics", [])) or "none",
        "raters": int(votes["rater_id"].nunique()) if len(votes) else 0,
        "rater groups": ", ".join(groups.groups) or "none",
        "judges": int(report.judges.info.get("judges", 0)),
        "reviewed images": int(failures["image_flags"]["image_id"].nunique()),
        "bootstrap rounds": rounds,
        "seed": seed,
        "ties": options.ties,
        "intervals": options.ci,
        "style control": ", ".join(options.style) or "off",
        "reweight floor": "off" if options.reweight is None else f"{options.reweight:g}",
        "flip counts": "on" if options.flips else "off",
        "paired metrics": "on" if frames.paired else "off",
        "common set": analyses.common.describe(),
    }
    if filters is not None and filters.key() != Filters().key():
        summary["votes counted"] = filters.describe()
    return ExportTables(tables, board, report, summary, groups, failures, analyses)


def board_metadata(board: LeaderboardResult) -> dict:
    """The rating method of an export and what it found, for ``manifest.json``: the
    options, the notes and (ties davidson) the tie model."""
    options = board.options
    meta = {
        "ties": options.ties,
        "ci": options.ci,
        "style": list(options.style),
        "reweight": options.reweight,
        "flips": options.flips,
        "notes": list(board.notes),
    }
    tie = board.ratings.tie_model if board.ratings is not None else None
    if tie is not None:
        meta["tie_model"] = tie.as_dict()
    return meta


def export_workspace(
    store,
    out: str | Path,
    fmt: str = "csv",
    rounds: int | None = None,
    seed: int | None = None,
    report: bool = True,
    options: BoardOptions | None = None,
    filters: Filters | None = None,
) -> ExportResult:
    """Write every table (and ``report.html``) into ``out``; all or nothing. ``options``:
    the leaderboard's rating method, ``filters`` the votes counted (:func:`compute_export`)."""
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
    computed = compute_export(store, rounds, seed, options, filters)
    tables, board, summary = computed.tables, computed.board, computed.summary
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
            "leaderboard": board_metadata(board),
            "tables": {
                name: {"file": f"{name}.{fmt}", "rows": len(frame), "columns": list(frame.columns)}
                for name, frame in tables.items()
            },
        }
        if report:
            names.append("report.html")
            (staging / "report.html").write_text(
                report_html(
                    board.frame,
                    computed.report,
                    summary,
                    [*names, "manifest.json"],
                    tables["model_metrics"],
                    board,
                    computed.groups,
                    computed.failures,
                    computed.analyses,
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
