"""Seeds and spread: how much a model's metric mean depends on which seeds it drew.

One run of a model over the prompt set is one draw of its noise; a second set of seeds
gives another mean. Evaluators report the mean over several seeds with its spread, and
distrust a gap between two models smaller than that spread. Here every image gets a seed
index (the k-th seed of its prompt), the per-model mean of each metric is taken per seed
index, and the spread is the standard deviation of those per-seed means. Pure functions of
frames.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Fewer seeds than this: the spread is flagged (``few_seeds``); with 2 the standard
#: deviation rests on one degree of freedom, with 1 there is none.
MIN_SEEDS = 3

PER_SEED_COLUMNS = ["model", "metric", "seed_index", "mean", "images"]
SPREAD_COLUMNS = ["model", "metric", "mean", "std", "n_seeds", "min", "max", "images", "few_seeds"]


def seed_index(images: pd.DataFrame) -> np.ndarray:
    """The seed index of each image: the rank (0, 1, ...) of its seed among the distinct
    seeds of its prompt, over every image given (all models).

    Generated images use the same seed for every model at one (prompt, seed index), and
    imported ones are named ``<prompt>_<seed>``, so the same seed gets the same index for
    every model. An image without a seed ranks after the prompt's numbered seeds. Needs
    ``prompt_id`` and ``seed``; row order and image ids do not matter.
    """
    missing = {"prompt_id", "seed"} - set(images.columns)
    if missing:
        raise ValueError(f"images frame lacks columns {sorted(missing)}; use Store.images_frame().")
    if images.empty:
        return np.zeros(0, dtype=np.int64)
    seed = pd.to_numeric(images["seed"], errors="coerce").to_numpy(np.float64)
    seed = np.where(np.isnan(seed), np.inf, seed)  # no seed: last
    prompt = pd.factorize(images["prompt_id"], use_na_sentinel=False)[0]
    pairs = pd.DataFrame({"prompt": prompt, "seed": seed})
    return pairs.groupby("prompt")["seed"].rank(method="dense").to_numpy(np.int64) - 1


def seed_means(values: pd.DataFrame) -> pd.DataFrame:
    """Per model, metric and seed index: the mean value and the number of images.

    ``values``: one row per image and metric with ``model``, ``metric``, ``seed_index``,
    ``value`` (NaN values are left out, as the metric means leave them out).
    """
    missing = {"model", "metric", "seed_index", "value"} - set(values.columns)
    if missing:
        raise ValueError(
            f"values frame lacks columns {sorted(missing)}; expected one row per image and "
            "metric with model, metric, seed_index, value."
        )
    finite = values[np.isfinite(values["value"].to_numpy(np.float64))]
    if finite.empty:
        return pd.DataFrame(columns=PER_SEED_COLUMNS)
    grouped = finite.groupby(["model", "metric", "seed_index"], sort=True)["value"]
    out = grouped.agg(mean="mean", images="size").reset_index()
    out["seed_index"] = out["seed_index"].astype(np.int64)
    return out[PER_SEED_COLUMNS]


def seed_spread(per_seed: pd.DataFrame) -> pd.DataFrame:
    """Per model and metric, over the per-seed means of :func:`seed_means`: their mean,
    sample standard deviation (ddof 1; NaN with one seed), number of seeds, smallest and
    largest, the images behind them, and ``few_seeds`` (fewer than :data:`MIN_SEEDS`).
    """
    if per_seed.empty:
        return pd.DataFrame(columns=SPREAD_COLUMNS)
    grouped = per_seed.groupby(["model", "metric"], sort=True)
    out = grouped["mean"].agg(
        mean="mean", std=lambda s: s.std(ddof=1), n_seeds="size", min="min", max="max"
    )
    out["images"] = grouped["images"].sum()
    out = out.reset_index()
    out["n_seeds"] = out["n_seeds"].astype(np.int64)
    out["few_seeds"] = out["n_seeds"] < MIN_SEEDS
    return out[SPREAD_COLUMNS]
