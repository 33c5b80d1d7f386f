"""How a metric's verdict on a vote is scored: the three accuracy protocols and the human ceiling.

For a vote between images L and R and a metric with scores s(L), s(R), let
Δ = s(L) - s(R) (oriented so that higher is better). Three protocols:

``decisive``  (a) over decisive human votes (left or right), the metric is right
              when it scores the chosen image strictly higher; a metric tie
              (Δ = 0) counts as wrong. The ImageReward paper's protocol.
``ties_half`` (b) as (a), but a metric tie counts half: the expected score of
              breaking the tie by a coin. The Pick-a-Pic paper's protocol; a
              constant metric sits at exactly 50%.
``with_ties`` (c) over all votes; tie and both-bad are *human ties*. The metric
              predicts a tie when |Δ| ≤ t, else the side with the higher score,
              and is right when the prediction equals the human outcome. The
              tie threshold t is cross-fitted (:func:`cross_fitted_thresholds`).

The human ceiling (:func:`ceiling_credit`) scores each rater against the others.
"""

from __future__ import annotations

import numpy as np

from arena.stats.pairs import LEFT, RIGHT

PROTOCOLS: dict[str, str] = {
    "decisive": "(a) decisive votes, metric ties wrong (ImageReward)",
    "ties_half": "(b) decisive votes, metric ties half (Pick-a-Pic)",
    "with_ties": "(c) with human ties, cross-fitted tie threshold",
}
CEILING = "human ceiling"
CEILING_PROTOCOL = "leave-one-out majority of other raters"


def protocol_credit(
    delta: np.ndarray, outcome: np.ndarray, protocol: str, threshold: float | np.ndarray = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vote credit (0, 0.5 or 1) and which votes count, for one protocol.

    ``delta`` = score(left) - score(right) (NaN where a score is missing);
    ``outcome`` = vote codes (0 left, 1 right, 2 tie, 3 both bad). ``threshold``
    (scalar or per vote) is the tie threshold of ``with_ties``.
    """
    delta = np.asarray(delta, dtype=np.float64)
    outcome = np.asarray(outcome)
    scored = np.isfinite(delta)
    human = np.where(outcome == LEFT, 1, np.where(outcome == RIGHT, -1, 0))
    if protocol in ("decisive", "ties_half"):
        counted = scored & (outcome <= RIGHT)
        agree = np.sign(delta) == human
        credit = agree.astype(np.float64)
        if protocol == "ties_half":
            credit = credit + 0.5 * (delta == 0)
    elif protocol == "with_ties":
        counted = scored
        predicted = np.where(np.abs(delta) <= threshold, 0, np.sign(delta))
        credit = (predicted == human).astype(np.float64)
    else:
        raise ValueError(f"protocol {protocol!r}: expected one of {tuple(PROTOCOLS)}.")
    return np.where(counted, credit, 0.0), counted


def fit_tie_threshold(delta: np.ndarray, outcome: np.ndarray) -> float:
    """The tie threshold t maximising the ``with_ties`` accuracy on these votes.

    Predicting a tie for |Δ| ≤ t, accuracy as a function of t only changes at
    observed |Δ| values, so all of them (and t = 0) are tried exactly in
    O(n log n): ties predicted for the k smallest |Δ| earn the human ties among
    them plus the decisive votes beyond them whose sign matches. Among equally
    good thresholds the smallest is returned.
    """
    return _fit_sorted(*_sorted_for_fit(delta, outcome)[:3])


def _sorted_for_fit(delta, outcome) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scored votes by increasing |Δ|: (|Δ|, human tie?, metric right if it decides?, order).

    The order among equal |Δ| does not matter: thresholds are only tried at the
    ends of runs of equal values.
    """
    delta = np.asarray(delta, dtype=np.float64)
    outcome = np.asarray(outcome)
    a = np.abs(delta)
    order = np.argsort(a)
    order = order[: int(np.isfinite(a).sum())]  # NaN sorts last
    d, o = delta[order], outcome[order]
    is_tie = o > RIGHT
    right = ((o == LEFT) & (d > 0)) | ((o == RIGHT) & (d < 0))
    return a[order], is_tie, right, order


def _fit_sorted(a: np.ndarray, is_tie: np.ndarray, right: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    tie_cum = np.r_[0, np.cumsum(is_tie)]  # human ties among the k smallest |Δ|
    right_cum = np.r_[0, np.cumsum(right)]
    # Candidate cuts: after every run of equal |Δ| (k = run end); k = 0 unless zeros exist.
    ends = np.flatnonzero(np.r_[a[1:] != a[:-1], True]) + 1
    cuts = ends if a[0] == 0 else np.r_[0, ends]
    score = tie_cum[cuts] + (right_cum[-1] - right_cum[cuts])
    best = cuts[int(np.argmax(score))]
    return float(a[best - 1]) if best > 0 else 0.0


def cross_fitted_thresholds(
    delta: np.ndarray, outcome: np.ndarray, fold: np.ndarray, n_folds: int
) -> tuple[np.ndarray, list[float]]:
    """Per-vote tie threshold fitted on the votes of the other folds, and each fold's threshold.

    With one fold the threshold is fitted on all votes (in-sample, optimistic).
    The votes are sorted once; each fit takes the other folds' subsequence.
    """
    fold = np.asarray(fold)
    a_sorted, is_tie, right, order = _sorted_for_fit(delta, outcome)
    fold_sorted = fold[order]
    per_vote = np.zeros(len(delta))
    fitted = []
    for f in range(n_folds):
        use = fold_sorted != f if n_folds > 1 else np.ones(a_sorted.size, dtype=bool)
        t = _fit_sorted(a_sorted[use], is_tie[use], right[use])
        per_vote[fold == f] = t
        fitted.append(t)
    return per_vote, fitted


def ceiling_credit(unit: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Leave-one-out agreement of each decisive vote with the other votes on its unit.

    ``value`` 0/1 = which image of the pair won (non-decisive values are ignored).
    Returns (credit per vote: 1 agrees with the others' majority, 0.5 the others
    are split evenly, 0 disagrees; mask of votes on units with ≥ 2 decisive votes).
    """
    unit, value = np.asarray(unit), np.asarray(value)
    decisive = value <= 1
    u, v = unit[decisive], value[decisive]
    total = np.bincount(u, minlength=int(unit.max()) + 1 if unit.size else 0)
    first = np.bincount(u, weights=(v == 0).astype(np.float64), minlength=total.size)
    same = np.where(v == 0, first[u], total[u] - first[u]) - 1
    other = total[u] - 1 - same
    credit_dec = np.where(same > other, 1.0, np.where(same == other, 0.5, 0.0))
    counted_dec = total[u] >= 2
    credit = np.zeros(unit.size)
    counted = np.zeros(unit.size, dtype=bool)
    credit[decisive] = np.where(counted_dec, credit_dec, 0.0)
    counted[decisive] = counted_dec
    return credit, counted
