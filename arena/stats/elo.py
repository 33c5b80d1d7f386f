"""The Elo scale: online Elo over votes in time order, and θ -> Elo points.

Online Elo is the classic running update (what the leaderboard shows beside
Bradley-Terry). The Bradley-Terry strengths θ are reported on the same scale,
``1000 + 400/ln(10) · θ`` (a 400-point gap means 10:1 odds), centred so that the
ranked models average 1000, or anchored so that a named model sits at a given
rating (:func:`to_elo`).
"""

from __future__ import annotations

import math

import numpy as np

from arena.stats.pairs import LEFT, RIGHT, check_votes

ELO_INITIAL = 1000.0
ELO_K = 4.0
ELO_SCALE = 400.0
ELO_BASE = 10.0
#: One unit of θ in Elo points: 400 / ln(10) ≈ 173.7.
THETA_TO_ELO = ELO_SCALE / math.log(ELO_BASE)


def online_elo(
    n_items: int,
    left,
    right,
    outcome,
    k: float = ELO_K,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    initial: float | np.ndarray = ELO_INITIAL,
) -> np.ndarray:
    """Online Elo over votes in the given (time) order; tie and both-bad score 0.5.

    The expected score of the left model is ``1 / (1 + base^((R_right - R_left)/scale))``
    and both ratings move by ``k · (score - expected)`` in opposite directions.
    ``initial`` is the start rating of every model, or an array of ratings to
    continue from (so a long vote stream can be processed in pieces).
    """
    left, right, outcome = check_votes(n_items, left, right, outcome)
    score = np.where(outcome == LEFT, 1.0, np.where(outcome == RIGHT, 0.0, 0.5))
    ratings = np.broadcast_to(np.asarray(initial, dtype=np.float64), (n_items,)).tolist()
    factor = math.log(base) / scale
    exp = math.exp
    step = 1 << 16  # convert in chunks: the Python lists stay small
    for start in range(0, left.size, step):
        stop = start + step
        for a, b, s in zip(
            left[start:stop].tolist(),
            right[start:stop].tolist(),
            score[start:stop].tolist(),
            strict=True,
        ):
            delta = k * (s - 1.0 / (1.0 + exp((ratings[b] - ratings[a]) * factor)))
            ratings[a] += delta
            ratings[b] -= delta
    return np.asarray(ratings)


def to_elo(
    theta: np.ndarray,
    anchor: tuple[int, float] | None = None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """θ (..., n) on the Elo scale: model ``anchor[0]`` at ``anchor[1]``, or else the
    models in ``reference`` (a boolean mask; default all) averaging 1000."""
    theta = np.asarray(theta, dtype=np.float64)
    if anchor is not None:
        index, rating = anchor
        return rating + THETA_TO_ELO * (theta - theta[..., index : index + 1])
    centre = theta if reference is None else theta[..., np.asarray(reference, bool)]
    return ELO_INITIAL + THETA_TO_ELO * (theta - centre.mean(axis=-1, keepdims=True))
