"""Bootstrap of a Bradley-Terry fit, and the exact multinomial sampler under it.

The bootstrap resamples battles. Resampling ``N`` battles with replacement
has exactly the law of a multinomial draw of ``N`` over the distinct
pair-outcome cells with probabilities ``count/N``, so rounds are drawn on the
aggregated counts (memory and time independent of ``N``). The multinomial is
drawn exactly but vectorised (:func:`multinomial_draws`: independent Poisson
cell counts by inversion on tabulated CDFs, then the total corrected to ``N``).
All rounds are fitted together: each starts from the full-data fit and takes
Newton steps with the full-data Hessian (a chord method,
:func:`arena.stats.bradley_terry.chord_fit`) until its step is below
``BOOTSTRAP_TOL`` (1e-6 in θ, 0.0002 Elo), vectorised over a ``(rounds, n, n)``
tensor; a round that has not converged after 40 steps is refitted by the damped
Newton method of :func:`arena.stats.bradley_terry.bt_fit`. Chunks of rounds run
on threads; each chunk has its own child generator, so results depend on the
seed only.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln as _gammaln
from threadpoolctl import threadpool_limits

from arena.stats.bradley_terry import BLOCK_ELEMENTS, RIDGE, bt_fit, bt_information, chord_fit
from arena.stats.pairs import PairCounts, check_ties, pair_index


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
        i, j = pair_index(counts.n_items)
        keep = counts.battles[i, j] > 0
        i, j = i[keep], j[keep]
        tied = (counts.ties + counts.both_bad)[i, j]
        cells = np.stack([counts.wins[i, j], counts.wins[j, i], tied], axis=1)
        return cls(i, j, cells.astype(np.int64))


_TABLE_BUDGET = 4_000_000  # most CDF entries tabulated (32 MB); larger means go to numpy


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
        rows_per_block = max(1, BLOCK_ELEMENTS // max(width, 1))
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
            inverse=np.linalg.inv(bt_information(theta, wins + wins.T, ridge)),
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
    theta, todo = chord_fit(battles, won, plan.theta, plan.inverse, plan.ridge, BOOTSTRAP_TOL, 40)
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
    check_ties(ties)
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
