"""Ratings: online Elo, Bradley-Terry with ties, bootstrap intervals, matrices.

Plain functions over numpy arrays, choix style: models are integer indices
``0..n-1`` (names are mapped at the edges, see :func:`index_items`), votes are
three parallel arrays ``left``, ``right``, ``outcome`` with the outcome codes
``LEFT=0, RIGHT=1, TIE=2, BOTH_BAD=3`` (:func:`encode_outcomes` maps the
database strings). Random numbers come from a seeded ``numpy.random.Generator``
passed in; nothing here touches a database or a UI.

The Bradley-Terry model. Model ``i`` has a log-strength ``θ_i`` and beats
``j`` with probability ``σ(θ_i - θ_j)``. The fit maximises

    Σ_{i≠j} W_ij log σ(θ_i - θ_j)  -  RIDGE · Σ_i θ_i²

on the aggregated win matrix ``W`` (``W_ij`` = wins of ``i`` over ``j``).
With ``ties="split"`` (the default) a tie and a both-bad vote each count as
half a win each way; ``ties="drop"`` leaves them out of the fit. The ridge
term is the same L2 penalty as ``choix``'s ``alpha`` (choix is the reference
in the tests); ``RIDGE = 1e-3`` is a Gaussian prior with standard deviation
``1/sqrt(2·RIDGE) ≈ 22`` on θ (≈ 3,900 Elo points): invisible next to the
information of even a few votes (each vote adds up to 0.25), but enough that a
model that won every game, or a group of models never compared with the
others, gets a finite rating. Because the log-likelihood gradient sums to zero,
the penalised optimum has ``Σθ = 0``: a disconnected group is centred on 0.

Ratings are reported on the Elo scale ``1000 + 400/ln(10) · θ`` (a
400-point gap means 10:1 odds), centred on a mean of 1000 or anchored so that
a named model sits at a given rating (:func:`to_elo`).

The bootstrap resamples battles. Resampling ``N`` battles with replacement
has exactly the law of a multinomial draw of ``N`` over the distinct
pair-outcome cells with probabilities ``count/N``, so rounds are drawn on the
aggregated counts (memory and time independent of ``N``) and fitted together:
every round starts from the full-data fit and takes Newton steps with the
full-data Hessian (a chord method), vectorised over a ``(rounds, n, n)``
tensor; a round that has not converged after ``max_iter`` steps is refitted
by the damped Newton method of :func:`bt_fit`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

OUTCOMES = ("left", "right", "tie", "both_bad")
LEFT, RIGHT, TIE, BOTH_BAD = range(4)
TIE_MODES = ("split", "drop")

ELO_INITIAL = 1000.0
ELO_K = 4.0
ELO_SCALE = 400.0
ELO_BASE = 10.0
#: One unit of θ in Elo points: 400 / ln(10) ≈ 173.7.
THETA_TO_ELO = ELO_SCALE / math.log(ELO_BASE)
#: L2 penalty on θ (choix's ``alpha``): keeps undefeated and disconnected models finite.
RIDGE = 1e-3


# -- inputs ----------------------------------------------------------------------------------
def encode_outcomes(outcomes: Iterable[str]) -> np.ndarray:
    """Outcome strings ("left", "right", "tie", "both_bad") -> int8 codes 0..3."""
    values = np.asarray(list(outcomes) if not isinstance(outcomes, np.ndarray) else outcomes)
    codes = np.full(values.shape, -1, dtype=np.int8)
    for code, name in enumerate(OUTCOMES):
        codes[values == name] = code
    bad = values[codes < 0]
    if bad.size:
        raise ValueError(
            f"outcome {str(bad[0])!r} is not one of {OUTCOMES} ({bad.size} such vote(s)); "
            "fix or delete those votes."
        )
    return codes


def index_items(
    left_names: Sequence[str], right_names: Sequence[str], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Map model names to indices: (names, left indices, right indices).

    ``names`` fixes the order (and may include models without votes); by
    default it is the sorted set of names that appear.
    """
    left_names = np.asarray(left_names, dtype=object)
    right_names = np.asarray(right_names, dtype=object)
    if names is None:
        names = sorted(set(np.unique(left_names)) | set(np.unique(right_names)))
    names = list(names)
    lookup = {name: i for i, name in enumerate(names)}
    if len(lookup) != len(names):
        raise ValueError("model names must be unique.")
    try:
        left = np.fromiter((lookup[x] for x in left_names), dtype=np.int64, count=len(left_names))
        right = np.fromiter(
            (lookup[x] for x in right_names), dtype=np.int64, count=len(right_names)
        )
    except KeyError as exc:
        raise ValueError(f"vote names model {exc.args[0]!r}, which is not in names.") from None
    return names, left, right


