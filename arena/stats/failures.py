"""Failure rates from reviewers' flags: per model, with Wilson intervals.

A reviewer's verdict on an image is a set of failure modes (hands, text rendering ...) or
"no failure" (:data:`NO_FAILURE`), given either in the blind review -- a seeded random
sample shown without model names -- or while browsing the gallery, where the reviewer
chose what to look at and saw the model. Two rates per model, never mixed:

* **blind sample**: over the images reviewed blind. The sample is random per model, so
  this estimates the share of the model's images that fail;
* **all reviews**: over every image with any verdict (blind or not). Reviewers open
  what catches their eye, so this rate is not an estimate of anything but itself; it
  counts what was found.

The unit is the image: with several reviewers (or a blind and an open verdict) on one
image, it fails a mode when any verdict flags it (the union: "someone saw a failure"),
and counts once in the denominator. Intervals are Wilson score intervals for a binomial
proportion over the reviewed images of the model
(:func:`arena.stats.agreement.intervals.wilson_interval`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from arena.stats.agreement.correlations import kendall_rows, spearman_rows
from arena.stats.agreement.intervals import wilson_interval
from arena.stats.agreement.permutation import permutation_pvalue

#: The flag of a verdict "looked, no failure": it counts the image as reviewed.
NO_FAILURE = "none"
#: The mode of an image flagged with any failure mode.
ANY_FAILURE = "any failure"
BLIND, ALL_REVIEWS = "blind sample", "all reviews"
SOURCES = (BLIND, ALL_REVIEWS)
RATE_COLUMNS = [
    "model",
    "source",
    "mode",
    "images",
    "reviewed",
    "flagged",
    "rate",
    "ci_low",
    "ci_high",
]
CORRELATION_COLUMNS = [
    "source",
    "mode",
    "n_models",
    "spearman",
    "spearman_p",
    "kendall",
    "kendall_p",
]


def _require(frame: pd.DataFrame, name: str, columns: Sequence[str]) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{name}: expected a pandas DataFrame, got {type(frame).__name__}.")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{name} lacks column(s) {', '.join(missing)}; expected at least "
            f"{', '.join(columns)} (see Store.image_flags_frame and Store.images_frame)."
        )


def _blind(values: pd.Series) -> np.ndarray:
    """The ``blind`` column as booleans; refuses anything but true/false (1/0)."""
    if values.isna().any():
        raise ValueError("flags.blind has missing values; expected True or False on every row.")
    if pd.api.types.is_bool_dtype(values):
        return values.to_numpy(dtype=bool)
    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.isna().any() or not numbers.isin([0, 1]).all():
        bad = values[numbers.isna() | ~numbers.isin([0, 1])].iloc[0]
        raise ValueError(f"flags.blind value {bad!r}: expected True or False (1 or 0).")
    return numbers.to_numpy() == 1


def failure_modes_of(flags: pd.DataFrame, modes: Sequence[str] = ()) -> list[str]:
    """``modes`` in their order, then any other mode found in ``flags`` (sorted)."""
    seen = set(flags["flag"].astype(str)) - {NO_FAILURE} if len(flags) else set()
    listed = [m for m in dict.fromkeys(modes) if m != NO_FAILURE]
    return listed + sorted(seen - set(listed))


def failure_rates(
    flags: pd.DataFrame,
    images: pd.DataFrame,
    modes: Sequence[str] = (),
    level: float = 0.95,
) -> pd.DataFrame:
    """Per model, source and mode: images, reviewed, flagged, rate and its Wilson interval.

    ``flags`` has one row per verdict flag (``Store.image_flags_frame``: ``image_id``,
    ``flag``, ``blind``); ``images`` are the images in scope (``image_id``, ``model``:
    e.g. the non-broken images of a filter's prompts); flags on other images are left
    out. ``modes`` (the configured list) fixes the order of the mode rows and lists
    modes nobody flagged yet (rate 0 once images are reviewed). Rows: every model of
    ``images`` (sorted) × :data:`SOURCES` × (:data:`ANY_FAILURE`, then the modes);
    ``rate`` and the interval are NaN where no image was reviewed.
    """
    _require(flags, "flags", ["image_id", "flag", "blind"])
    _require(images, "images", ["image_id", "model"])
    if images["image_id"].duplicated().any():
        dup = images.loc[images["image_id"].duplicated(), "image_id"].iloc[0]
        raise ValueError(f"images lists image_id {dup} twice; expected one row per image.")
    all_modes = failure_modes_of(flags, modes)
    models = sorted(images["model"].astype(str).unique())
    model_of = pd.Series(images["model"].astype(str).to_numpy(), index=images["image_id"])
    per_model = model_of.value_counts().reindex(models, fill_value=0)
    inside = flags[flags["image_id"].isin(model_of.index)]
    blind = _blind(inside["blind"]) if len(inside) else np.zeros(0, dtype=bool)
    blocks = []
    for source, keep in ((BLIND, blind), (ALL_REVIEWS, np.ones(len(inside), dtype=bool))):
        rows = inside[keep]
        image = rows["image_id"].to_numpy()
        flag = rows["flag"].astype(str).to_numpy()
        reviewed = pd.unique(image)
        reviewed_per_model = (
            model_of.loc[reviewed].value_counts().reindex(models, fill_value=0)
            if len(reviewed)
            else per_model * 0
        )
        for mode in [ANY_FAILURE, *all_modes]:
            hit = flag != NO_FAILURE if mode == ANY_FAILURE else flag == mode
            failing = pd.unique(image[hit])
            counts = (
                model_of.loc[failing].value_counts().reindex(models, fill_value=0)
                if len(failing)
                else per_model * 0
            )
            blocks.append(
                pd.DataFrame(
                    {
                        "model": models,
                        "source": source,
                        "mode": mode,
                        "images": per_model.to_numpy(np.int64),
                        "reviewed": reviewed_per_model.to_numpy(np.int64),
                        "flagged": counts.to_numpy(np.int64),
                    }
                )
            )
    if not blocks or not models:
        return pd.DataFrame(columns=RATE_COLUMNS)
    out = pd.concat(blocks, ignore_index=True)
    n = out["reviewed"].to_numpy(np.float64)
    x = out["flagged"].to_numpy(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["rate"] = np.where(n > 0, x / n, np.nan)
    out["ci_low"], out["ci_high"] = wilson_interval(x, n, level)
    # blocks are source-major, mode-minor: a stable sort by model keeps that order
    out = out.sort_values("model", kind="stable")
    return out[RATE_COLUMNS].reset_index(drop=True)


def failure_rating_correlation(
    rates: pd.DataFrame, ratings: pd.Series, rng: np.random.Generator
) -> pd.DataFrame:
    """Spearman ρ and Kendall τ-b between the models' failure rates and their ratings.

    ``rates`` is :func:`failure_rates`' frame; ``ratings`` the human rating per model
    (a Series indexed by model name, e.g. the Bradley-Terry board's). One row per source
    and mode that has at least one flagged image, over the models with a rate (reviewed
    images) and a finite rating. A negative ρ: models the raters rate higher fail less.
    ``_p``: two-sided permutation p-values across the models (exact up to 8 models,
    seeded random pairings above, drawn from ``rng``); NaN with fewer than 3 models.
    """
    _require(rates, "rates", ["model", "source", "mode", "flagged", "rate"])
    if not isinstance(ratings, pd.Series):
        raise ValueError(f"ratings: expected a Series indexed by model, got {type(ratings)}.")
    ratings = pd.to_numeric(ratings, errors="coerce")
    rows = []
    for (source, mode), part in rates.groupby(["source", "mode"], sort=False):
        if part["flagged"].sum() == 0 and mode != ANY_FAILURE:
            continue
        part = part.assign(rating=part["model"].map(ratings))
        part = part[np.isfinite(part["rate"].astype(float)) & np.isfinite(part["rating"])]
        part = part.sort_values("model")
        x = part["rate"].to_numpy(np.float64)
        y = part["rating"].to_numpy(np.float64)
        row = {"source": source, "mode": mode, "n_models": len(part)}
        for name, statistic in (("spearman", spearman_rows), ("kendall", kendall_rows)):
            value = float(statistic(x[None], y[None])[0]) if len(part) >= 2 else float("nan")
            p = permutation_pvalue(statistic, x, y, rng) if len(part) >= 3 else float("nan")
            row[name], row[f"{name}_p"] = value, p
        rows.append(row)
    return pd.DataFrame(rows, columns=CORRELATION_COLUMNS)


def blind_sample(
    image_ids: np.ndarray,
    models: np.ndarray,
    size: int,
    rng: np.random.Generator,
    skip: set[int] | frozenset[int] = frozenset(),
) -> np.ndarray:
    """``size`` image ids for the blind review, stratified by model, in random order.

    Each model's images are put in a random order (``rng``; the ids sorted first, so the
    draw does not depend on the input's row order); images in ``skip`` (the reviewer's
    earlier blind verdicts) are passed over, so the same seed continues where the last
    sample stopped. Models take turns (in a random order) until ``size`` are drawn, so
    their counts differ by at most one while each has images left, and each model's share
    is a simple random sample of its images: the blind-sample rate estimates the model's
    failure rate. The result is shuffled, so nothing in its order follows the model.
    """
    image_ids = np.asarray(image_ids, dtype=np.int64)
    models = np.asarray(models, dtype=object)
    if len(image_ids) != len(models):
        raise ValueError(
            f"image_ids ({len(image_ids)}) and models ({len(models)}) differ in length."
        )
    if int(size) < 1:
        raise ValueError(f"sample size {size!r}: expected a whole number of at least 1.")
    queues = []
    for model in sorted(set(models.tolist())):
        ids = np.sort(image_ids[models == model])
        ids = ids[rng.permutation(len(ids))]
        queues.append([i for i in ids.tolist() if i not in skip])
    order = rng.permutation(len(queues)) if queues else np.zeros(0, dtype=np.int64)
    chosen: list[int] = []
    depth = 0
    while len(chosen) < size and any(depth < len(q) for q in queues):
        for k in order:
            if depth < len(queues[k]) and len(chosen) < size:
                chosen.append(queues[k][depth])
        depth += 1
    picked = np.array(chosen, dtype=np.int64)
    return picked[rng.permutation(len(picked))]
