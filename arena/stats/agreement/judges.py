"""A machine judge read as one more rater and as one more decider: the pieces, over arrays.

A judge (rater kind ``judge``, ``arena judge``) answers each image pair twice, once in
each order (the two images swapped between left and right). Answers are read as answers
about the unordered pair (:func:`arena.stats.image_pairs.orient`: which image of the pair
won, the screen side forgotten); an answer's *orientation* says which order it was given
in (the pair's lower image id on the left or on the right).

- **Agreement with the human majority** (:func:`majority_credit`, :func:`pair_means`):
  each decisive judge answer against the majority of the decisive human votes on its
  pair, credited 1 / ½ / 0 exactly as the human ceiling credits a held-out human
  (:func:`arena.stats.agreement.protocols.ceiling_credit`); the judge's two orders are
  averaged into one credit per pair, so a judge that always picks the left image earns ½
  where the humans agree, not 1 on half the pairs counted twice.
- **α with and without the judge** (:func:`alpha_contributions`): nominal
  Krippendorff's α of the humans on the pairs they rated, and of the same pairs with the
  judge as one more coder. A coder has one value per unit; the judge's value is either of
  its orders' answers with probability ½ each. A unit's coincidences are linear in the
  one coder's indicator, so that is the average of the two codings' coincidences.
- **Position consistency** (:func:`order_consistency`): over pairs answered in both
  orders, whether the two answers agree once the swapped order is mapped back (left ↔
  right; tie and both-bad stay): with the oriented answers, whether they are equal.
- **Own leaderboard** (:func:`win_cells`, :func:`decider_board`): the judge's battles as
  a win matrix (a tie is half a win each way) fitted as the metrics' own leaderboards are,
  and its order against the human board's (:func:`rank_correlation`: ρ, τ-b).

Plain functions over numpy arrays; no database; random pairings only from a generator
passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.stats.agreement.correlations import (
    MIN_MODELS_FOR_INTERVAL,
    identified_board,
    kendall_rows,
    spearman_rows,
)
from arena.stats.agreement.intervals import nan_percentile_interval
from arena.stats.agreement.permutation import permutation_pvalue
from arena.stats.agreement.reliability import PAIR_VALUES, pair_coincidences
from arena.stats.bradley_terry import bt_fit, bt_fit_batch
from arena.stats.image_pairs import HIGHER, LOWER
from arena.stats.pairs import RIGHT


def majority_credit(
    unit: np.ndarray,
    answer: np.ndarray,
    human_unit: np.ndarray,
    human_answer: np.ndarray,
    n_units: int,
    min_humans: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Per judge answer: credit against the decisive human majority on its pair, and
    whether it counts.

    ``unit``/``answer``: the judge's oriented answers (0 lower image won, 1 higher won,
    2 tie, 3 both bad); ``human_*`` the humans' (one per rater and pair). Credit 1 when
    the answer is the side most decisive humans chose, ½ when they split evenly, 0
    otherwise. Counted: decisive answers on pairs with at least ``min_humans`` decisive
    human votes (2: the pairs on which the human ceiling is defined). Ties and both-bad
    are no side: neither the judge's nor the humans' count, as for the ceiling.
    """
    unit = np.asarray(unit, dtype=np.int64)
    answer = np.asarray(answer, dtype=np.int64)
    human_unit = np.asarray(human_unit, dtype=np.int64)
    human_answer = np.asarray(human_answer, dtype=np.int64)
    decisive = human_answer <= RIGHT
    total = np.bincount(human_unit[decisive], minlength=n_units)
    lower = np.bincount(human_unit[decisive & (human_answer == LOWER)], minlength=n_units)
    same = np.where(answer == LOWER, lower[unit], total[unit] - lower[unit])
    other = total[unit] - same
    credit = np.where(same > other, 1.0, np.where(same == other, 0.5, 0.0))
    counted = (answer <= RIGHT) & (total[unit] >= min_humans)
    return np.where(counted, credit, 0.0), counted


def pair_means(
    unit: np.ndarray, credit: np.ndarray, counted: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray]:
    """(units with a counted answer, the mean credit of their counted answers).

    One number per pair: a pair answered in both orders weighs as much as one answered
    once, and a judge whose two orders disagree gets the average of the two.
    """
    unit = np.asarray(unit, dtype=np.int64)
    counted = np.asarray(counted, dtype=bool)
    n = np.bincount(unit[counted], minlength=n_units)
    s = np.bincount(unit[counted], weights=np.asarray(credit)[counted], minlength=n_units)
    units = np.flatnonzero(n > 0)
    return units, s[units] / n[units]


