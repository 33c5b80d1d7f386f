"""How many votes hold the order: the fewest removed votes that swap two ranked models.

The ranking is by the plain Bradley-Terry θ = ``bt_fit(counts.win_matrix(ties))`` among
the ranked models. For an adjacent pair (upper a, lower b): the fewest votes whose removal,
after refitting all models (same ridge), gives ``θ_b >= θ_a``; for the top model, the
fewest after which some other ranked model's θ reaches the top's. Broderick, Giordano &
Meager's "can dropping a little data change the conclusion?" (2020), asked of a rank: an
interval shows how the order moves over *typical* resamples, this how few *chosen* votes
decide it, which a careless or hostile handful of raters could do.

Votes are exchangeable within a *cell* (pair, outcome), so a removal is a count per cell.
Cells: i beat j, j beat i, and (ties="split") tie and both-bad merged: both add half a win
each way, so removing either changes the fit alike. With ties="drop" they are not in the
fit and never count. Removing every vote of both models levels them (the ridge alone
puts both at 0), so every order can be flipped; the question is by how few.

- **influence, verified**: removing one vote of cell c moves the gap g = θ_a − θ_b by
  ``(e_a − e_b)ᵀ H⁻¹ ∇f_c(θ)`` to first order (H: :func:`bt_information`; f_c: the vote's
  term of the objective, so the optimum moves by ``+H⁻¹∇f_c``). Cells are taken whole,
  most negative influence per vote first, until the linear gap crosses 0; a refit checks
  it. Not flipped: re-linearise at the refitted θ and go on (after ``MAX_ROUNDS``, or when
  no cell helps, remove every remaining vote of the two models). Flipped: the smallest
  flipping prefix of that path is found by interpolation and bisection on refits. The
  count is *verified* (a refit flips): an upper bound on the minimum, not the minimum.
- **exact**: with that bound u, every multiset of k = 1 .. u−1 removals over the cells is
  refitted, smallest k first; the first k that flips is the minimum, else u is. Used when
  the refits this needs (known in advance) fit ``exact_budget``, a budget for the whole
  call spent on the cheapest questions first; a refit of n > 30 models counts (n/30)²,
  so the default bounds the search to ~0.6 s on the sandbox (~28 µs a 30-model refit).

Refits reach ``bt_fit``'s optimum (strictly convex: one) by undamped Newton or chord
steps from the full-data θ, stopping on steps below 1e-12; ``bt_fit``'s line search
compares objective values of ~10⁶ at a million votes and cannot resolve θ below ~1e-8,
too coarse to decide a flip. A flip is ``θ_b >= θ_a − FLIP_TOL``: equal θ count (the
">=" of the definition; 4 wins each), FLIP_TOL = 1e-9 only absorbs rounding.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from math import ceil

import numpy as np
from threadpoolctl import threadpool_limits

from arena.stats.bradley_terry import RIDGE, bt_fit, bt_information, bt_refit_batch
from arena.stats.pairs import PairCounts, check_ties

#: A rank that this many votes or fewer can swap gets a warning (:func:`fragile`).
FRAGILE_VOTES = 10
#: Refits the exact search may spend in one call, over all its questions ...
EXACT_BUDGET = 20_000
#: ... a refit of n models counting max(1, (n / REFIT_MODELS)²) of them.
REFIT_MODELS = 30
#: θ_b >= θ_a − FLIP_TOL counts as a flip: the fits converge to ~1e-12, exact ties are 0.
FLIP_TOL = 1e-9
#: Re-linearisations of the influence path before its fallback (all votes of the pair).
MAX_ROUNDS = 50
#: Refits stop when no θ moves by more than this (centred steps, see bt_refit_batch).
STEP_TOL = 1e-12
_BATCH_ELEMENTS = 1 << 21  # rounds x models² per batched exact refit


@dataclass(frozen=True)
class FlipCount:
    """How many votes swap ``upper`` (index) with ``lower`` (the challenger).

    ``votes``: the removal size; exact minimum when ``method == "exact"``, a verified
    upper bound (a refit confirms the flip) when ``"influence, verified"``; None if no
    flip was confirmed. ``share``: votes / votes in the fit. ``at_least``: a proven lower
    bound (= votes when exact). ``removed``: the votes removed (a flipping removal).
    """

    upper: int
    lower: int
    votes: int | None
    method: str
    share: float
    at_least: int
    removed: PairCounts | None = field(repr=False, compare=False)


def fragile(flip: FlipCount | None) -> bool:
    """Warn: "a handful of votes decides this rank" (at most ``FRAGILE_VOTES`` votes).

    An absolute count, not a share: 10 is the fewest decisive votes on which the
    targeted-voting test (``QualityThresholds.targeted_min_votes``) examines a rater, so
    a rank that 10 votes swap could be set by one rater no check ever looks at. A share
    (say 0.1%) grows with the arena and would flag every close pair of a large one, where
    the bootstrap interval already shows the uncertainty. Unverified counts are upper
    bounds, so a warning from one is never false: the rank is at least that fragile.
    """
    return flip is not None and flip.votes is not None and flip.votes <= FRAGILE_VOTES


# -- cells and removals ----------------------------------------------------------------------
@dataclass(frozen=True)
class _Cells:
    """One row per cell: i, j, whether it is a tie (half a win each way), its count."""

    i: np.ndarray
    j: np.ndarray
    tie: np.ndarray
    count: np.ndarray
    n: int

    def delta(self, removal: np.ndarray) -> np.ndarray:
        """The win matrix that ``removal`` (votes per cell) takes away."""
        used = np.flatnonzero(removal)
        r = removal[used].astype(np.float64)
        i, j, tie = self.i[used], self.j[used], self.tie[used]
        n = self.n
        flat = np.concatenate([i * n + j, (j * n + i)[tie]])
        weight = np.concatenate([np.where(tie, 0.5 * r, r), 0.5 * r[tie]])
        return np.bincount(flat, weight, minlength=n * n).reshape(n, n)

    def as_counts(self, removal: np.ndarray, counts: PairCounts) -> PairCounts:
        """The removal as vote counts; a merged tie cell is taken from ties first."""
        n = self.n
        wins, ties, bad = (np.zeros((n, n), dtype=np.int64) for _ in range(3))
        dec = ~self.tie
        np.add.at(wins, (self.i[dec], self.j[dec]), removal[dec])
        t = self.tie
        from_ties = np.minimum(removal[t], np.asarray(counts.ties)[self.i[t], self.j[t]])
        for target, amount in ((ties, from_ties), (bad, removal[t] - from_ties)):
            np.add.at(target, (self.i[t], self.j[t]), amount)
            np.add.at(target, (self.j[t], self.i[t]), amount)
        return PairCounts(wins, ties, bad)


def _integral(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    r = np.rint(x)
    if np.any(np.abs(x - r) > 1e-9) or np.any(r < 0):
        raise ValueError("vote counts must be non-negative integers.")
    return r.astype(np.int64)


def _cells(counts: PairCounts, ties: str) -> _Cells:
    wins = _integral(counts.wins)
    n = len(wins)
    off = ~np.eye(n, dtype=bool)
    i, j = np.nonzero((wins > 0) & off)
    parts = [(i, j, np.zeros(len(i), bool), wins[i, j])]
    if ties == "split":
        both = _integral(counts.ties) + _integral(counts.both_bad)
        ti, tj = np.nonzero(np.triu(both > 0, 1))
        parts.append((ti, tj, np.ones(len(ti), bool), both[ti, tj]))
    i, j, tie, count = (np.concatenate(c) for c in zip(*parts, strict=True))
    return _Cells(i.astype(np.int64), j.astype(np.int64), tie, count.astype(np.int64), n)


def _influence(cells: _Cells, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """First-order change of uᵀθ (u = H⁻¹(e_a − e_b): of the gap) per removed vote of each cell.

    The vote's term of the objective is f_c = −log σ(θ_i − θ_j) (i beat j) or
    −½ log σ(θ_i − θ_j) − ½ log σ(θ_j − θ_i) (tie); removing it moves the optimum by
    ``H⁻¹∇f_c``: ∇f_c = (1 − p)(e_j − e_i) for a win of i, (p − ½)(e_i − e_j) for a tie.
    """
    p = 0.5 * (1.0 + np.tanh(0.5 * (theta[cells.i] - theta[cells.j])))
    du = u[cells.i] - u[cells.j]
    return np.where(cells.tie, (p - 0.5) * du, -(1.0 - p) * du)


def _greedy(gap: float, infl: np.ndarray, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cells (most negative influence first) and votes to take until the linear gap <= 0;
    all useful cells when even they do not get there."""
    useful = np.flatnonzero((infl < 0) & (left > 0))
    order = useful[np.argsort(infl[useful], kind="stable")]
    take = left[order].copy()
    after = gap + np.cumsum(infl[order] * take)
    cross = int(np.searchsorted(-after, 0.0))  # first position with after <= 0
    if cross < len(order):
        before = gap if cross == 0 else after[cross - 1]
        take[cross] = min(take[cross], max(1, ceil(before / -infl[order[cross]])))
        order, take = order[: cross + 1], take[: cross + 1]
    return order, take


