"""A prompt's stored tags: split, counted, matched and spread over votes.

``prompts.tags`` holds comma-separated labels (``join_tags`` writes them): a prompt
file's tags, or a benchmark's challenge labels and skills (``arena import-prompts``).
The tag filter keeps the prompts that carry one label; the agreement page's ``tag``
slice counts a vote under each label of its prompt (a multi-label slice, unlike a
category).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def split_tags(tags: str | None) -> list[str]:
    """The non-empty, trimmed labels of one stored tag string, in order."""
    if tags is None or (not isinstance(tags, str) and pd.isna(tags)):
        return []
    return [t.strip() for t in str(tags).split(",") if t.strip()]


def count_tags(tags: Iterable[str | None]) -> np.ndarray:
    """Number of comma-separated, non-empty tags in each tag string."""
    return np.fromiter((len(split_tags(s)) for s in tags), dtype=np.int64)


def has_tag(tags: pd.Series, tag: str) -> np.ndarray:
    """Whether each tag string carries ``tag`` (exact after trimming)."""
    wanted = tag.strip()
    return np.fromiter((wanted in split_tags(s) for s in tags), dtype=bool, count=len(tags))


def tag_counts(tags: Iterable[str | None]) -> dict[str, int]:
    """Per distinct label, the number of tag strings (prompts) carrying it."""
    counts: dict[str, int] = {}
    for s in tags:
        for t in dict.fromkeys(split_tags(s)):
            counts[t] = counts.get(t, 0) + 1
    return counts


def known_tags(tags, most_common: int | None = None) -> list[str]:
    """Every distinct label of ``tags`` (tag strings, or :func:`tag_counts` of them),
    sorted; with ``most_common``, only that many of the labels the most prompts carry
    (ties: alphabetical), still sorted."""
    counts = tags if isinstance(tags, dict) else tag_counts(tags)
    if most_common is not None:
        ranked = sorted(counts, key=lambda t: (-counts[t], t))[:most_common]
        return sorted(ranked)
    return sorted(counts)


def tag_memberships(prompt_ids: np.ndarray, tags: Iterable[str | None]):
    """(prompt id per membership, label per membership, labels): one row per (prompt,
    label) pair, labels sorted, duplicates within a prompt counted once."""
    ids, names = [], []
    for pid, s in zip(prompt_ids, tags, strict=True):
        for label in dict.fromkeys(split_tags(s)):
            ids.append(pid)
            names.append(label)
    codes, labels = pd.factorize(pd.Series(names, dtype=object), sort=True)
    return np.asarray(ids, dtype=np.int64), codes.astype(np.int64), [str(x) for x in labels]
