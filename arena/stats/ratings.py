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
400-point gap means 10:1 odds), centred so that the ranked models (those with
at least ``min_votes`` votes; all models if none is) average 1000, or anchored
so that a named model sits at a given rating (:func:`to_elo`). Every bootstrap
round is centred or anchored the same way before the percentiles are taken.

The bootstrap resamples battles. Resampling ``N`` battles with replacement
has exactly the law of a multinomial draw of ``N`` over the distinct
pair-outcome cells with probabilities ``count/N``, so rounds are drawn on the
aggregated counts (memory and time independent of ``N``). The multinomial is
drawn exactly but vectorised (:func:`multinomial_draws`: independent Poisson
cell counts by inversion on tabulated CDFs, then the total corrected to ``N``).
All rounds are fitted together: each starts from the full-data fit and takes
Newton steps with the full-data Hessian (a chord method) until its step is
below ``BOOTSTRAP_TOL`` (1e-6 in θ, 0.0002 Elo), vectorised over a
``(rounds, n, n)`` tensor; a round that has not converged after 40 steps is
refitted by the damped Newton method of :func:`bt_fit`. Chunks of rounds run
on threads; each chunk has its own child generator, so results depend on the
seed only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln as _gammaln
from threadpoolctl import threadpool_limits

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
#: Votes are turned into indices and counts this many at a time (bounded memory).
VOTE_CHUNK = 1 << 18


# -- inputs ----------------------------------------------------------------------------------
def encode_outcomes(outcomes: Iterable[str]) -> np.ndarray:
    """Outcome strings ("left", "right", "tie", "both_bad") -> int8 codes 0..3."""
    import pandas as pd

    values = outcomes if isinstance(outcomes, np.ndarray) else np.asarray(list(outcomes))
    codes = pd.Index(OUTCOMES).get_indexer(values.astype(object))
    if np.any(codes < 0):
        bad = values[codes < 0]
        raise ValueError(
            f"outcome {str(bad[0])!r} is not one of {OUTCOMES} ({bad.size} such vote(s)); "
            "fix or delete those votes."
        )
    return codes.astype(np.int8)


