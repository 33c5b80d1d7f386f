"""The store's frames as aligned arrays: votes, per-image scores, clusters, slices.

Inputs are the frames of :mod:`arena.storage.store` (``votes_frame``, ``scores_frame``,
``images_frame``, ``prompts_frame``). Votes and images are clustered by prompt (the
unit the bootstrap resamples); images without a prompt are their own cluster. Clusters
are numbered by the prompts' content (:func:`arena.stats.clusters.prompt_clusters`), so
relabelling prompts does not move the bootstrap's draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from arena.stats.clusters import prompt_clusters
from arena.stats.pairs import encode_outcomes
from arena.stats.prompt_tags import count_tags, tag_memberships

#: Lower edges of the tag-count bins: 0, 1-3, 4-7, 8-15, 16+.
TAG_BINS: tuple[int, ...] = (0, 1, 4, 8, 16)


#: The votes frame's columns every agreement statistic reads (``Store.votes_frame``).
VOTE_COLUMNS = (
    "outcome",
    "rater_id",
    "prompt_id",
    "left_image_id",
    "right_image_id",
    "left_model",
    "right_model",
)


def tag_bin_labels(edges: Sequence[int] = TAG_BINS) -> list[str]:
    labels = []
    for lo, hi in zip(edges, [*edges[1:], None], strict=True):
        if hi is None:
            labels.append(f"{lo}+")
        elif hi - lo == 1:
            labels.append(f"{lo}")
        else:
            labels.append(f"{lo}-{hi - 1}")
    return labels


def metric_matrix(scores: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(metric labels, sorted image ids, values (images, metrics)) from a scores frame.

    A metric scored under several versions becomes one column per version,
    labelled ``metric@version``. Scores stored with ``higher_is_better`` False
    (e.g. anomaly) are negated, so that a higher value always means "better": the
    direction is the one written with the score, not a copy of the scoring registry.
    """
    needed = {"image_id", "metric", "version", "value", "higher_is_better"}
    missing = needed - set(scores.columns)
    if missing:
        raise ValueError(f"scores frame lacks columns {sorted(missing)}; use store.scores_frame().")
    if scores.empty:
        return [], np.zeros(0, np.int64), np.zeros((0, 0))
    m_codes, m_names = pd.factorize(scores["metric"].astype(str))
    v_codes, v_names = pd.factorize(scores["version"].astype(str))
    pair_keys, pair_codes = np.unique(
        m_codes.astype(np.int64) * len(v_names) + v_codes, return_inverse=True
    )
    pairs = [(str(m_names[k // len(v_names)]), str(v_names[k % len(v_names)])) for k in pair_keys]
    n_versions = pd.Series([m for m, _ in pairs]).value_counts()
    pair_label = [m if n_versions[m] == 1 else f"{m}@{v}" for m, v in pairs]
    labels = sorted(pair_label)
    col = pd.Index(labels).get_indexer(pair_label)[pair_codes.ravel()]
    image_ids, row = np.unique(scores["image_id"].to_numpy(np.int64), return_inverse=True)
    values = np.full((image_ids.size, len(labels)), np.nan)
    value = scores["value"].to_numpy(np.float64)
    values[row, col] = np.where(scores["higher_is_better"].to_numpy(bool), value, -value)
    return labels, image_ids, values


def lookup(sorted_ids: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Row of each id in sorted_ids, -1 where absent."""
    if sorted_ids.size == 0:
        return np.full(len(ids), -1, dtype=np.int64)
    ids = np.asarray(ids, dtype=np.int64)
    top = int(sorted_ids[-1])
    if sorted_ids[0] >= 0 and top < 8 * sorted_ids.size + 1_000_000:  # dense ids: a table
        table = np.full(top + 2, -1, dtype=np.int64)
        table[sorted_ids] = np.arange(sorted_ids.size)
        return table[np.clip(ids, -1, top + 1)]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    return np.where(sorted_ids[pos] == ids, pos, -1)


@dataclass
class Inputs:
    """The frames as aligned arrays (internal)."""

    metrics: list[str]
    models: list[str]
    outcome: np.ndarray  # (V,) int codes
    left_model: np.ndarray  # (V,) model index
    right_model: np.ndarray
    left_image: np.ndarray  # (V,) image ids
    right_image: np.ndarray
    rater: np.ndarray  # (V,) codes
    cluster: np.ndarray  # (V,) prompt cluster index
    category: np.ndarray  # (V,) codes into categories
    categories: list[str]
    tag_bin: np.ndarray  # (V,) codes into tag_labels, -1 unknown
    tag_labels: list[str]
    tag_cluster: np.ndarray  # (T,) the cluster of each (voted prompt, tag) membership
    tag_code: np.ndarray  # (T,) codes into tag_names
    tag_names: list[str]  # every prompt tag, sorted
    delta: np.ndarray  # (V, M) score(left) - score(right)
    image_model: np.ndarray  # (I,) model index of scored images (-1 unknown)
    image_cluster: np.ndarray  # (I,)
    image_values: np.ndarray  # (I, M)
    n_clusters: int


def prepare(
    votes: pd.DataFrame,
    scores: pd.DataFrame,
    images: pd.DataFrame | None,
    prompts: pd.DataFrame | None,
    tag_bins: Sequence[int],
) -> Inputs:
    """Check the frames' columns and align them: one row per vote, one per scored image."""
    missing = set(VOTE_COLUMNS) - set(votes.columns)
    if missing:
        raise ValueError(f"votes frame lacks columns {sorted(missing)}; use store.votes_frame().")
    outcome = encode_outcomes(votes["outcome"].to_numpy())
    l_codes, l_names = pd.factorize(votes["left_model"])
    r_codes, r_names = pd.factorize(votes["right_model"])
    models = sorted({str(m) for m in l_names} | {str(m) for m in r_names})
    index = pd.Index(models)
    lm = index.get_indexer([str(m) for m in l_names])[l_codes].astype(np.int64)
    rm = index.get_indexer([str(m) for m in r_names])[r_codes].astype(np.int64)
    if np.any(lm == rm):
        raise ValueError("a vote compares a model with itself; drop those votes.")
    labels, score_ids, values = metric_matrix(scores)
    li = votes["left_image_id"].to_numpy(np.int64)
    ri = votes["right_image_id"].to_numpy(np.int64)
    lrow, rrow = lookup(score_ids, li), lookup(score_ids, ri)
    padded = np.vstack([values, np.full((1, len(labels)), np.nan)]) if labels else values
    if labels:
        delta = padded[lrow] - padded[rrow]  # row -1 is the NaN padding row
    else:
        delta = np.zeros((len(votes), 0))

    # Clusters: prompts of votes and of images; images without a prompt are their own cluster.
    vote_prompt = votes["prompt_id"].to_numpy(np.int64)
    if images is not None and len(images):
        img = images[images["image_id"].isin(score_ids)]
        img_prompt = img["prompt_id"].to_numpy(np.float64)
        img_ids = img["image_id"].to_numpy(np.int64)
        img_key = np.where(np.isnan(img_prompt), -img_ids - 1, np.nan_to_num(img_prompt)).astype(
            np.int64
        )
        model_lookup = {m: k for k, m in enumerate(models)}
        image_model = img["model"].map(model_lookup).fillna(-1).to_numpy(np.int64)
        image_values = values[lookup(score_ids, img_ids)] if labels else np.zeros((len(img), 0))
    else:  # fall back to the images that appear in the votes
        img_ids_all = np.r_[li, ri]
        img_ids, first = np.unique(img_ids_all, return_index=True)
        img_key = np.r_[vote_prompt, vote_prompt][first]
        image_model = np.r_[lm, rm][first]
        rows = lookup(score_ids, img_ids)
        image_values = padded[rows] if labels else np.zeros((img_ids.size, 0))
    codes, n_clusters = prompt_clusters(np.r_[vote_prompt, img_key], prompts, images)
    cluster, image_cluster = codes[: len(vote_prompt)], codes[len(vote_prompt) :]

    cat = votes["category"] if "category" in votes.columns else pd.Series([""] * len(votes))
    cat_codes, categories = pd.factorize(cat.fillna("").astype(str), sort=True)
    categories = [c if c else "(none)" for c in categories]

    tag_labels = tag_bin_labels(tag_bins)
    tag_bin = np.full(len(votes), -1, dtype=np.int64)
    tag_cluster, tag_code, tag_names = np.zeros(0, np.int64), np.zeros(0, np.int64), []
    if prompts is not None and len(prompts) and "tags" in prompts.columns:
        pids = prompts["prompt_id"].to_numpy(np.int64)
        order = np.argsort(pids)
        n_tags = count_tags(prompts["tags"].tolist())[order]
        pos = lookup(pids[order], vote_prompt)
        known = pos >= 0
        tag_bin[known] = np.searchsorted(np.asarray(tag_bins), n_tags[pos[known]], side="right") - 1
        tag_cluster, tag_code, tag_names = _cluster_tags(
            cluster, vote_prompt, pids, prompts["tags"].tolist()
        )
    rater, _ = pd.factorize(votes["rater_id"].to_numpy())
    return Inputs(
        metrics=labels,
        models=models,
        outcome=outcome.astype(np.int64),
        left_model=lm,
        right_model=rm,
        left_image=li,
        right_image=ri,
        rater=rater.astype(np.int64),
        cluster=cluster.astype(np.int64),
        category=cat_codes.astype(np.int64),
        categories=list(categories),
        tag_bin=tag_bin,
        tag_labels=tag_labels,
        tag_cluster=tag_cluster.astype(np.int64),
        tag_code=tag_code,
        tag_names=tag_names,
        delta=delta,
        image_model=image_model,
        image_cluster=image_cluster.astype(np.int64),
        image_values=image_values,
        n_clusters=n_clusters,
    )


def _cluster_tags(cluster: np.ndarray, vote_prompt: np.ndarray, prompt_ids: np.ndarray, tags):
    """(cluster, tag code, tag names): one row per (voted prompt, tag of it). A prompt is
    one cluster, so a tag's slice sums are its prompts' cluster sums: the work follows
    the prompts' tags, not votes × tags."""
    member_prompt, member_code, names = tag_memberships(prompt_ids, tags)
    if not names or vote_prompt.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), []
    voted, first = np.unique(vote_prompt, return_index=True)
    row = lookup(voted, member_prompt)
    ok = row >= 0
    return cluster[first[row[ok]]], member_code[ok], names
