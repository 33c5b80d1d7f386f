"""Bootstrap of a Bradley-Terry fit, and the exact multinomial sampler under it.

The bootstrap resamples battles. Resampling ``N`` battles with replacement
has exactly the law of a multinomial draw of ``N`` over the distinct
pair-outcome cells with probabilities ``count/N``, so rounds are drawn on the
aggregated counts (memory and time independent of ``N``). The multinomial is
drawn exactly but vectorised (:func:`multinomial_draws`: independent Poisson
cell counts by inversion on tabulated CDFs, read off a lookup table for almost
every draw, then the total corrected to ``N``). All rounds are fitted together:
each starts from the full-data fit and takes Newton steps with the full-data
Hessian (a chord method, :func:`arena.stats.bradley_terry.chord_fit`) until its
step is below ``BOOTSTRAP_TOL`` (1e-6 in θ, 0.0002 Elo), vectorised over a
``(rounds, n, n)`` tensor, float32 below ``SINGLE_VOTES`` votes (the first steps
then run in float32, the last ones in float64); a round that has not converged
after 40 steps is refitted by the damped Newton method of
:func:`arena.stats.bradley_terry.bt_fit`. Chunks of rounds run on threads, each
reusing its own arrays; each chunk has its own child generator, so results
depend on the seed only.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln as _gammaln
from threadpoolctl import threadpool_limits

from arena.stats.bradley_terry import RIDGE, bt_fit, bt_information, chord_fit
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
_DRAW_BLOCK = 1 << 19  # variates drawn per block: few numpy calls per round, threads overlap
_LOOKUP_BUDGET = 1 << 18  # lookup entries (1 MiB of int32): the sampler's tables stay in cache
_LOOKUP_SLICES = 16  # lookup slices per CDF entry, as far as the budget allows


@dataclass(frozen=True)
class _PoissonTables:
    """Inversion tables for the integer means that occur (cell counts repeat a lot).

    For each distinct mean λ: the CDF over k in [λ - 13√λ - 10, λ + 13√λ + 25]
    (the mass outside is below 1e-30, far under the 2^-53 resolution of a
    uniform double; the last entry is set to exactly 1), and a lookup table over
    G = 2^b equal slices of [0, 1) (G about 16 times the CDF's length, less when
    the tables would outgrow the cache). The inverse X = min{k : U < cdf(k)} is
    the same for every U in a slice that no CDF value falls strictly inside: there
    the entry is X itself, so a draw is one multiply and one gather. The other
    entries (a few percent of the slices) hold -1 - where to start stepping up
    the CDF. Either way the variate is exactly that inverse of U. All tables are
    concatenated; per cell we keep offsets into them.
    """

    cdf: np.ndarray  # all CDFs, concatenated
    lookup: np.ndarray  # int32: the variate, or -1 - (index into cdf to step up from)
    lookup_start: np.ndarray  # per tabulated cell: where its lookup table starts
    slices: np.ndarray  # per tabulated cell: G (float64, a power of two)
    base: np.ndarray  # per tabulated cell: cdf offset - k_min (index -> variate)
    cells: np.ndarray  # which cells are tabulated

    @classmethod
    def build(cls, lam: np.ndarray) -> _PoissonTables:
        values, inverse = np.unique(lam, return_inverse=True)
        spread = 13.0 * np.sqrt(values)
        lo = np.maximum(0, np.floor(values - spread - 10)).astype(np.int64)
        hi = np.ceil(values + spread + 25).astype(np.int64)
        length = hi - lo + 1
        fits = (np.cumsum(length) <= _TABLE_BUDGET) & (hi < np.iinfo(np.int32).max)
        slices = 1 << np.ceil(np.log2(np.maximum(length[fits], 1))).astype(np.int64)
        fine = _LOOKUP_SLICES
        while fine > 1 and fine * slices.sum() > _LOOKUP_BUDGET:
            fine //= 2
        slices *= fine
        cdfs, lookups, lookup_start, base = [], [], [], []
        cdf_offset = lookup_offset = 0
        for value, k0, size, g in zip(values[fits], lo[fits], length[fits], slices, strict=True):
            k = np.arange(k0, k0 + size, dtype=np.float64)
            if value > 0:
                cdf = np.cumsum(np.exp(k * math.log(value) - value - _gammaln(k + 1.0)))
            else:  # Poisson(0) is always 0
                cdf = np.ones(size)
            cdf[-1] = 1.0
            edges = np.arange(g + 1) / g  # exact: g is a power of two
            first = np.searchsorted(cdf, edges[:-1], side="right")  # X at the slice's start
            last = np.searchsorted(cdf, edges[1:], side="left")  # X just below its end
            lookups.append(np.where(first == last, k0 + first, -1 - (cdf_offset + first)))
            cdfs.append(cdf)
            lookup_start.append(lookup_offset)
            base.append(cdf_offset - k0)
            cdf_offset += size
            lookup_offset += g
        tabulated = np.flatnonzero(fits[inverse])
        which = np.cumsum(fits) - 1  # index among tabulated values
        per_cell = which[inverse[tabulated]]
        return cls(
            cdf=np.concatenate(cdfs) if cdfs else np.zeros(0),
            lookup=np.concatenate(lookups).astype(np.int32) if lookups else np.zeros(0, np.int32),
            lookup_start=np.asarray(lookup_start, np.int64)[per_cell],
            slices=slices[per_cell].astype(np.float64),
            base=np.asarray(base, np.int64)[per_cell],
            cells=tabulated,
        )

    def draw_all(
        self,
        rng: np.random.Generator,
        lam: np.ndarray,
        size: int,
        dtype: type = np.int64,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Poisson variates for every cell of ``lam``, the means the tables were built on:
        (size, lam.size) of ``dtype`` (int32 where every variate fits), into ``out`` if given."""
        if out is None:
            out = np.empty((size, lam.size), dtype)
        if self.cells.size == lam.size:  # the usual case: everything tabulated, in order
            return self.draw(rng, out)
        out[:, self.cells] = self.draw(rng, np.empty((size, self.cells.size), out.dtype))
        rest = np.setdiff1d(np.arange(lam.size), self.cells)
        out[:, rest] = rng.poisson(lam[rest].astype(np.float64), size=(size, rest.size))
        return out

    def draw(self, rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
        """Inversion, X = min{k : U < cdf(k)}, read from the lookup table where it can be:
        ``out`` (size, tabulated cells), an integer array, filled and returned."""
        size, width = out.shape
        rows_per_block = max(1, _DRAW_BLOCK // max(width, 1))
        shape = (min(rows_per_block, size), width)
        u_buf, k_buf = np.empty(shape), np.empty(shape, dtype=np.int64)
        x_buf = None if out.dtype == np.int32 else np.empty(shape, np.int32)
        for start in range(0, size, rows_per_block):
            m = min(rows_per_block, size - start)
            u, k = u_buf[:m], k_buf[:m]
            x = out[start : start + m] if x_buf is None else x_buf[:m]
            rng.random(out=u)
            np.multiply(u, self.slices, out=k, casting="unsafe")  # floor(U·G), exact
            k += self.lookup_start
            np.take(self.lookup, k, out=x)
            flat_x = x.reshape(-1)
            todo = np.flatnonzero(flat_x < 0)
            if todo.size:  # U's slice holds a CDF value: step up to the first one above U
                at = -1 - flat_x[todo].astype(np.int64)
                flat_u = u.reshape(-1)[todo]
                more = np.flatnonzero(self.cdf[at] <= flat_u)
                while more.size:
                    at[more] += 1
                    more = more[self.cdf[at[more]] <= flat_u[more]]
                flat_x[todo] = at - self.base[todo % width]
            if x_buf is not None:
                out[start : start + m] = x
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
    return _PoissonTables.build(lam).draw_all(rng, lam, size)


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
    return _multinomial(rng, counts, _PoissonTables.build(counts), size, np.int64)


def _count_type(counts: np.ndarray) -> type:
    """The integer type draws of ``counts`` are made in: int32 below 2^30 items (every
    variate and every row sum fits), else int64."""
    return np.int32 if int(counts.sum()) < 1 << 30 else np.int64


def _bump(row: np.ndarray, cells: np.ndarray, by: int) -> None:
    """``row[c] += by`` once per entry of the sorted ``cells``; repeats are few, so one
    fancy add and ``ufunc.at`` on the repeats only (``ufunc.at`` on all is slow)."""
    row[cells] += by
    again = cells[1:][cells[1:] == cells[:-1]]
    if again.size:
        np.add.at(row, again, by)


def _multinomial(
    rng: np.random.Generator,
    counts: np.ndarray,
    tables: _PoissonTables,
    size: int,
    dtype: type | None = np.float64,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The draws of :func:`multinomial_draws` as ``dtype`` (float64 for the fits); None
    keeps the counts in the integer type they are drawn in (int32 below 2^30 items),
    in ``out`` if given (of that type)."""
    total, work = int(counts.sum()), _count_type(counts)
    draws = tables.draw_all(rng, counts, size, work, out)
    cdf = np.cumsum(counts)
    short = total - draws.sum(axis=1, dtype=work)
    for r in np.flatnonzero(short):  # sorted keys make the searches cheap
        diff = int(short[r])
        row = draws[r]
        if diff > 0:  # resample `diff` more items
            extra = np.sort(rng.integers(0, total, diff))
            _bump(row, np.searchsorted(cdf, extra, side="right"), 1)
        else:  # delete -diff of the drawn items, uniformly without replacement
            drop = np.sort(rng.choice(total - diff, size=-diff, replace=False))
            _bump(row, np.searchsorted(np.cumsum(row, dtype=work), drop, side="right"), -1)
    return draws if dtype is None else draws.astype(dtype, copy=False)


#: Below this many votes the bootstrap's tensors are float32: a round has exactly as many
#: votes as the data, so every pair's and every model's count of half-votes stays below
#: 2^23, exact in float32; the chord fit then runs its first steps at half the traffic.
SINGLE_VOTES = 1 << 22


class _Scratch:
    """Arrays one bootstrap thread reuses from chunk to chunk: fresh ones, tens of MB
    per chunk, would cost a page fault per 4 KiB each time."""

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        size = math.prod(shape)
        flat = self._arrays.get(name)
        if flat is None or flat.size < size or flat.dtype != dtype:
            flat = self._arrays[name] = np.empty(size, dtype)
        return flat[:size].reshape(shape)


@dataclass(frozen=True)
class _BootstrapPlan:
    """What every bootstrap chunk shares: the cells, their sampler, where each pair's
    credit sits in the n×n tensor, and the full-data fit the rounds start from."""

    n: int
    cells: _Cells
    values: np.ndarray  # cell counts, flattened (3·P, outcome-major)
    tables: _PoissonTables
    position: np.ndarray  # flat (i, j) -> i's credit against j in a round's credit row
    dtype: type  # of the tensors: float32 where it holds every count and sum exactly
    theta: np.ndarray
    inverse: np.ndarray
    ridge: float
    split: bool

    @classmethod
    def build(cls, counts: PairCounts, ties: str, theta: np.ndarray, ridge: float):
        n = counts.n_items
        cells = _Cells.of(counts)
        pairs = cells.first.size
        wins = counts.win_matrix(ties)
        values = cells.counts.T.ravel()  # outcome-major: (3, P) blocks
        position = np.full(n * n, 2 * pairs)  # the credit row's last entry is 0
        position[cells.first * n + cells.second] = np.arange(pairs)
        position[cells.second * n + cells.first] = pairs + np.arange(pairs)
        return cls(
            n=n,
            cells=cells,
            values=values,
            tables=_PoissonTables.build(values),
            position=position,
            dtype=np.float32 if values.sum() < SINGLE_VOTES else np.float64,
            theta=theta,
            inverse=np.linalg.inv(bt_information(theta, wins + wins.T, ridge)),
            ridge=ridge,
            split=ties == "split",
        )

    def fit_inputs(
        self, draws: np.ndarray, scratch: _Scratch | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Battle tensor (B, n, n) and wins per model (B, n) of drawn cell counts (B, 3P).

        Built through the credit tensor C (C_ij: i's wins over j, ties as half with
        ``ties="split"``): wins are its row sums, battles C + Cᵀ.
        """
        size, n = draws.shape[0], self.n
        scratch = scratch or _Scratch()
        x = scratch.get("x", draws.shape, self.dtype)
        np.copyto(x, draws)
        x = x.reshape(size, 3, -1)
        pairs = x.shape[2]
        credit = scratch.get("credit", (size, 2 * pairs + 1), self.dtype)
        credit[:, -1] = 0.0
        if self.split:
            x[:, 2] *= 0.5
            np.add(x[:, 0], x[:, 2], out=credit[:, :pairs])
            np.add(x[:, 1], x[:, 2], out=credit[:, pairs:-1])
        else:
            credit[:, :-1] = x[:, :2].reshape(size, -1)
        tensor = scratch.get("credit tensor", (size, n, n), self.dtype)
        for r in range(size):
            np.take(credit[r], self.position, out=tensor[r].reshape(-1))
        won = (tensor @ np.ones(n, self.dtype)).astype(np.float64)
        battles = scratch.get("battles", (size, n, n), self.dtype)
        np.add(tensor, tensor.transpose(0, 2, 1), out=battles)
        return battles, won

    def wins_of(self, draw: np.ndarray) -> np.ndarray:
        """The (n, n) win matrix of one round from its drawn cell counts (3P)."""
        x = draw.reshape(3, -1).astype(np.float64)
        half = 0.5 * x[2] if self.split else 0.0
        w = np.zeros((self.n, self.n))
        w[self.cells.first, self.cells.second] = x[0] + half
        w[self.cells.second, self.cells.first] = x[1] + half
        return w


#: Bootstrap rounds are fitted to this step size in θ (0.0002 Elo points).
BOOTSTRAP_TOL = 1e-6


def _round_chunk(
    plan: _BootstrapPlan, rng: np.random.Generator, size: int, scratch: _Scratch
) -> np.ndarray:
    draws = scratch.get("draws", (size, plan.values.size), _count_type(plan.values))
    _multinomial(rng, plan.values, plan.tables, size, None, draws)
    battles, won = plan.fit_inputs(draws, scratch)
    theta, todo = chord_fit(battles, won, plan.theta, plan.inverse, plan.ridge, BOOTSTRAP_TOL, 40)
    for r in todo:
        theta[r] = bt_fit(plan.wins_of(draws[r]), ridge=plan.ridge)
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
    scratch: dict[int, _Scratch] = {}

    def run(child: np.random.Generator, size: int) -> np.ndarray:
        mine = scratch.setdefault(threading.get_ident(), _Scratch())
        return _round_chunk(plan, child, size, mine)

    with threadpool_limits(1, user_api="blas"):
        plan = _BootstrapPlan.build(counts, ties, np.asarray(theta, dtype=np.float64), ridge)
    return np.concatenate(chunked_rounds(rng, rounds, chunk, workers, run), axis=0)


def chunked_rounds(
    rng: np.random.Generator,
    rounds: int,
    chunk: int,
    workers: int | None,
    run: Callable[[np.random.Generator, int], np.ndarray],
) -> list[np.ndarray]:
    """``run(child, size)`` over chunks of ``chunk`` rounds, each with its own child of
    ``rng`` (so results depend on ``rng`` and ``chunk`` only, not on ``workers``), on
    ``workers`` threads (default: the CPUs available, at most 8); the chunks' results
    in order. BLAS is held to one thread: ours already use the cores, and BLAS threads
    on n×n matrices only fight them. Every bootstrap of the ratings runs through here.
    """
    sizes = [min(chunk, rounds - start) for start in range(0, rounds, chunk)]
    children = rng.spawn(len(sizes))
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    with threadpool_limits(1, user_api="blas"):
        if workers <= 1 or len(sizes) == 1:
            return [run(children[k], sizes[k]) for k in range(len(sizes))]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(run, children, sizes))


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of each column of ``samples`` (rounds, n)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a coverage in (0, 1), e.g. 0.95.")
    tail = 50.0 * (1.0 - level)
    lower, upper = np.percentile(samples, [tail, 100.0 - tail], axis=0)
    return lower, upper
