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
from arena.stats.clusters import prompt_clusters

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
    # Per image first, then repeated per tag; one comprehension per column (a few hundred
    # ns per tag) and integer sorting: a 160k-image workspace has millions of tags.
    lists = [(d or {}).get("tags") or [] for d in wanted["details"]]
    lengths = np.fromiter((len(t) for t in lists), np.int64, len(lists))
    n_tags = np.fromiter(
        (
            int((d or {}).get("n_prompt_tags", n))
            for d, n in zip(wanted["details"], lengths, strict=True)
        ),
        np.int64,
        len(lists),
    )
    image_ids = wanted["image_id"].to_numpy(np.int64)
    own = info.reindex(image_ids)
    model_code, models = pd.factorize(own["model"].astype(str), sort=True)
    seed = own["seed"] if "seed" in own else pd.Series(np.nan, index=own.index)
    total = int(lengths.sum())
    tag_code, tags = pd.factorize(pd.Series([str(h["tag"]) for t in lists for h in t]))
    position = np.fromiter((h["position"] for t in lists for h in t), np.int64, total)
    per_tag = np.repeat(np.arange(len(lists)), lengths)
    order = np.lexsort((position, image_ids[per_tag], model_code[per_tag]))
    at = per_tag[order]
    out = pd.DataFrame(
        {
            "model": pd.Categorical.from_codes(model_code[at], categories=list(models)),
            "image_id": image_ids[at],
            "prompt_id": pd.array(own["prompt_id"].to_numpy(np.float64)[at], dtype="Int64"),
            "seed": pd.array(pd.to_numeric(seed).to_numpy(np.float64)[at], dtype="Int64"),
            "tag": pd.Categorical.from_codes(tag_code[order], categories=list(tags)),
            "position": position[order],
            "n_tags": n_tags[at],
            "n_countable": lengths[at],
            "probability": np.fromiter(
                (h.get("probability", np.nan) for t in lists for h in t), np.float64, total
            )[order],
            "hit": np.fromiter((h["hit"] for t in lists for h in t), bool, total)[order],
        },
        columns=HIT_COLUMNS,
    )
    return out


def _bin_of(values: np.ndarray, edges: Sequence[int]) -> np.ndarray:
    """Index of each value's bin (-1 below the first edge)."""
    return np.searchsorted(np.asarray(edges), values, side="right") - 1