def _check_votes(n_items: int, left, right, outcome) -> tuple[np.ndarray, ...]:
    left = np.asarray(left, dtype=np.int64)
    right = np.asarray(right, dtype=np.int64)
    outcome = np.asarray(outcome, dtype=np.int64)
    if not (left.shape == right.shape == outcome.shape) or left.ndim != 1:
        raise ValueError("left, right and outcome must be 1-d arrays of the same length.")
    if left.size:
        if min(left.min(), right.min()) < 0 or max(left.max(), right.max()) >= n_items:
            raise ValueError(f"model indices must lie in 0..{n_items - 1}.")
        if np.any(left == right):
            raise ValueError("a vote compares a model with itself; drop those votes.")
        if outcome.min() < 0 or outcome.max() > BOTH_BAD:
            raise ValueError("outcome codes must be 0..3 (left, right, tie, both_bad).")
    return left, right, outcome


# -- online Elo ------------------------------------------------------------------------------
def online_elo(
    n_items: int,
    left,
    right,
    outcome,
    k: float = ELO_K,
    scale: float = ELO_SCALE,
    base: float = ELO_BASE,
    initial: float = ELO_INITIAL,
) -> np.ndarray:
    """Online Elo over votes in the given (time) order; tie and both-bad score 0.5.

    The expected score of the left model is ``1 / (1 + base^((R_right - R_left)/scale))``
    and both ratings move by ``k · (score - expected)`` in opposite directions.
    """
    left, right, outcome = _check_votes(n_items, left, right, outcome)
    score = np.where(outcome == LEFT, 1.0, np.where(outcome == RIGHT, 0.0, 0.5))
    ratings = [float(initial)] * n_items
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


# -- aggregation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PairCounts:
    """Votes aggregated per pair: ``wins[i, j]`` decisive wins of i over j;
    ``ties`` and ``both_bad`` symmetric counts. Left/right is forgotten."""

    wins: np.ndarray
    ties: np.ndarray
    both_bad: np.ndarray

    @property
    def n_items(self) -> int:
        return self.wins.shape[0]

    @property
    def battles(self) -> np.ndarray:
        """Battle-count matrix (symmetric): votes of any outcome between i and j."""
        return self.wins + self.wins.T + self.ties + self.both_bad

    @property
    def total(self) -> int:
        return int(np.triu(self.battles, 1).sum())

    def win_matrix(self, ties: str = "split") -> np.ndarray:
        """W[i, j] = wins of i over j, ties and both-bad as half a win each way ("split")
        or left out ("drop")."""
        _check_ties(ties)
        w = self.wins.astype(np.float64)
        if ties == "split":
            w = w + 0.5 * (self.ties + self.both_bad)
        return w

    def subset(self, keep: np.ndarray) -> PairCounts:
        keep = np.asarray(keep)
        return PairCounts(
            self.wins[np.ix_(keep, keep)],
            self.ties[np.ix_(keep, keep)],
            self.both_bad[np.ix_(keep, keep)],
        )


def _check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties={ties!r}: expected one of {TIE_MODES}.")


