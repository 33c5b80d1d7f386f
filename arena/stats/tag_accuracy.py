"""Tag accuracy against the number of prompt tags and the position of a tag in the prompt.

The tags metric (``scoring/metrics/tags.py``) stores, per image, every countable prompt
tag with its position in the prompt (0-based over all parsed tags), its probability and
whether the tagger found it (``scores.details``). Evaluators of tag-prompted (anime)
models plot two things from it: how accuracy falls as prompts carry more tags, and how a
tag's chance of showing up falls with its position (late tags get less attention).
:func:`tag_hits_table` turns the details into a long table (one row per image and tag);
:func:`accuracy_by_count` and :func:`accuracy_by_position` give, per model and bin, the
accuracy with a 95% bootstrap interval over prompts. Pure functions of frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from arena.stats.agreement.inputs import tag_bin_labels
from arena.stats.agreement.intervals import SumTable, nan_percentile_interval, ratio

#: The metric whose details these read.
TAGS_METRIC = "tags"
#: Lower edges of the bins of the number of prompt tags: 1, 2-3, 4-5, 6-7, 8-11, 12-15,
#: 16-23, 24-31, 32+.
COUNT_BINS: tuple[int, ...] = (1, 2, 4, 6, 8, 12, 16, 24, 32)
#: Lower edges of the bins of a tag's position (0 = first tag): 0, 1, 2, 3, 4-5, 6-7,
#: 8-11, 12-15, 16-23, 24-31, 32+.
POSITION_BINS: tuple[int, ...] = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)

HIT_COLUMNS = [
    "model",
    "image_id",
    "prompt_id",
    "seed",
    "tag",
    "position",
    "n_tags",
    "n_countable",
    "probability",
    "hit",
]
BIN_COLUMNS = [
    "model",
    "bin",
    "accuracy",
    "ci_low",
    "ci_high",
    "images",
    "tags",
    "prompts",
]


def tag_hits_table(details: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """One row per image and countable tag: ``model``, ``image_id``, ``prompt_id``,
    ``seed``, ``tag``, ``position`` (in the prompt, 0-based over all its parsed tags),
    ``n_tags`` (the prompt's parsed tags), ``n_countable`` (those the accuracy counts:
    general vocabulary, no quality words), ``probability``, ``hit``.

    ``details``: ``image_id`` and ``details`` (the tags metric's JSON, one version);
    ``images``: ``image_id``, ``model``, ``prompt_id`` (and ``seed``) of the images to keep
    (others are dropped). Images without a countable tag have no rows. Sorted by model,
    image, position.
    """
    missing = {"image_id", "details"} - set(details.columns)
    if missing:
        raise ValueError(
            f"details frame lacks columns {sorted(missing)}; expected image_id and details "
            "(the tags metric's scores.details)."
        )
    missing = {"image_id", "model", "prompt_id"} - set(images.columns)
    if missing:
        raise ValueError(f"images frame lacks columns {sorted(missing)}; use Store.images_frame().")
    info = images.set_index("image_id")
    wanted = details[details["image_id"].isin(info.index)]
    rows: dict[str, list] = {c: [] for c in HIT_COLUMNS}
    for image, detail in zip(wanted["image_id"], wanted["details"], strict=True):
        tags = (detail or {}).get("tags") or []
        if not tags:
            continue
        n_countable = len(tags)
        n_tags = int(detail.get("n_prompt_tags", n_countable))
        for hit in tags:
            rows["image_id"].append(int(image))
            rows["tag"].append(str(hit["tag"]))
            rows["position"].append(int(hit["position"]))
            rows["n_tags"].append(n_tags)
            rows["n_countable"].append(n_countable)
            rows["probability"].append(float(hit.get("probability", np.nan)))
            rows["hit"].append(bool(hit["hit"]))
    ids = np.asarray(rows["image_id"], dtype=np.int64)
    rows["model"] = info["model"].reindex(ids).astype(str).tolist()
    rows["prompt_id"] = info["prompt_id"].reindex(ids).to_numpy()
    seed = info["seed"] if "seed" in info else pd.Series(np.nan, index=info.index)
    rows["seed"] = seed.reindex(ids).to_numpy()
    out = pd.DataFrame(rows, columns=HIT_COLUMNS)
    out["prompt_id"] = out["prompt_id"].astype("Int64")
    out["seed"] = pd.array(out["seed"], dtype="Int64") if len(out) else out["seed"]
    out = out.sort_values(["model", "image_id", "position"], kind="stable")
    return out.reset_index(drop=True)


def _bin_of(values: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Index of each value's bin (-1 below the first edge)."""
    return np.searchsorted(np.asarray(edges), values, side="right") - 1


def _distinct(group: np.ndarray, unit: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct ``unit`` codes per group."""
    if not len(group):
        return np.zeros(n_groups, dtype=np.int64)
    pairs = np.unique(np.stack([group, unit]), axis=1)
    return np.bincount(pairs[0], minlength=n_groups)


def binned_accuracy(
    model: np.ndarray,
    prompt: np.ndarray,
    image: np.ndarray,
    bins: np.ndarray,
    numerator: np.ndarray,
    tags: np.ndarray,
    labels: list[str],
    rng: np.random.Generator,
    rounds: int = 1000,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per model and bin: the mean of ``numerator`` over the units (rows) in the bin, with a
    percentile interval from the bootstrap over prompts, and an ``all`` bin of every unit.

    A unit is an image (count analysis: ``numerator`` its accuracy) or a tag (position
    analysis: ``numerator`` its hit). The mean is a ratio of per-prompt sums (Σ numerator /
    units), so the prompt bootstrap of the agreement page resamples it
    (:class:`arena.stats.agreement.intervals.SumTable`). ``bins``: each unit's bin index
    into ``labels`` (-1: in no bin, counted in ``all`` only); ``tags``: each unit's tags.
    ``images``, ``prompts``: distinct images and prompts behind each row.
    """
    models = sorted({str(m) for m in model})
    m_code = pd.Index(models).get_indexer([str(m) for m in model])
    # prompts in sorted order: the bootstrap's draws do not follow the order of the rows
    p_code = pd.factorize(pd.Series(prompt), sort=True, use_na_sentinel=False)[0]
    n_prompts = int(p_code.max()) + 1 if len(p_code) else 0
    n_bins = len(labels) + 1
    size = len(models) * n_bins
    # every unit twice: once in its bin, once in the model's "all" bin (the last)
    bin_codes = np.concatenate([bins, np.full(len(bins), len(labels))]).astype(np.int64)
    keep = bin_codes >= 0
    group = (np.tile(m_code, 2) * n_bins + bin_codes)[keep]
    cluster = np.tile(p_code, 2)[keep]
    table = SumTable(max(n_prompts, 1))
    num = table.add(cluster, np.tile(np.asarray(numerator, np.float64), 2)[keep], group, size)
    den = table.add(cluster, np.ones(len(group)), group, size)
    totals, boot = table.resample(rng, rounds)
    low, high = nan_percentile_interval(ratio(boot[:, num], boot[:, den]), level)
    tag_count = np.bincount(group, weights=np.tile(tags, 2)[keep], minlength=size)
    image_code = pd.factorize(pd.Series(np.tile(image, 2)[keep]))[0]
    out = pd.DataFrame(
        {
            "model": np.repeat(models, n_bins),
            "bin": [*labels, "all"] * len(models),
            "accuracy": ratio(totals[num], totals[den]),
            "ci_low": low,
            "ci_high": high,
            "images": _distinct(group, image_code, size),
            "tags": tag_count.round().astype(np.int64),
            "prompts": _distinct(group, cluster, size),
        }
    )
    return out[totals[den] > 0].reset_index(drop=True)[BIN_COLUMNS]


def accuracy_by_count(
    hits: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    edges: Sequence[int] = COUNT_BINS,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per model and bin of the number of prompt tags (``n_tags``): the mean tag accuracy of
    the images (found / countable, the tags metric's value), its 95% prompt-bootstrap
    interval, and the images, tags and prompts behind it; bin ``all`` is the model's mean
    over every image, the tags column of the leaderboard over the same images.

    ``hits``: :func:`tag_hits_table`.
    """
    if hits.empty:
        return pd.DataFrame(columns=BIN_COLUMNS)
    per_image = hits.groupby("image_id", sort=True).agg(
        model=("model", "first"),
        prompt_id=("prompt_id", "first"),
        n_tags=("n_tags", "first"),
        accuracy=("hit", "mean"),
        tags=("hit", "size"),
    )
    return binned_accuracy(
        per_image["model"].to_numpy(),
        per_image["prompt_id"].to_numpy(),
        per_image.index.to_numpy(),
        _bin_of(per_image["n_tags"].to_numpy(np.int64), edges),
        per_image["accuracy"].to_numpy(np.float64),
        per_image["tags"].to_numpy(np.float64),
        tag_bin_labels(edges),
        rng,
        rounds,
        level,
    )


def accuracy_by_position(
    hits: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    edges: Sequence[int] = POSITION_BINS,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per model and bin of a tag's position in its prompt: the share of the tags found
    (hits / tags) with its 95% prompt-bootstrap interval; bin ``all`` is the model's hit
    rate over every tag (each tag counts once, so long prompts weigh more than in the
    per-image mean). ``hits``: :func:`tag_hits_table`."""
    if hits.empty:
        return pd.DataFrame(columns=BIN_COLUMNS)
    return binned_accuracy(
        hits["model"].to_numpy(),
        hits["prompt_id"].to_numpy(),
        hits["image_id"].to_numpy(),
        _bin_of(hits["position"].to_numpy(np.int64), edges),
        hits["hit"].to_numpy(np.float64),
        np.ones(len(hits)),
        tag_bin_labels(edges),
        rng,
        rounds,
        level,
    )