def _distinct(group: np.ndarray, unit: np.ndarray, n_groups: int) -> np.ndarray:
    """Number of distinct ``unit`` codes per group."""
    if not len(group):
        return np.zeros(n_groups, dtype=np.int64)
    width = int(unit.max()) + 1
    keys = np.unique(group.astype(np.int64) * width + unit)
    return np.bincount(keys // width, minlength=n_groups)


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
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model and bin: the mean of ``numerator`` over the units (rows) in the bin, with a
    percentile interval from the bootstrap over prompts, and an ``all`` bin of every unit.

    A unit is an image (count analysis: ``numerator`` its accuracy) or a tag (position
    analysis: ``numerator`` its hit). The mean is a ratio of per-prompt sums (Σ numerator /
    units), so the prompt bootstrap of the agreement page resamples it
    (:class:`arena.stats.agreement.intervals.SumTable`). ``bins``: each unit's bin index
    into ``labels`` (-1: in no bin, counted in ``all`` only); ``tags``: each unit's tags.
    The ``images`` and ``prompts`` columns: distinct images and prompts behind each row.
    The frame ``prompts`` (``Store.prompts_frame()``) orders the prompts the bootstrap
    draws by their content, so that relabelling prompts moves nothing (without it: by
    prompt id; units without a prompt are one cluster).
    """
    m_code, models = pd.factorize(pd.Series(model), sort=True)
    models = [str(m) for m in models]
    # prompts in content order: the bootstrap's draws follow neither the rows nor the ids
    p_code, n_prompts = prompt_clusters(pd.Series(prompt), prompts)
    i_code = pd.factorize(pd.Series(image))[0]
    n_models, n_bins = len(models), len(labels)
    bins = np.asarray(bins, dtype=np.int64)
    numerator = np.asarray(numerator, np.float64)
    ones = np.ones(len(bins))
    inbin = bins >= 0
    group = m_code[inbin] * n_bins + bins[inbin]
    table = SumTable(max(n_prompts, 1))
    # each bin of each model, then each model's "all" (every unit, in a bin or not)
    parts = {
        "num": (
            table.add(p_code[inbin], numerator[inbin], group, n_models * n_bins),
            table.add(p_code, numerator, m_code, n_models),
        ),
        "den": (
            table.add(p_code[inbin], ones[inbin], group, n_models * n_bins),
            table.add(p_code, ones, m_code, n_models),
        ),
    }
    totals, boot = table.resample(rng, rounds)

    def joined(values: np.ndarray, by_bin, by_model) -> np.ndarray:
        """(..., models × (bins + 1)): each model's bins, then its "all"."""
        lead = values.shape[:-1]
        a = values[..., by_bin].reshape(*lead, n_models, n_bins)
        b = values[..., by_model].reshape(*lead, n_models, 1)
        return np.concatenate([a, b], axis=-1).reshape(*lead, n_models * (n_bins + 1))

    num, den = joined(totals, *parts["num"]), joined(totals, *parts["den"])
    low, high = nan_percentile_interval(
        ratio(joined(boot, *parts["num"]), joined(boot, *parts["den"])), level
    )
    size = n_models * n_bins
    split = (slice(0, size), slice(size, None))  # a bin's counts, then a model's

    def per_row(by_bin: np.ndarray, by_model: np.ndarray) -> np.ndarray:
        return joined(np.concatenate([by_bin, by_model]), *split)

    tags = np.asarray(tags, np.float64)
    tag_count = per_row(
        np.bincount(group, weights=tags[inbin], minlength=size),
        np.bincount(m_code, weights=tags, minlength=n_models),
    )
    images = per_row(_distinct(group, i_code[inbin], size), _distinct(m_code, i_code, n_models))
    behind = per_row(_distinct(group, p_code[inbin], size), _distinct(m_code, p_code, n_models))
    out = pd.DataFrame(
        {
            "model": np.repeat(models, n_bins + 1),
            "bin": [*labels, "all"] * n_models,
            "accuracy": ratio(num, den),
            "ci_low": low,
            "ci_high": high,
            "images": images.astype(np.int64),
            "tags": tag_count.round().astype(np.int64),
            "prompts": behind.astype(np.int64),
        }
    )
    return out[den > 0].reset_index(drop=True)[BIN_COLUMNS]


def accuracy_by_count(
    hits: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    edges: Sequence[int] = COUNT_BINS,
    level: float = 0.95,
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model and bin of the number of prompt tags (``n_tags``): the mean tag accuracy of
    the images (found / countable, the tags metric's value), its 95% prompt-bootstrap
    interval, and the images, tags and prompts behind it; bin ``all`` is the model's mean
    over every image, the tags column of the leaderboard over the same images.

    ``hits``: :func:`tag_hits_table`; ``prompts`` (``Store.prompts_frame()``) orders the
    bootstrap's prompts by content (:func:`binned_accuracy`).
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
        prompts,
    )


def accuracy_by_position(
    hits: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    edges: Sequence[int] = POSITION_BINS,
    level: float = 0.95,
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per model and bin of a tag's position in its prompt: the share of the tags found
    (hits / tags) with its 95% prompt-bootstrap interval; bin ``all`` is the model's hit
    rate over every tag (each tag counts once, so long prompts weigh more than in the
    per-image mean). ``hits``: :func:`tag_hits_table`; ``prompts`` as in
    :func:`accuracy_by_count`."""
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
        prompts,
    )
