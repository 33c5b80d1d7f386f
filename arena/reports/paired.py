"""What the metric numbers are paired on, in words: the sentence beside the metric columns.

The per-model metric means are over the common set (:mod:`arena.stats.common_set`) unless
the setting ``paired_metrics`` is off, and each ``arena distribution`` row records the
common set it was computed on (``details["common_set"]``). The leaderboard, the exports and
the report say both next to the numbers, with the number of cells left out.
"""

from __future__ import annotations

import pandas as pd

from arena.reports.frames import ReportFrames


def common_set_details(model_metrics: pd.DataFrame | None) -> list[dict]:
    """The distinct ``common_set`` records of the model-level rows (not the reference's)."""
    if model_metrics is None or model_metrics.empty:
        return []
    rows = model_metrics[model_metrics["model_kind"] != "reference"]
    seen: dict[tuple, dict] = {}
    for details in rows["details"]:
        record = details.get("common_set") if isinstance(details, dict) else None
        if isinstance(record, dict):
            key = (record.get("paired"), record.get("cells"), record.get("common"))
            seen.setdefault(key, record)
    return [seen[k] for k in sorted(seen, key=str)]


def model_level_sentence(model_metrics: pd.DataFrame | None) -> str:
    """How the stored model-level numbers were paired, from their rows' details."""
    records = common_set_details(model_metrics)
    if not records:
        return ""
    parts = []
    for r in records:
        if r.get("paired"):
            parts.append(
                f"{r.get('common')} of {r.get('cells')} (prompt, seed) cells of "
                f"{len(r.get('models', []))} models ({r.get('left_out')} left out)"
            )
        else:
            parts.append("every non-broken image of each model (paired off)")
    return "Model-level numbers (`arena distribution`) are over " + "; ".join(parts) + "."


def paired_note(frames: ReportFrames) -> str:
    """One Markdown paragraph: the common set of the frames' images, whether the metric
    means use it, and how the model-level numbers were paired; empty without metrics."""
    common = frames.common
    has_scores = frames.scores is not None and len(frames.scores) > 0
    has_model_level = frames.model_metrics is not None and len(frames.model_metrics) > 0
    if common is None or not common.models or not (has_scores or has_model_level):
        return ""
    if frames.paired:
        text = f"Metric means are paired: over the common set, {common.describe()}."
    else:
        text = (
            "Metric means are over every non-broken image of each model (`paired_metrics` "
            f"off); the common set would be {common.describe()}."
        )
    sentence = model_level_sentence(frames.model_metrics)
    return f"{text} {sentence}" if sentence else text
