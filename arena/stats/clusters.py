"""Prompt clusters for the prompt bootstraps, numbered in an order set by the prompts' content.

A prompt bootstrap draws cluster *indices* (``rng.integers`` or a multinomial over
0..n-1), so which prompt gets which draw depends on how the clusters are numbered.
Numbered by prompt id, the same prompts imported in another order (other ids) draw other
weights and every interval moves: a number would follow a label. :func:`prompt_clusters`
numbers them by what the prompts say instead (``text``, then ``category``, ``tags``,
``prompt_set``, ``external_id``: a store's prompts are unique by the last two), so
relabelling prompts or reordering rows moves nothing. Every prompt bootstrap numbers its
clusters here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The prompts frame's columns (``Store.prompts_frame()``) that order the clusters, in order.
CONTENT_COLUMNS = ("text", "category", "tags", "prompt_set", "external_id")


def prompt_clusters(
    keys, prompts: pd.DataFrame | None = None, images: pd.DataFrame | None = None
) -> tuple[np.ndarray, int]:
    """(cluster code of each key, number of clusters) for the prompt ids ``keys``.

    The distinct keys are numbered in the order of their prompts' content
    (:data:`CONTENT_COLUMNS` of ``prompts``). A negative key ``-image_id - 1`` stands
    for an image without a prompt (a cluster of its own): these come after the prompts,
    ordered by the image's ``sha256`` in ``images``. A missing key (NaN, NA) is one
    cluster, the last. What no frame describes falls back to id order, after the rest:
    without ``prompts`` the prompt clusters are numbered by id (and without ``images``'
    ``sha256`` the image clusters), exactly as sorting the keys would; only then does
    relabelling move the draws. Content ties (none among a store's prompts) fall back to
    the id.
    """
    series = keys if isinstance(keys, pd.Series) else pd.Series(np.asarray(keys))
    missing = series.isna().to_numpy()
    ids = series[~missing].to_numpy(np.int64)
    distinct, inverse = np.unique(ids, return_inverse=True)
    rank = np.empty(distinct.size, dtype=np.int64)
    rank[_content_order(distinct, prompts, images)] = np.arange(distinct.size)
    codes = np.full(len(series), distinct.size, dtype=np.int64)  # a missing key: the last
    codes[~missing] = rank[inverse.ravel()]
    return codes, int(distinct.size + missing.any())


def _content_order(
    keys: np.ndarray, prompts: pd.DataFrame | None, images: pd.DataFrame | None
) -> np.ndarray:
    """The positions of the sorted distinct ``keys`` in content order."""
    frame = pd.DataFrame({"key": keys, "group": np.full(keys.size, 2, dtype=np.int64)})
    for column in CONTENT_COLUMNS:
        frame[column] = ""
    image = keys < 0
    frame.loc[image, "group"] = 1
    if prompts is not None and len(prompts):
        known = prompts.drop_duplicates("prompt_id").set_index("prompt_id")
        mine = ~image & np.isin(keys, known.index.to_numpy(np.int64))
        frame.loc[mine, "group"] = 0
        for column in CONTENT_COLUMNS:
            if column in known.columns:
                values = known[column].reindex(keys[mine]).fillna("").astype(str)
                frame.loc[mine, column] = values.to_numpy()
    if images is not None and len(images) and "sha256" in images.columns and image.any():
        sha = images.drop_duplicates("image_id").set_index("image_id")["sha256"]
        values = sha.reindex(-keys[image] - 1).fillna("").astype(str)
        frame.loc[image, "text"] = values.to_numpy()
    by = ["group", *CONTENT_COLUMNS, "key"]  # the key last: unique, so the order is total
    return frame.sort_values(by, kind="mergesort").index.to_numpy()