def order_answers(
    unit: np.ndarray, answer: np.ndarray, lower_left: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the answer given with the lower image id on the left and the one given
    with it on the right (-1: not answered in that order).

    One answer per (unit, order) is expected (the latest: see
    :func:`arena.stats.image_pairs.latest_per_rater`); with several, the last one wins.
    """
    unit = np.asarray(unit, dtype=np.int64)
    answer = np.asarray(answer, dtype=np.int64)
    lower_left = np.asarray(lower_left, dtype=bool)
    first = np.full(n_units, -1, dtype=np.int64)
    swapped = np.full(n_units, -1, dtype=np.int64)
    first[unit[lower_left]] = answer[lower_left]
    swapped[unit[~lower_left]] = answer[~lower_left]
    return first, swapped


def order_consistency(
    unit: np.ndarray, answer: np.ndarray, lower_left: np.ndarray, n_units: int
) -> dict[str, int]:
    """How the two orders of the pairs answered in both compare.

    ``pairs``: pairs answered in both orders; ``consistent``: the two oriented answers
    are equal (the swapped answer mapped back to the first order's sides equals the
    first); ``left_both`` / ``right_both``: the judge chose the image on the left
    (right) of the screen both times, i.e. a different image each time: position, not
    content, decided.
    """
    a, b = order_answers(unit, answer, lower_left, n_units)
    both = (a >= 0) & (b >= 0)
    # Lower image on the left: "left won" is LOWER; on the right: "left won" is HIGHER.
    return {
        "pairs": int(both.sum()),
        "consistent": int((both & (a == b)).sum()),
        "left_both": int((both & (a == LOWER) & (b == HIGHER)).sum()),
        "right_both": int((both & (a == HIGHER) & (b == LOWER)).sum()),
    }


def alpha_contributions(
    human_unit: np.ndarray,
    human_answer: np.ndarray,
    unit: np.ndarray,
    answer: np.ndarray,
    units: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit of ``units``: its coincidence matrix without and with the judge, (U, 4, 4) each.

    ``human_*``: the humans' oriented answers (one per rater and pair); ``unit``/``answer``:
    the judge's (one per order). Without: the humans' answers on the unit
    (:func:`~arena.stats.agreement.reliability.pair_coincidences`, symmetrised over the
    pair's orientation). With: the judge joins as one coder; answered in both orders, the
    unit's matrix is the mean of the matrices with either answer (the expected coincidences
    of a judge that gives one of its two answers at random). A unit of ``units`` without a
    judge answer gets its human matrix both times. Sum the rows and pass them to
    :func:`~arena.stats.agreement.reliability.alpha_from_coincidences`.
    """
    units = np.asarray(units, dtype=np.int64)
    n = units.size
    local = np.full(int(max(units.max(initial=-1), 0)) + 1, -1, dtype=np.int64)
    local[units] = np.arange(n)

    def of(u):
        u = np.asarray(u, dtype=np.int64)
        return np.where(u < local.size, local[np.minimum(u, local.size - 1)], -1)

    hl = of(human_unit)
    keep = hl >= 0
    hl, ha = hl[keep], np.asarray(human_answer, dtype=np.int64)[keep]
    without = np.zeros((n, PAIR_VALUES, PAIR_VALUES))
    contrib, pairable = pair_coincidences(hl, ha) if hl.size else (np.zeros((0, 4, 4)), [])
    without[pairable] = contrib

    jl = of(unit)
    jkeep = jl >= 0
    jl, ja = jl[jkeep], np.asarray(answer, dtype=np.int64)[jkeep]
    with_judge = without.copy()
    if jl.size == 0:
        return without, with_judge
    # One virtual unit per judge answer: the humans of its unit plus that answer.
    order = np.argsort(hl, kind="stable")
    h_sorted = ha[order]
    counts = np.bincount(hl, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    rep = counts[jl]
    virtual = np.repeat(np.arange(jl.size), rep)
    offset = np.arange(rep.sum()) - np.repeat(np.cumsum(rep) - rep, rep)
    rows = np.repeat(starts[jl], rep) + offset
    v_unit = np.r_[virtual, np.arange(jl.size)]
    v_answer = np.r_[h_sorted[rows], ja]
    v_contrib, v_pairable = pair_coincidences(v_unit, v_answer)
    answers_per_unit = np.bincount(jl, minlength=n)
    weight = 1.0 / answers_per_unit[jl[v_pairable]]
    judged = answers_per_unit > 0
    with_judge[judged] = 0.0
    np.add.at(with_judge, jl[v_pairable], v_contrib * weight[:, None, None])
    return without, with_judge


def win_cells(
    left_model: np.ndarray, right_model: np.ndarray, outcome: np.ndarray, n_models: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vote index, win-matrix cell winner·n + loser, weight) of each vote's wins.

    A decisive vote is one win of the chosen model; a tie or both-bad is half a win each
    way (two cells), as in the human board with ties split and the metrics' own boards.
    """
    lm = np.asarray(left_model, dtype=np.int64)
    rm = np.asarray(right_model, dtype=np.int64)
    o = np.asarray(outcome, dtype=np.int64)
    winner = np.where(o == RIGHT, rm, lm)
    loser = np.where(o == RIGHT, lm, rm)
    weight = np.where(o <= RIGHT, 1.0, 0.5)
    tied = np.flatnonzero(o > RIGHT)
    index = np.r_[np.arange(o.size), tied]
    cells = np.r_[winner * n_models + loser, rm[tied] * n_models + lm[tied]]
    return index, cells, np.r_[weight, weight[tied]]


@dataclass
class DeciderBoard:
    """One decider's board over the models it has battles on (NaN elsewhere), and the θ
    whose order the rank correlations compare (the ridge fit of those models when some
    rating is not identified, as for the metrics' own boards)."""

    present: np.ndarray
    rating: np.ndarray
    low: np.ndarray
    high: np.ndarray
    rank: list
    identified: np.ndarray
    theta: np.ndarray
    samples: np.ndarray
    votes: np.ndarray


def decider_board(
    wins: np.ndarray, wins_boot: np.ndarray, votes: np.ndarray, level: float
) -> DeciderBoard:
    """One decider's Bradley-Terry board from its win matrix (n, n) and bootstrap draws of
    it (rounds, n, n), over the models it has battles on (``votes`` > 0), rated as the
    agreement report rates every decider (:func:`~arena.stats.agreement.correlations.
    identified_board`: a model never or always preferred gets no rating)."""
    n = len(votes)
    rounds = wins_boot.shape[0]
    present = np.asarray(votes) > 0
    rating, low, high, theta = (np.full(n, np.nan) for _ in range(4))
    samples = np.full((rounds, n), np.nan)
    rank, ok = [None] * n, np.zeros(n, dtype=bool)
    p = np.flatnonzero(present)
    if p.size:
        w, w_boot = wins[np.ix_(p, p)], wins_boot[:, p][:, :, p]
        th, sm, ra, lo, hi, rk, idf = identified_board(w, w_boot, level)
        if not idf.all():
            th = bt_fit(w)
            sm = bt_fit_batch(w_boot, initial=th)
        theta[p], samples[:, p] = th, sm
        rating[p], low[p], high[p], ok[p] = ra, lo, hi, idf
        for i, r in zip(p, rk, strict=True):
            rank[i] = r
    return DeciderBoard(present, rating, low, high, rank, ok, theta, samples, votes)


def rank_correlation(
    board: DeciderBoard, human: DeciderBoard, level: float, rng: np.random.Generator
) -> dict:
    """Spearman ρ and Kendall τ-b of two boards' orders on the models both rate, with
    permutation p-values (``rng`` draws the pairings above 8 models) and, from 6 models on
    (:data:`~arena.stats.agreement.correlations.MIN_MODELS_FOR_INTERVAL`), intervals from
    the boards' joint bootstrap draws; NaN under 3 models."""
    common = board.present & human.present
    row = {"n_models": int(common.sum())}
    row["few_models"] = bool(row["n_models"] < MIN_MODELS_FOR_INTERVAL)
    for key, fn in (("spearman", spearman_rows), ("kendall", kendall_rows)):
        row[key] = row[f"{key}_low"] = row[f"{key}_high"] = row[f"{key}_p"] = np.nan
        if common.sum() < 3:
            continue
        x, y = board.theta[common], human.theta[common]
        row[key] = float(fn(x[None, :], y[None, :])[0])
        row[f"{key}_p"] = permutation_pvalue(fn, x, y, rng)
        if not row["few_models"]:
            draws = fn(board.samples[:, common], human.samples[:, common])
            lo, hi = nan_percentile_interval(draws[:, None], level)
            row[f"{key}_low"], row[f"{key}_high"] = float(lo[0]), float(hi[0])
    return row