# -- questions ------------------------------------------------------------------------------
@dataclass
class _Question:
    """Does some model of ``others`` reach ``upper``? Answered by an influence path."""

    upper: int
    others: np.ndarray  # challengers, best-ranked first
    votes: int | None = None
    lower: int = -1
    removal: np.ndarray | None = None
    exact: bool = False
    at_least: int = 1

    def gap(self, theta: np.ndarray) -> float:
        return float(theta[self.upper] - theta[self.others].max())

    def overtaker(self, theta: np.ndarray) -> int:
        hit = theta[self.others] >= theta[self.upper] - FLIP_TOL
        return int(self.others[np.argmax(hit)])


class _Fit:
    """The data shared by every question of a call: cells, win matrix, base θ and H."""

    def __init__(self, counts: PairCounts, ties: str, theta, ridge: float):
        check_ties(ties)
        self.cells = _cells(counts, ties)
        self.counts, self.ridge = counts, ridge
        self.wins = np.asarray(counts.win_matrix(ties), dtype=np.float64)
        self.total = float(self.wins.sum())
        start = bt_fit(self.wins, ridge=ridge) if theta is None else np.asarray(theta, float)
        self.theta = self.polish(self.wins, start)
        self.hessian = bt_information(self.theta, self.wins + self.wins.T, ridge)
        self.inverse = np.linalg.inv(self.hessian)

    def polish(self, wins: np.ndarray, start: np.ndarray) -> np.ndarray:
        """The fit of one win matrix to ~1e-15 by Newton steps from a nearby θ.

        ``bt_fit``'s line search compares objective values, which at a million votes
        (~10⁶) cannot resolve steps much below 1e-8 in θ; Newton steps stop on the step
        size instead, and a flip is decided on gaps of ``FLIP_TOL``.
        """
        return bt_refit_batch(wins[None], start, self.ridge, tol=STEP_TOL)[0]

    def refit(self, removal: np.ndarray, start: np.ndarray) -> np.ndarray:
        return self.polish(self.wins - self.cells.delta(removal), start)

    def path(self, q: _Question, target: int, u0: np.ndarray) -> None:
        """Influence path steered by θ_upper − θ_target; sets q.votes/lower/removal."""
        cells = self.cells
        removal = np.zeros(len(cells.count), dtype=np.int64)
        theta, u = self.theta, u0
        gap = q.gap(theta)
        if gap <= FLIP_TOL:
            q.votes, q.lower, q.removal = 0, q.overtaker(theta), removal
            q.exact, q.at_least = True, 0
            return
        lo, steps = (0, gap, theta), []
        e = np.zeros(cells.n)
        e[q.upper], e[target] = 1.0, -1.0
        for round_ in range(MAX_ROUNDS + 1):
            left = cells.count - removal
            order, take = np.zeros(0, np.int64), np.zeros(0, np.int64)
            if round_ < MAX_ROUNDS:
                steer = theta[q.upper] - theta[target]
                order, take = _greedy(steer, _influence(cells, theta, u), left)
            fallback = len(order) == 0
            if fallback:  # both models alone with the ridge: equal θ
                touch = (cells.i == q.upper) | (cells.j == q.upper)
                touch |= (cells.i == target) | (cells.j == target)
                order = np.flatnonzero(touch & (left > 0))
                take = left[order]
            steps.append((order, take))
            np.add.at(removal, order, take)
            theta = self.refit(removal, theta)
            gap = q.gap(theta)
            if gap <= FLIP_TOL:
                break
            if fallback:
                return  # not even that flipped (numerical trouble): q.votes stays None
            lo = (int(removal.sum()), gap, theta)
            w = self.wins - cells.delta(removal)
            u = np.linalg.solve(bt_information(theta, w + w.T, self.ridge), e)
        order = np.concatenate([o for o, _ in steps])
        take = np.concatenate([t for _, t in steps])
        self._smallest_prefix(q, order, take, lo, (int(removal.sum()), gap, theta))

    def _smallest_prefix(self, q: _Question, order, take, lo, hi) -> None:
        """Smallest prefix of the path that a refit confirms flipped, lo < t <= hi."""
        cum = np.cumsum(take)
        c = len(self.cells.count)

        def prefix(t: int) -> np.ndarray:
            full = int(np.searchsorted(cum, t, side="right"))
            r = np.bincount(order[:full], take[:full], minlength=c).astype(np.int64)
            if full < len(order) and t > (cum[full - 1] if full else 0):
                r[order[full]] += t - (cum[full - 1] if full else 0)
            return r

        side = 0
        while hi[0] - lo[0] > 1:
            if abs(side) >= 2:  # same end moved twice: bisect (Illinois-style safeguard)
                t = (lo[0] + hi[0]) // 2
            else:
                frac = lo[1] / (lo[1] - hi[1])
                t = lo[0] + ceil(frac * (hi[0] - lo[0]))
            t = min(max(t, lo[0] + 1), hi[0] - 1)
            start = lo[2] if t - lo[0] <= hi[0] - t else hi[2]
            theta = self.refit(prefix(t), start)
            gap = q.gap(theta)
            if gap <= FLIP_TOL:
                hi, side = (t, gap, theta), (min(side, 0) - 1)
            else:
                lo, side = (t, gap, theta), (max(side, 0) + 1)
        q.votes, q.removal, q.lower = hi[0], prefix(hi[0]), q.overtaker(hi[2])

    # -- the exact search ------------------------------------------------------------------
    def exact_cost(self, limit: int, budget: int, smallest: int) -> np.ndarray | None:
        """cost[k] = refits of an exact search over removal sizes 1..k−1 (the bounded
        multisets of those sizes), k < limit, as min(true, budget + 1); None as soon as
        the sizes 1..smallest alone (the cheapest question) exceed the budget."""
        if len(self.cells.count) > budget:
            return None
        cap = np.int64(budget + 1)
        poly = np.zeros(limit, dtype=np.int64)
        poly[0] = 1
        for done, m in enumerate(self.cells.count):  # times 1 + x + ... + x^m, capped
            s = np.cumsum(poly)
            s[m + 1 :] -= s[: max(limit - m - 1, 0)].copy()
            poly = np.minimum(s, cap)
            # a partial product counts fewer multisets than the full one: a lower bound
            last = done == len(self.cells.count) - 1
            if (done % 64 == 63 or last) and poly[1 : smallest + 1].sum() > budget:
                return None
        return np.minimum(np.concatenate([[0, 0], np.cumsum(poly[1:-1])]), cap)

    def exact(self, q: _Question, last: int, rank: np.ndarray) -> int:
        """Refit every removal of 1..last votes; sets q at the first size that flips.
        Returns the refits spent. With several challengers the whole level is refitted and
        the best-ranked overtaker kept, so the answer does not depend on the labelling."""
        cells, n, spent = self.cells, self.cells.n, 0
        rows = max(1, _BATCH_ELEMENTS // (n * n))
        for k in range(1, last + 1):
            found: tuple[int, np.ndarray] | None = None
            for chunk in _chunks(_multisets(k, cells.count), rows):
                wins = np.repeat(self.wins.reshape(1, n * n), len(chunk), axis=0)
                row = np.repeat(np.arange(len(chunk)), k)
                i, j, tie = cells.i[chunk.ravel()], cells.j[chunk.ravel()], cells.tie[chunk.ravel()]
                np.subtract.at(wins, (row, i * n + j), np.where(tie, 0.5, 1.0))
                np.subtract.at(wins, (row[tie], (j * n + i)[tie]), 0.5)
                theta = bt_refit_batch(
                    wins.reshape(-1, n, n), self.theta, self.ridge, self.inverse, tol=STEP_TOL
                )
                spent += len(chunk)
                gaps = theta[:, [q.upper]] - theta[:, q.others]
                for r in np.flatnonzero((gaps <= FLIP_TOL).any(axis=1)):
                    lower = q.overtaker(theta[r])
                    if found is None or rank[lower] < rank[found[0]]:
                        found = (lower, np.bincount(chunk[r], minlength=len(cells.count)))
                if found is not None and len(q.others) == 1:
                    break
            if found is not None:
                q.votes, q.lower, q.removal = k, found[0], found[1].astype(np.int64)
                break
        q.exact, q.at_least = True, q.votes
        return spent


def _multisets(k: int, count: np.ndarray):
    """Every multiset of k cells with at most count[c] of cell c, as sorted index tuples."""
    c = len(count)
    room = np.minimum(count, k)
    suffix = np.concatenate([np.cumsum(room[::-1])[::-1], [0]])

    def rec(start: int, need: int):
        if need == 0:
            yield ()
            return
        for cell in range(start, c):
            if suffix[cell] < need:
                return
            for m in range(min(room[cell], need), 0, -1):
                for rest in rec(cell + 1, need - m):
                    yield (cell,) * m + rest

    return rec(0, k)


def _chunks(items, size: int):
    while True:
        block = list(itertools.islice(items, size))
        if not block:
            return
        yield np.array(block, dtype=np.int64)


# -- the public questions -------------------------------------------------------------------
def _setup(counts, ties, ranked, theta, ridge) -> tuple[_Fit, np.ndarray, np.ndarray]:
    """The shared fit, the ranked models best first, and each model's rank position."""
    fit = _Fit(counts, ties, theta, ridge)
    ranked = np.asarray(ranked, dtype=bool)
    if ranked.shape != (fit.cells.n,):
        raise ValueError(f"ranked must be a boolean mask of {fit.cells.n} models.")
    idx = np.flatnonzero(ranked)
    order = idx[np.argsort(-fit.theta[idx], kind="stable")]
    rank = np.empty(fit.cells.n, dtype=np.int64)
    rank[order] = np.arange(len(order))
    return fit, order, rank


def _settle(fit: _Fit, questions: list[_Question], budget: int, rank: np.ndarray) -> None:
    """Run the exact search on the questions whose enumeration fits the budget, cheapest
    first (ties by rank), each taking only what is left.

    A pair with bound u needs the sizes below u (if none flips, u is the minimum); the
    top question also refits size u, to name the best-ranked of the models that overtake.
    """
    budget = int(budget / max(1.0, (fit.cells.n / REFIT_MODELS) ** 2))
    last = {}
    for q in questions:
        if q.votes is None:
            continue
        last[id(q)] = q.votes if len(q.others) > 1 else q.votes - 1
        if q.votes <= 1:  # nothing smaller to check (the top's size-1 refits name `lower`)
            q.exact, q.at_least = True, q.votes
    wanted = [v for v in last.values() if 0 < v <= budget]
    cost = fit.exact_cost(max(wanted) + 2, budget, min(wanted)) if wanted else None
    if cost is None:
        return
    todo = [
        (int(cost[last[id(q)] + 1]), int(rank[q.upper]), q)
        for q in questions
        if 0 < last.get(id(q), 0) <= budget
    ]
    for need, _, q in sorted(todo, key=lambda x: x[:2]):
        if need <= budget:
            budget -= fit.exact(q, last[id(q)], rank)


def _result(fit: _Fit, q: _Question) -> FlipCount:
    share = q.votes / fit.total if q.votes is not None and fit.total > 0 else float("nan")
    removed = None if q.removal is None else fit.cells.as_counts(q.removal, fit.counts)
    method = "exact" if q.exact else "influence, verified"
    return FlipCount(q.upper, q.lower, q.votes, method, share, q.at_least, removed)


def adjacent_flips(
    counts: PairCounts,
    ties: str,
    ranked,
    theta: np.ndarray | None = None,
    exact_budget: int = EXACT_BUDGET,
    ridge: float = RIDGE,
) -> list[FlipCount]:
    """For each adjacent pair of the ranking (rank 1 vs 2 first): the fewest removed votes
    after which the lower model's refitted θ reaches the upper's.

    ``theta``: the plain fit ``bt_fit(counts.win_matrix(ties), ridge)`` if already at hand
    (``Ratings.theta``). Empty with fewer than two ranked models.
    """
    with threadpool_limits(1, user_api="blas"):
        fit, order, rank = _setup(counts, ties, ranked, theta, ridge)
        pairs = list(itertools.pairwise(order))
        if not pairs:
            return []
        d = np.zeros((fit.cells.n, len(pairs)))
        d[[a for a, _ in pairs], range(len(pairs))] = 1.0
        d[[b for _, b in pairs], range(len(pairs))] = -1.0
        u = np.linalg.solve(fit.hessian, d)  # one factorisation for every pair's influence
        questions = [_Question(int(a), np.array([b])) for a, b in pairs]
        for q, col in zip(questions, u.T, strict=True):
            fit.path(q, int(q.others[0]), col)
        _settle(fit, questions, exact_budget, rank)
        return [_result(fit, q) for q in questions]


def top_flip(
    counts: PairCounts,
    ties: str,
    ranked,
    theta: np.ndarray | None = None,
    exact_budget: int = EXACT_BUDGET,
    ridge: float = RIDGE,
) -> FlipCount | None:
    """The fewest removed votes after which some other ranked model's θ reaches the top's;
    ``lower`` is that model: the best-ranked one that does with that many votes when the
    exact search ran (it refits every removal of that size), else the one the influence
    path found. None with fewer than two ranked models.

    Influence route: each challenger's linear prediction (all from one factorisation)
    orders them; paths are verified in that order until the next prediction exceeds the
    best verified count. That stop is a heuristic, so the result is, as for a pair, a
    verified upper bound; the exact route (within budget) is the true minimum.
    """
    with threadpool_limits(1, user_api="blas"):
        fit, order, rank = _setup(counts, ties, ranked, theta, ridge)
        if len(order) < 2:
            return None
        top, others = int(order[0]), order[1:]
        d = np.zeros((fit.cells.n, len(others)))
        d[top] = 1.0
        d[others, range(len(others))] = -1.0
        u = np.linalg.solve(fit.hessian, d)
        predicted = []
        for c, col in zip(others, u.T, strict=True):
            infl = _influence(fit.cells, fit.theta, col)
            _, take = _greedy(fit.theta[top] - fit.theta[c], infl, fit.cells.count)
            predicted.append(int(take.sum()))
        best = None
        for i in np.argsort(predicted, kind="stable"):
            if best is not None and best.votes is not None and predicted[i] > best.votes:
                break
            q = _Question(top, others)
            fit.path(q, int(others[i]), u[:, i])
            if best is None or best.votes is None or (q.votes is not None and q.votes < best.votes):
                best = q
        _settle(fit, [best], exact_budget, rank)
        return _result(fit, best)
