"""Style control's inputs: per-image features, and each vote's left-minus-right difference.

A feature is a stored per-image metric (any, by name: the classical ``colorfulness``,
``contrast`` and ``sharpness`` by default) or one of the two shape features read from
the original image's size: ``resolution`` (log2 of the pixel count) and ``aspect``
(log of width / height; 0 for a square, ± for landscape / portrait). Logs, because a
rater sees ratios: 1024² against 512² is the same step as 2048² against 1024².
The fit (:mod:`arena.stats.contextual`) standardises the differences itself.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from arena.reports.frames import ReportError, ReportFrames

#: Style control's features when none are named.
DEFAULT_FEATURES = ("colorfulness", "contrast", "sharpness", "resolution", "aspect")
#: Features computed from the original image's width and height.
SHAPE_FEATURES = ("resolution", "aspect")


def parse_features(text: str | None) -> tuple[str, ...]:
    """``"colorfulness,contrast"`` -> a tuple of names; empty, ``default`` -> the defaults."""
    if text is None or not str(text).strip() or str(text).strip() == "default":
        return DEFAULT_FEATURES
    names = tuple(dict.fromkeys(p.strip() for p in str(text).split(",") if p.strip()))
    return names or DEFAULT_FEATURES


def available_features(scores: pd.DataFrame) -> list[str]:
    """Feature names style control can use on these scores: stored metrics, then shape."""
    valued = scores[scores["value"].notna()] if len(scores) else scores
    metrics = sorted(valued["metric"].dropna().unique()) if len(valued) else []
    return [*metrics, *SHAPE_FEATURES]


def image_features(frames: ReportFrames, names: tuple[str, ...]) -> pd.DataFrame:
    """One row per image (index ``image_id``), one column per feature; NaN where an image
    has no value. Raises :class:`ReportError` naming a feature that cannot be used."""
    images = frames.images_all.set_index("image_id")
    known = available_features(frames.scores)
    table = pd.DataFrame(index=images.index)
    for name in names:
        if name == "resolution":
            table[name] = np.log2(images["width"].astype(float) * images["height"].astype(float))
        elif name == "aspect":
            table[name] = np.log(images["width"].astype(float) / images["height"].astype(float))
        elif name in known:
            table[name] = _metric_values(frames.scores, name).reindex(table.index)
        else:
            hint = (
                " (the classical metrics: `arena score --metric classical`)"
                if name in DEFAULT_FEATURES
                else ""
            )
            raise ReportError(
                f"style feature {name!r} has no stored values{hint}; choose from: "
                f"{', '.join(known)}."
            )
    return table


def _metric_values(scores: pd.DataFrame, metric: str) -> pd.Series:
    """Per-image values of one metric, from its version with the most scores (as the
    leaderboard's metric columns choose)."""
    rows = scores[(scores["metric"] == metric) & scores["value"].notna()]
    sizes = rows.groupby("version").size()
    version = max(sizes.items(), key=lambda item: (item[1], item[0]))[0]
    rows = rows[rows["version"] == version]
    return rows.groupby("image_id")["value"].mean()


def vote_features(votes: pd.DataFrame, table: pd.DataFrame) -> np.ndarray:
    """(votes, k): each feature of the vote's left image minus its right image."""
    left = table.reindex(votes["left_image_id"].to_numpy()).to_numpy(dtype=np.float64)
    right = table.reindex(votes["right_image_id"].to_numpy()).to_numpy(dtype=np.float64)
    return left - right