def aggregate(n_items: int, left, right, outcome) -> PairCounts:
    """Count votes per (pair, outcome) cell; O(votes) time, O(n²) memory."""
    left, right, outcome = _check_votes(n_items, left, right, outcome)
    size = n_items * n_items
    winner = np.where(outcome == RIGHT, right, left)
    loser = np.where(outcome == RIGHT, left, right)
    decisive = outcome <= RIGHT
    wins = np.bincount((winner * n_items + loser)[decisive], minlength=size)
    lo, hi = np.minimum(left, right), np.maximum(left, right)
    pair = lo * n_items + hi

    def symmetric(code: int) -> np.ndarray:
        m = np.bincount(pair[outcome == code], minlength=size).reshape(n_items, n_items)
        return m + m.T

    return PairCounts(wins.reshape(n_items, n_items), symmetric(TIE), symmetric(BOTH_BAD))


# -- Bradley-Terry ---------------------------------------------------------------------------
def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def bt_objective(theta: np.ndarray, wins: np.ndarray, ridge: float = RIDGE) -> float:
    """Negative penalised log-likelihood (choix's ``PairwiseFcts.objective`` on counts)."""
    diff = theta[:, None] - theta[None, :]
    return float(np.sum(wins * np.logaddexp(0.0, -diff)) + ridge * np.sum(theta**2))