def index_items(
    left_names: Sequence[str], right_names: Sequence[str], names: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Map model names to indices: (names, left indices, right indices).

    ``names`` fixes the order (and may include models without votes); by
    default it is the sorted set of names that appear.
    """
    import pandas as pd

    both = np.concatenate(
        [np.asarray(left_names, dtype=object), np.asarray(right_names, dtype=object)]
    )
    codes, uniques = pd.factorize(both)
    names = sorted(uniques) if names is None else list(names)
    if len(set(names)) != len(names):
        raise ValueError("model names must be unique.")
    where = pd.Index(names).get_indexer(uniques)
    if np.any(where < 0):
        raise ValueError(f"vote names model {uniques[where < 0][0]!r}, which is not in names.")
    index = where[codes].astype(np.int64)
    half = len(both) // 2
    return names, index[:half], index[half:]


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
    initial: float | np.ndarray = ELO_INITIAL,
) -> np.ndarray:
    """Online Elo over votes in the given (time) order; tie and both-bad score 0.5.

    The expected score of the left model is ``1 / (1 + base^((R_right - R_left)/scale))``
    and both ratings move by ``k · (score - expected)`` in opposite directions.
    ``initial`` is the start rating of every model, or an array of ratings to
    continue from (so a long vote stream can be processed in pieces).
    """
    left, right, outcome = _check_votes(n_items, left, right, outcome)
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

    def __add__(self, other: PairCounts) -> PairCounts:
        return PairCounts(
            self.wins + other.wins, self.ties + other.ties, self.both_bad + other.both_bad
        )


def _check_ties(ties: str) -> None:
    if ties not in TIE_MODES:
        raise ValueError(f"ties={ties!r}: expected one of {TIE_MODES}.")


def aggregate(n_items: int, left, right, outcome) -> PairCounts:
    """Count votes per (pair, outcome) cell: one bincount, O(votes) time, O(n²) memory."""
    left, right, outcome = _check_votes(n_items, left, right, outcome)
    code = left * n_items
    code += right
    code *= 4
    code += outcome
    cells = np.bincount(code, minlength=n_items * n_items * 4).reshape(n_items, n_items, 4)
    wins = cells[:, :, LEFT] + cells[:, :, RIGHT].T
    ties = cells[:, :, TIE] + cells[:, :, TIE].T
    both_bad = cells[:, :, BOTH_BAD] + cells[:, :, BOTH_BAD].T
    return PairCounts(wins, ties, both_bad)


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
    n = wins.shape[1]
    idx = np.arange(n)
    wins[:, idx, idx] = 0.0
    mean = wins.mean(axis=0)
    if initial is None:
        initial = bt_fit(mean, ridge=ridge)
    initial = np.asarray(initial, dtype=np.float64)
    if hessian is None:
        hessian = _information(initial, mean + mean.T, ridge)
    theta, todo = _chord_fit(
        wins + wins.transpose(0, 2, 1),
        wins.sum(axis=2),
        initial,
        np.linalg.inv(hessian),
        ridge,
        tol,
        max_iter,
    )
    for r in todo:
        theta[r] = bt_fit(wins[r], ridge=ridge)
    return theta - theta.mean(axis=1, keepdims=True)


def _chord_fit(
    battles: np.ndarray,
    won: np.ndarray,
    initial: np.ndarray,
    inverse: np.ndarray,
    ridge: float,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Chord Newton on (B, n, n) battle counts and (B, n) wins per model.

    The gradient needs Σ_j N_ij σ(θ_i - θ_j) = π_i Σ_j N_ij / (π_i + π_j) with
    π = exp(θ): three passes over the tensor per step, no exp on it. Returns θ
    and the rounds that did not converge (to be refitted by :func:`bt_fit`).
    """
    rounds, n, _ = battles.shape
    theta = np.repeat(initial[None, :], rounds, axis=0)
    step_size = np.full(rounds, np.inf)
    rows = max(1, _BLOCK_ELEMENTS // (n * n))  # a block's tensors stay in cache
    buf = np.empty((min(rows, rounds), n, n))
    for start in range(0, rounds, rows):
        block = slice(start, min(start + rows, rounds))
        th, nb, wb = theta[block], battles[block], won[block]
        bb = buf[: nb.shape[0]]
        for _ in range(max_iter):
            pi = np.exp(th - th.max(axis=1, keepdims=True))
            np.add(pi[:, :, None], pi[:, None, :], out=bb)
            np.divide(nb, bb, out=bb)
            grad = bb.sum(axis=2)
            grad *= pi
            grad -= wb
            grad += 2.0 * ridge * th
            step = grad @ inverse
            th -= step
            size = np.max(np.abs(step), axis=1)
            if size.max() < tol:
                break
        step_size[block] = size
    bad = ~(step_size < tol) | ~np.all(np.isfinite(theta), axis=1)
    return theta, np.flatnonzero(bad)


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


# -- bootstrap -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Cells:
    """The pair-outcome cells, three per pair that has battles, in upper-triangle order:
    ``counts[:, 0]`` i beat j, ``[:, 1]`` j beat i, ``[:, 2]`` tie or both-bad (the fit
    cannot tell those two apart, so they share a cell). Pairs (i < j) are sorted by
    i, then j."""

    first: np.ndarray  # i of each pair
    second: np.ndarray  # j of each pair
    counts: np.ndarray  # (P, 3) int64

    @classmethod
    def of(cls, counts: PairCounts) -> _Cells:
        i, j = np.triu_indices(counts.n_items, 1)
        keep = counts.battles[i, j] > 0
        i, j = i[keep], j[keep]
        tied = (counts.ties + counts.both_bad)[i, j]
        cells = np.stack([counts.wins[i, j], counts.wins[j, i], tied], axis=1)
        return cls(i, j, cells.astype(np.int64))


_TABLE_BUDGET = 4_000_000  # most CDF entries tabulated (32 MB); larger means go to numpy
_BLOCK_ELEMENTS = 1 << 17  # a block of rows shares ~1 MB buffers, which stay in cache


@dataclass(frozen=True)
class _PoissonTables:
    """Inversion tables for the integer means that occur (cell counts repeat a lot).

    For each distinct mean λ: the CDF over k in [λ - 13√λ - 10, λ + 13√λ + 25]
    (the mass outside is below 1e-30, far under the 2^-53 resolution of a
    uniform double; the last entry is set to exactly 1) and a guide table
    ``guide[j] = min{k : cdf[k] >= j/G}`` so that inversion starts next to the
    answer. All tables are concatenated; per cell we keep offsets into them.
    """

    cdf: np.ndarray  # all CDFs, concatenated
    guide: np.ndarray  # absolute indices into ``cdf``, concatenated
    guide_start: np.ndarray  # per tabulated cell: where its guide table starts
    guide_size: np.ndarray  # per tabulated cell: G
    base: np.ndarray  # per tabulated cell: cdf offset - k_min (index -> variate)
    cells: np.ndarray  # which cells are tabulated

    @classmethod
    def build(cls, lam: np.ndarray) -> _PoissonTables:
        values, inverse = np.unique(lam, return_inverse=True)
        spread = 13.0 * np.sqrt(values)
        lo = np.maximum(0, np.floor(values - spread - 10)).astype(np.int64)
        hi = np.ceil(values + spread + 25).astype(np.int64)
        length = hi - lo + 1
        fits = np.cumsum(length) <= _TABLE_BUDGET
        cdfs, guides, guide_start, base = [], [], [], []
        cdf_offset = guide_offset = 0
        for value, k0, size in zip(values[fits], lo[fits], length[fits], strict=True):
            k = np.arange(k0, k0 + size, dtype=np.float64)
            if value > 0:
                cdf = np.cumsum(np.exp(k * math.log(value) - value - _gammaln(k + 1.0)))
            else:  # Poisson(0) is always 0
                cdf = np.ones(size)
            cdf[-1] = 1.0
            guide = np.searchsorted(cdf, np.arange(size) / size, side="left") + cdf_offset
            cdfs.append(cdf)
            guides.append(guide)
            guide_start.append(guide_offset)
            base.append(cdf_offset - k0)
            cdf_offset += size
            guide_offset += size
        tabulated = np.flatnonzero(fits[inverse])
        which = np.cumsum(fits) - 1  # index among tabulated values
        per_cell = which[inverse[tabulated]]
        return cls(
            cdf=np.concatenate(cdfs) if cdfs else np.zeros(0),
            guide=np.concatenate(guides) if guides else np.zeros(0, np.int64),
            guide_start=np.asarray(guide_start, np.int64)[per_cell],
            guide_size=length[fits][per_cell].astype(np.float64),
            base=np.asarray(base, np.int64)[per_cell],
            cells=tabulated,
        )

    def draw_all(self, rng: np.random.Generator, lam: np.ndarray, size: int) -> np.ndarray:
        """Poisson variates (as float64) for every cell of ``lam``, the means the tables
        were built on."""
        if self.cells.size == lam.size:  # the usual case: everything tabulated, in order
            return self.draw(rng, size)
        out = np.empty((size, lam.size))
        out[:, self.cells] = self.draw(rng, size)
        rest = np.setdiff1d(np.arange(lam.size), self.cells)
        out[:, rest] = rng.poisson(lam[rest].astype(np.float64), size=(size, rest.size))
        return out

    def draw(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Inversion: X = min{k : U < cdf(k)}, started from the guide table."""
        width = self.cells.size
        out = np.empty((size, width))  # float64: what the fit consumes, exact below 2^53
        rows_per_block = max(1, _BLOCK_ELEMENTS // max(width, 1))
        shape = (min(rows_per_block, size), width)
        u_buf, k_buf = np.empty(shape), np.empty(shape, dtype=np.int64)
        for start in range(0, size, rows_per_block):
            m = min(rows_per_block, size - start)
            u, k = u_buf[:m], k_buf[:m]
            rng.random(out=u)
            np.multiply(u, self.guide_size, out=k, casting="unsafe")  # floor(U·G)
            k += self.guide_start
            np.take(self.guide, k, out=k)
            flat_u, flat_k = u.ravel(), k.ravel()
            todo = np.flatnonzero(np.take(self.cdf, flat_k) <= flat_u)
            while todo.size:  # step up to the first cdf entry above U
                flat_k[todo] += 1
                todo = todo[self.cdf[flat_k[todo]] <= flat_u[todo]]
            np.subtract(k, self.base, out=out[start : start + m])
        return out


def poisson_draws(rng: np.random.Generator, lam: np.ndarray, size: int) -> np.ndarray:
    """Independent Poisson(lam_k) variates for integer means: (size, K) int64.

    Vectorised inversion on tabulated CDFs (see :class:`_PoissonTables`);
    means beyond the table budget are drawn by ``rng.poisson``.
    """
    lam = np.asarray(lam)
    if lam.size and (np.any(lam < 0) or np.any(lam != np.round(lam))):
        raise ValueError("poisson_draws takes non-negative integer means (cell counts).")
    lam = lam.astype(np.int64)
    return _PoissonTables.build(lam).draw_all(rng, lam, size).astype(np.int64)


def multinomial_draws(rng: np.random.Generator, counts: np.ndarray, size: int) -> np.ndarray:
    """``size`` draws of Multinomial(N, counts / N) with N = counts.sum(): (size, K) int64.

    This is the law of the cell counts after resampling the N underlying items
    with replacement. Drawn exactly, and fast, by Poissonisation: X_k ~
    Poisson(counts_k) independently has, given its total S, the law
    Multinomial(S, counts / N). If S < N, adding a Multinomial(N - S) draw (N - S
    items resampled) gives Multinomial(N); if S > N, deleting S - N of the S
    items uniformly at random without replacement leaves N items that are still
    i.i.d. over the cells, i.e. Multinomial(N). |S - N| is about sqrt(N), so the
    correction is cheap; the Poisson variates are drawn vectorised.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if np.any(counts < 0):
        raise ValueError("cell counts must be non-negative.")
    if counts.sum() == 0:
        return np.zeros((size, counts.size), dtype=np.int64)
    return _multinomial(rng, counts, _PoissonTables.build(counts), size).astype(np.int64)


def _multinomial(
    rng: np.random.Generator, counts: np.ndarray, tables: _PoissonTables, size: int
) -> np.ndarray:
    total = int(counts.sum())
    draws = tables.draw_all(rng, counts, size)
    cdf = np.cumsum(counts)
    short = total - draws.sum(axis=1)
    for r in np.flatnonzero(short):
        diff = int(short[r])
        row = draws[r]
        if diff > 0:  # resample `diff` more items
            extra = np.searchsorted(cdf, rng.integers(0, total, diff), side="right")
            row += np.bincount(extra, minlength=row.size)
        else:  # delete -diff of the drawn items, uniformly without replacement
            drop = rng.choice(total - diff, size=-diff, replace=False)
            gone = np.searchsorted(np.cumsum(row), drop, side="right")
            row -= np.bincount(gone, minlength=row.size)
    return draws


@dataclass(frozen=True)
class _BootstrapPlan:
    """What every bootstrap chunk shares: the cells, their sampler, where each pair
    sits in the n×n tensor, and the full-data fit the rounds start from."""

    n: int
    cells: _Cells
    values: np.ndarray  # cell counts, flattened (P·3)
    tables: _PoissonTables
    upper: np.ndarray  # flat index of (i, j) for each pair
    lower: np.ndarray  # flat index of (j, i)
    position: np.ndarray  # for each flat (i, j): its pair, or P where i and j never met
    first_starts: np.ndarray  # reduceat segments of pairs by i
    first_models: np.ndarray
    by_second: np.ndarray  # pair order sorted by j, and its segments
    second_starts: np.ndarray
    second_models: np.ndarray
    theta: np.ndarray
    inverse: np.ndarray
    ridge: float
    split: bool

    @classmethod
    def build(cls, counts: PairCounts, ties: str, theta: np.ndarray, ridge: float):
        n = counts.n_items
        cells = _Cells.of(counts)
        first_models, first_starts = np.unique(cells.first, return_index=True)
        by_second = np.argsort(cells.second, kind="stable")
        second_models, second_starts = np.unique(cells.second[by_second], return_index=True)
        wins = counts.win_matrix(ties)
        values = cells.counts.T.ravel()  # outcome-major: (3, P) blocks
        upper = cells.first * n + cells.second
        lower = cells.second * n + cells.first
        position = np.full(n * n, cells.first.size)
        position[upper] = position[lower] = np.arange(cells.first.size)
        return cls(
            n=n,
            cells=cells,
            values=values,
            tables=_PoissonTables.build(values),
            upper=upper,
            lower=lower,
            position=position,
            first_starts=first_starts,
            first_models=first_models,
            by_second=by_second,
            second_starts=second_starts,
            second_models=second_models,
            theta=theta,
            inverse=np.linalg.inv(_information(theta, wins + wins.T, ridge)),
            ridge=ridge,
            split=ties == "split",
        )

    def fit_inputs(self, draws: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Battle tensor (B, n, n), wins per model (B, n) and per-pair credit (B, 2, P)
        of drawn cell counts (B, 3P)."""
        size, n = draws.shape[0], self.n
        x = draws.reshape(size, 3, -1)
        credit = x[:, :2]
        if self.split:
            credit = credit + 0.5 * x[:, 2:3]
        played = np.zeros((size, credit.shape[2] + 1))  # last column: pairs never met
        np.add(credit[:, 0], credit[:, 1], out=played[:, :-1])
        battles = np.take(played, self.position, axis=1)
        won = np.zeros((size, n))
        if self.first_models.size:
            won[:, self.first_models] += np.add.reduceat(credit[:, 0], self.first_starts, axis=1)
            won[:, self.second_models] += np.add.reduceat(
                credit[:, 1][:, self.by_second], self.second_starts, axis=1
            )
        return battles.reshape(size, n, n), won, credit

    def wins_of(self, credit: np.ndarray) -> np.ndarray:
        """The (n, n) win matrix of one round from its per-pair credit (2, P)."""
        w = np.zeros(self.n * self.n)
        w[self.upper] = credit[0]
        w[self.lower] = credit[1]
        return w.reshape(self.n, self.n)


#: Bootstrap rounds are fitted to this step size in θ (0.0002 Elo points).
BOOTSTRAP_TOL = 1e-6


def _round_chunk(plan: _BootstrapPlan, rng: np.random.Generator, size: int) -> np.ndarray:
    draws = _multinomial(rng, plan.values, plan.tables, size)
    battles, won, credit = plan.fit_inputs(draws)
    theta, todo = _chord_fit(battles, won, plan.theta, plan.inverse, plan.ridge, BOOTSTRAP_TOL, 40)
    for r in todo:
        theta[r] = bt_fit(plan.wins_of(credit[r]), ridge=plan.ridge)
    return theta - theta.mean(axis=1, keepdims=True)


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
    resampling battles with replacement), fitted by the chord method of
    :func:`bt_fit_batch` from ``theta`` (default: the full-data fit).
    Rounds are drawn in chunks, each from its own child of ``rng`` (so the
    result depends on ``rng`` and ``chunk`` only, not on ``workers``); chunks
    run on ``workers`` threads (default: the CPUs available, at most 8).
    """
    _check_ties(ties)
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    n = counts.n_items
    if theta is None:
        theta = bt_fit(counts.win_matrix(ties), ridge=ridge)
    if chunk is None:  # ~16 MB of float64 per (chunk, n, n) tensor
        chunk = int(max(1, min(rounds, 64, 2_000_000 // max(n * n, 1))))
    sizes = [min(chunk, rounds - start) for start in range(0, rounds, chunk)]
    children = rng.spawn(len(sizes))
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    def run(k: int) -> np.ndarray:
        return _round_chunk(plan, children[k], sizes[k])

    # Our threads already use the cores; BLAS threads on n×n matrices only fight them.
    with threadpool_limits(1, user_api="blas"):
        plan = _BootstrapPlan.build(counts, ties, np.asarray(theta, dtype=np.float64), ridge)
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
    vote_chunk: int = VOTE_CHUNK,
) -> Ratings:
    """Every leaderboard number from votes given by model name, in time order.

    The votes are read in pieces of ``vote_chunk``: names -> indices, outcome
    codes, pair counts and online Elo are built piece by piece, so the memory
    used beyond the vote table does not grow with the number of votes.
    """
    import pandas as pd

    _check_ties(ties)

    def series(x) -> pd.Series:
        if isinstance(x, pd.Series):
            return x
        x = np.asarray(x)
        return pd.Series(x if x.dtype.kind in "iu" else x.astype(object), copy=False)

    left_names, right_names, outcomes = series(left_names), series(right_names), series(outcomes)
    if names is None:
        names = sorted(set(pd.unique(left_names)) | set(pd.unique(right_names)))
    names = list(names)
    if len(set(names)) != len(names):
        raise ValueError("model names must be unique.")
    anchor_index = None
    if anchor is not None:
        if anchor[0] not in names:
            raise ValueError(
                f"anchor model {anchor[0]!r} has no votes here; pick one of: {', '.join(names)}."
            )
        anchor_index = (names.index(anchor[0]), float(anchor[1]))
    n = len(names)
    lookup = pd.Index(names, dtype=object)
    outcome_lookup = pd.Index(OUTCOMES, dtype=object)
    integer_outcomes = outcomes.dtype.kind in "iu"

    def codes(piece: pd.Series, table: pd.Index, what: str) -> np.ndarray:
        # factorize the piece (fast for Arrow strings), then map its few distinct values
        local, uniques = pd.factorize(piece)
        where = table.get_indexer(pd.Index(np.asarray(uniques, dtype=object), dtype=object))
        if np.any(where < 0) or np.any(local < 0):
            bad = uniques[where < 0][0] if np.any(where < 0) else None
            raise ValueError(f"{what} {bad!r} is unknown; expected one of {list(table)}.")
        return where[local]

    counts = PairCounts(*(np.zeros((n, n), dtype=np.int64) for _ in range(3)))
    elo = np.full(n, ELO_INITIAL)
    for start in range(0, len(left_names), vote_chunk):
        piece = slice(start, start + vote_chunk)
        left = codes(left_names.iloc[piece], lookup, "model")
        right = codes(right_names.iloc[piece], lookup, "model")
        if integer_outcomes:
            outcome = outcomes.iloc[piece].to_numpy()
        else:
            outcome = codes(outcomes.iloc[piece], outcome_lookup, "outcome")
        counts = counts + aggregate(n, left, right, outcome)
        elo = online_elo(n, left, right, outcome, initial=elo)
    with threadpool_limits(1, user_api="blas"):  # n×n solves: BLAS threads only contend
        theta = bt_fit(counts.win_matrix(ties), ridge=ridge)
        samples = (
            bootstrap_bt(counts, rng, rounds, ties=ties, ridge=ridge, theta=theta, workers=workers)
            if rounds > 0
            else theta[None, :]
        )
    votes = votes_per_model(counts)
    provisional = votes < min_votes
    # Centre on the ranked models: a provisional model's wide swings would otherwise
    # move the mean, and with it every other model's interval.
    reference = ~provisional if np.any(~provisional) else None
    lower, upper = percentile_interval(to_elo(samples, anchor_index, reference), level)
    return Ratings(
        names=names,
        counts=counts,
        theta=theta,
        rating=to_elo(theta, anchor_index, reference),
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
