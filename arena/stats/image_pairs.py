"""Votes as answers about unordered image pairs, forgetting which image was shown left.

Several raters judging the same two images can only be compared once the screen side
is forgotten: the human ceiling and Krippendorff's α (:mod:`arena.stats.agreement`) and
a rater's agreement with the majority (:mod:`arena.stats.rater_quality`) all read votes
this way. This is the one definition of that orientation. Which image is "lower" is a
label (ids follow import order), so what is read this way must not depend on it: α
symmetrises its coincidences over both orientations; the ceiling and the majority
agreement only compare answers on one pair with each other.
"""

from __future__ import annotations

import numpy as np

from arena.stats.pairs import LEFT, RIGHT

#: Oriented answers: the pair's lower image id won, the higher won; ties keep their codes.
LOWER, HIGHER = 0, 1


def orient(
    left_image: np.ndarray, right_image: np.ndarray, outcome: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(unit, answer) per vote: the unordered image pair's index and the oriented answer.

    ``outcome`` holds vote codes (:func:`arena.stats.pairs.encode_outcomes`: 0 left,
    1 right, 2 tie, 3 both bad). Units number the distinct pairs 0..U-1 in order of
    (lower id, higher id); the answer is :data:`LOWER` (0) when the pair's lower image
    id won, :data:`HIGHER` (1) when the higher won, and the tie codes 2 and 3 unchanged.
    """
    left = np.asarray(left_image, dtype=np.int64)
    right = np.asarray(right_image, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.int64)
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    span = int(hi.max()) + 1 if hi.size else 1
    _, unit = np.unique(lo * span + hi, return_inverse=True)
    lower_left = left == lo
    answer = np.where(
        outcome == LEFT,
        np.where(lower_left, LOWER, HIGHER),
        np.where(outcome == RIGHT, np.where(lower_left, HIGHER, LOWER), outcome),
    )
    return unit.ravel().astype(np.int64), answer


def latest_per_rater(unit: np.ndarray, rater: np.ndarray) -> np.ndarray:
    """Sorted indices of the latest vote of each (rater, unit); votes are in time order."""
    unit = np.asarray(unit, dtype=np.int64)
    rater = np.asarray(rater, dtype=np.int64)
    n = unit.size
    key = unit * (int(rater.max()) + 1 if n else 1) + rater
    rev = np.arange(n - 1, -1, -1)
    _, first_rev = np.unique(key[rev], return_index=True)
    return np.sort(rev[first_rev])