def bt_gradient_hessian(
    theta: np.ndarray, wins: np.ndarray, ridge: float = RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of :func:`bt_objective`."""
    n = wins + wins.T
    p = _sigmoid(theta[:, None] - theta[None, :])
    grad = (n * p).sum(axis=1) - wins.sum(axis=1) + 2.0 * ridge * theta
    w = n * p * (1.0 - p)
    hess = np.diag(w.sum(axis=1)) - w + 2.0 * ridge * np.eye(len(theta))
    return grad, hess


def bt_fit(
    wins: np.ndarray,
    ridge: float = RIDGE,
    tol: float = 1e-10,
    max_iter: int = 200,
    initial: np.ndarray | None = None,
) -> np.ndarray:
    """Bradley-Terry maximum (penalised) likelihood θ from a win matrix.

    ``wins[i, j]`` is the (possibly fractional) number of wins of i over j, e.g.
    ``PairCounts.win_matrix()``. Damped Newton: each step solves the n×n system
    and halves until the objective decreases enough (Armijo), so it converges
    from any start, also for undefeated models. Returns θ with Σθ = 0.
    """
    wins = np.asarray(wins, dtype=np.float64)
    if wins.ndim != 2 or wins.shape[0] != wins.shape[1]:
        raise ValueError(f"wins must be a square matrix, got shape {wins.shape}.")
    if np.any(wins < 0) or not np.all(np.isfinite(wins)):
        raise ValueError("wins must be finite and non-negative.")
    if ridge <= 0:
        raise ValueError("ridge must be > 0 (it keeps undefeated models finite).")
    wins = wins.copy()
    np.fill_diagonal(wins, 0.0)
    theta = np.zeros(len(wins)) if initial is None else np.array(initial, dtype=np.float64)
    value = bt_objective(theta, wins, ridge)
    for _ in range(max_iter):
        grad, hess = bt_gradient_hessian(theta, wins, ridge)
        step = np.linalg.solve(hess, grad)
        slope = float(grad @ step)
        t = 1.0
        while True:
            candidate = theta - t * step
            new_value = bt_objective(candidate, wins, ridge)
            if new_value <= value - 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        theta, value = candidate, new_value
        if np.max(np.abs(t * step), initial=0.0) < tol:
            break
    return theta - theta.mean()


def _information(theta: np.ndarray, battles: np.ndarray, ridge: float) -> np.ndarray:
    p = _sigmoid(theta[:, None] - theta[None, :])
    w = battles * p * (1.0 - p)
    return np.diag(w.sum(axis=1)) - w + 2.0 * ridge * np.eye(len(theta))


def bt_fit_batch(
    wins: np.ndarray,
    ridge: float = RIDGE,
    initial: np.ndarray | None = None,
    hessian: np.ndarray | None = None,
    tol: float = 1e-8,
    max_iter: int = 40,
) -> np.ndarray:
    """Fit many win matrices at once: ``wins`` (B, n, n) -> θ (B, n).

    Chord Newton: all rounds start at ``initial`` (default: the fit of the mean
    matrix) and step with the inverse of one shared ``hessian`` (default: the
    Hessian at ``initial`` on the mean matrix). For bootstrap rounds, which are
    small perturbations of the same data, this converges in a few steps at the
    cost of O(B·n²) per step. Rounds not converged to ``tol`` after
    ``max_iter`` steps are refitted one by one with :func:`bt_fit`.
    """
    wins = np.array(wins, dtype=np.float64)
    if wins.ndim != 3 or wins.shape[1] != wins.shape[2]:
        raise ValueError(f"wins must have shape (B, n, n), got {wins.shape}.")
    rounds, n, _ = wins.shape
    idx = np.arange(n)
    wins[:, idx, idx] = 0.0
    if initial is None:
        initial = bt_fit(wins.mean(axis=0), ridge=ridge)
    initial = np.asarray(initial, dtype=np.float64)
    if hessian is None:
        mean = wins.mean(axis=0)
        hessian = _information(initial, mean + mean.T, ridge)
    inverse = np.linalg.inv(hessian)
    battles = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    theta = np.repeat(initial[None, :], rounds, axis=0)
    buf = np.empty_like(battles)
    active = np.arange(rounds)
    for _ in range(max_iter):
        if active.size == 0:
            break
        th = theta[active]
        pi = np.exp(th - th.max(axis=1, keepdims=True))
        b = buf[: active.size]
        np.add(pi[:, :, None], pi[:, None, :], out=b)
        np.divide(battles[active], b, out=b)
        expected = b.sum(axis=2) * pi  # Σ_j N_ij σ(θ_i - θ_j)
        grad = expected - won[active] + 2.0 * ridge * th
        step = grad @ inverse
        theta[active] = th - step
        active = active[np.max(np.abs(step), axis=1) >= tol]
    for r in active:
        theta[r] = bt_fit(wins[r], ridge=ridge, initial=theta[r] if _finite(theta[r]) else None)
    return theta - theta.mean(axis=1, keepdims=True)


def _finite(x: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(x)) and np.max(np.abs(x)) < 1e3)


def to_elo(theta: np.ndarray, anchor: tuple[int, float] | None = None) -> np.ndarray:
    """θ (..., n) on the Elo scale: mean 1000, or model ``anchor[0]`` at ``anchor[1]``."""
    theta = np.asarray(theta, dtype=np.float64)
    if anchor is None:
        return ELO_INITIAL + THETA_TO_ELO * (theta - theta.mean(axis=-1, keepdims=True))
    index, rating = anchor
    return rating + THETA_TO_ELO * (theta - theta[..., index : index + 1])


# -- bootstrap -------------------------------------------------------------------------------
def _cells(counts: PairCounts, ties: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The non-empty pair-outcome cells: (flat index into W, flat index of its mirror
    or -1 for a decisive cell, count). Ties and both-bad share one cell per pair:
    the fit cannot tell them apart."""
    n = counts.n_items
    flat_wins = counts.wins.ravel()
    dec = np.flatnonzero(flat_wins)
    i, j = np.triu_indices(n, 1)
    tied = (counts.ties + counts.both_bad)[i, j]
    keep = tied > 0
    i, j, tied = i[keep], j[keep], tied[keep]
    index = np.concatenate([dec, i * n + j])
    mirror = np.concatenate([np.full(dec.size, -1), j * n + i])
    values = np.concatenate([flat_wins[dec], tied]).astype(np.int64)
    if ties == "drop":  # still drawn (they are battles), but weigh nothing in the fit
        mirror[dec.size :] = -2
    return index, mirror, values


def multinomial_draws(rng: np.random.Generator, counts: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws of Multinomial(counts.sum(), counts / counts.sum()): (size, K) int64.

    This is the law of the cell counts after resampling the underlying items
    with replacement.
    """
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros((size, counts.size), dtype=np.int64)
    return rng.multinomial(total, counts / total, size=size)


def _round_chunk(
    rng: np.random.Generator,
    size: int,
    n: int,
    cells: tuple[np.ndarray, np.ndarray, np.ndarray],
    theta: np.ndarray,
    hessian: np.ndarray,
    ridge: float,
) -> np.ndarray:
    index, mirror, values = cells
    draws = multinomial_draws(rng, values, size).astype(np.float64)
    wins = np.zeros((size, n * n))
    dec = mirror == -1
    tie = mirror >= 0
    wins[:, index[dec]] = draws[:, dec]
    half = 0.5 * draws[:, tie]
    wins[:, index[tie]] += half
    wins[:, mirror[tie]] += half
    return bt_fit_batch(
        wins.reshape(size, n, n), ridge=ridge, initial=theta, hessian=hessian, max_iter=40
    )


def bootstrap_bt(
    counts: PairCounts,
    rng: np.random.Generator,
    rounds: int = 1000,
    ties: str = "split",
    ridge: float = RIDGE,
    theta: np.ndarray | None = None,
    workers: int | None = None,
    chunk: int | None = None,
) -> np.ndarray:
    """θ of ``rounds`` bootstrap resamples of the battles: (rounds, n).

    Each round is a multinomial draw over the pair-outcome cells (the law of
    resampling battles with replacement) fitted by :func:`bt_fit_batch`.
    Rounds are drawn in chunks, each from its own child of ``rng`` (so the
    result depends on ``rng`` and ``chunk`` only, not on ``workers``); chunks
    run on ``workers`` threads (default: the CPUs available, at most 8).
    """
    _check_ties(ties)
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    n = counts.n_items
    wins = counts.win_matrix(ties)
    if theta is None:
        theta = bt_fit(wins, ridge=ridge)
    hessian = _information(theta, wins + wins.T, ridge)
    cells = _cells(counts, ties)
    if chunk is None:  # ~16 MB of float64 per (chunk, n, n) tensor
        chunk = int(max(1, min(rounds, 64, 2_000_000 // max(n * n, 1))))
    sizes = [min(chunk, rounds - start) for start in range(0, rounds, chunk)]
    children = rng.spawn(len(sizes))
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    def run(k: int) -> np.ndarray:
        return _round_chunk(children[k], sizes[k], n, cells, theta, hessian, ridge)

    if workers <= 1 or len(sizes) == 1:
        parts = [run(k) for k in range(len(sizes))]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, range(len(sizes))))
    return np.concatenate(parts, axis=0)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each column of ``samples`` (rounds, n)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a coverage in (0, 1), e.g. 0.95.")
    tail = 50.0 * (1.0 - level)
    lower, upper = np.percentile(samples, [tail, 100.0 - tail], axis=0)
    return lower, upper


def rank_upper_bound(
    lower: np.ndarray, upper: np.ndarray, ranked: np.ndarray | None = None
) -> np.ndarray:
    """1 + the number of (ranked) models whose lower bound is above this upper bound.

    Models outside ``ranked`` (a boolean mask) get NaN and do not push others down.
    """
    lower, upper = np.asarray(lower, float), np.asarray(upper, float)
    ranked = np.ones(lower.shape, bool) if ranked is None else np.asarray(ranked, bool)
    above = (lower[None, :] > upper[:, None]) & ranked[None, :]
    rank = 1.0 + above.sum(axis=1)
    rank[~ranked] = np.nan
    return rank


# -- matrices and per-model numbers ----------------------------------------------------------
def observed_win_rate(counts: PairCounts, ties: str = "split") -> np.ndarray:
    """Share of i's battles against j that i won (ties as half); NaN where none."""
    wins = counts.win_matrix(ties)
    played = wins + wins.T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(played > 0, wins / np.where(played > 0, played, 1.0), np.nan)


def predicted_win_rate(theta: np.ndarray) -> np.ndarray:
    """BT probability that i beats j; NaN on the diagonal."""
    theta = np.asarray(theta, dtype=np.float64)
    p = _sigmoid(theta[:, None] - theta[None, :])
    np.fill_diagonal(p, np.nan)
    return p


def votes_per_model(counts: PairCounts) -> np.ndarray:
    return counts.battles.sum(axis=1)


def win_rate(counts: PairCounts) -> np.ndarray:
    """Per model: (wins + ½·(ties + both-bad)) / votes; NaN without votes."""
    votes = votes_per_model(counts)
    score = counts.win_matrix("split").sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, score / np.maximum(votes, 1), np.nan)


def both_bad_rate(counts: PairCounts) -> np.ndarray:
    """Per model: share of its votes where the rater marked both images bad."""
    votes = votes_per_model(counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes > 0, counts.both_bad.sum(axis=1) / np.maximum(votes, 1), np.nan)


# -- everything at once ----------------------------------------------------------------------
@dataclass(frozen=True)
class Ratings:
    """The full rating of one set of votes; arrays are indexed like ``names``."""

    names: list[str]
    counts: PairCounts
    theta: np.ndarray  # BT log-strengths, Σθ = 0
    rating: np.ndarray  # BT on the Elo scale (centred or anchored)
    lower: np.ndarray  # bootstrap interval of ``rating``
    upper: np.ndarray
    samples: np.ndarray  # (rounds, n) bootstrap θ
    elo: np.ndarray  # online Elo
    votes: np.ndarray
    win_rate: np.ndarray
    both_bad_rate: np.ndarray
    provisional: np.ndarray  # fewer than min_votes votes: listed, not ranked
    rank_ub: np.ndarray  # float, NaN for provisional models
    observed: np.ndarray  # observed win-rate matrix
    predicted: np.ndarray  # BT-predicted win-rate matrix
    level: float
    ties: str
    anchor: tuple[str, float] | None


def compute_ratings(
    left_names: Sequence[str],
    right_names: Sequence[str],
    outcomes: Sequence[str] | np.ndarray,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    rounds: int = 1000,
    ties: str = "split",
    anchor: tuple[str, float] | None = None,
    min_votes: int = 50,
    level: float = 0.95,
    ridge: float = RIDGE,
    workers: int | None = None,
) -> Ratings:
    """Every leaderboard number from votes given by model name, in time order."""
    _check_ties(ties)
    names, left, right = index_items(left_names, right_names, names)
    outcome = outcomes if np.asarray(outcomes).dtype.kind in "iu" else encode_outcomes(outcomes)
    anchor_index = None
    if anchor is not None:
        if anchor[0] not in names:
            raise ValueError(
                f"anchor model {anchor[0]!r} has no votes here; pick one of: {', '.join(names)}."
            )
        anchor_index = (names.index(anchor[0]), float(anchor[1]))
    n = len(names)
    counts = aggregate(n, left, right, outcome)
    elo = online_elo(n, left, right, outcome)
    theta = bt_fit(counts.win_matrix(ties), ridge=ridge)
    samples = (
        bootstrap_bt(counts, rng, rounds, ties=ties, ridge=ridge, theta=theta, workers=workers)
        if rounds > 0
        else theta[None, :]
    )
    lower, upper = percentile_interval(to_elo(samples, anchor_index), level)
    votes = votes_per_model(counts)
    provisional = votes < min_votes
    return Ratings(
        names=names,
        counts=counts,
        theta=theta,
        rating=to_elo(theta, anchor_index),
        lower=lower,
        upper=upper,
        samples=samples,
        elo=elo,
        votes=votes,
        win_rate=win_rate(counts),
        both_bad_rate=both_bad_rate(counts),
        provisional=provisional,
        rank_ub=rank_upper_bound(lower, upper, ~provisional),
        observed=observed_win_rate(counts, ties),
        predicted=predicted_win_rate(theta),
        level=level,
        ties=ties,
        anchor=anchor,
    )
