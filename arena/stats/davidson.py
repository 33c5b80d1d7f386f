"""Davidson's Bradley-Terry model with ties: the penalised fit, its covariance, a bootstrap.

Davidson (1970) gives a tie its own probability instead of splitting it into half-wins.
With strengths ``π = exp(θ)`` and a tie parameter ``ν = exp(λ) ≥ 0``,

    P(i beats j) = π_i / D,   P(j beats i) = π_j / D,   P(tie) = ν·sqrt(π_i π_j) / D,
    D = π_i + π_j + ν·sqrt(π_i π_j).

**A tie and a both-bad vote both count as a tie**: neither says which image is better
(the bootstrap's pair-outcome cells, ``resample._Cells``, pool them the same way).
Given that a vote is decisive the model is BT, ``σ(θ_i − θ_j)``, so θ is on the scale
of :mod:`arena.stats.bradley_terry`; two equal models tie with probability ``ν/(2+ν)``,
and the tie probability falls as the strengths move apart.

Divided by ``sqrt(π_i π_j)``, with ``d = θ_i − θ_j``, a pair with ``a`` wins of i,
``b`` of j and ``c`` ties (``N = a + b + c``) adds

    −(a − b)·d/2 − c·λ + N·log(e^{d/2} + e^{−d/2} + e^λ)

to the negative log-likelihood: affine terms plus a log-sum-exp of affine functions of
(θ, λ), so the objective (:func:`davidson_objective`, plus ``RIDGE·Σθ²``, the ridge of
:mod:`~arena.stats.bradley_terry`, on θ only) is convex and the damped Newton method
from θ = 0 finds its unique minimum. The likelihood's θ-gradient sums to zero, so
``Σθ = 0`` there; λ has no penalty, so its score equation says that the predicted ties
over the observed battles add up to the observed ties exactly (:func:`tie_rates`).

Boundaries: with no tie at all ν's maximum-likelihood value is 0 (λ = −∞), where the
model *is* BT on the decisive votes: the fit returns ``nu=0.0``, ``log_nu=-inf`` and
``θ = bt_fit(win_matrix("drop"))``. If every vote is a tie, ν = +∞ and θ = 0 (the ridge
alone). In both cases λ has no standard error (NaN row and column of
:func:`davidson_sandwich`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arena.stats.bradley_terry import BLOCK_ELEMENTS, RIDGE, bt_fit
from arena.stats.pairs import PairCounts, pair_index
from arena.stats.resample import (
    BOOTSTRAP_TOL,
    _Cells,
    _multinomial,
    _PoissonTables,
    bootstrap_bt,
)

#: The most a Newton step moves θ_i or λ (a factor e^4 ≈ 55 in odds).
MAX_STEP = 4.0
#: Chord steps per bootstrap round before it is refitted by the damped Newton method.
CHORD_STEPS = 40


@dataclass(frozen=True)
class DavidsonFit:
    """The penalised maximum-likelihood fit: θ (n,) with Σθ = 0, ν and λ = log ν."""

    theta: np.ndarray
    nu: float
    log_nu: float


@dataclass(frozen=True)
class _Pairs:
    """Pairs that met (i < j, in ``pair_index`` order) and their outcome counts as floats:
    ``a`` i beat j, ``b`` j beat i, ``c`` tie or both-bad."""

    n: int
    first: np.ndarray
    second: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray

    @classmethod
    def of(cls, counts: PairCounts) -> _Pairs:
        _check_counts(counts)
        n = counts.n_items
        i, j = pair_index(n)
        wins = np.asarray(counts.wins, dtype=np.float64)
        tied = np.asarray(counts.ties, dtype=np.float64) + np.asarray(counts.both_bad)
        a, b, c = wins[i, j], wins[j, i], tied[i, j]
        keep = a + b + c > 0
        return cls(n, i[keep], j[keep], a[keep], b[keep], c[keep])

    @property
    def battles(self) -> np.ndarray:
        return self.a + self.b + self.c

    def win_matrix(self) -> np.ndarray:
        """Decisive wins as an (n, n) matrix (ties dropped)."""
        w = np.zeros((self.n, self.n))
        w[self.first, self.second] = self.a
        w[self.second, self.first] = self.b
        return w


def _check_counts(counts: PairCounts) -> None:
    shape = np.shape(counts.wins)
    for name in ("wins", "ties", "both_bad"):
        x = np.asarray(getattr(counts, name), dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != x.shape[1]:
            raise ValueError(f"counts.{name} must be a square matrix, got shape {x.shape}.")
        if x.shape != shape:
            raise ValueError(f"counts.{name} has shape {x.shape}, counts.wins {shape}.")
        if not np.all(np.isfinite(x)) or np.any(x < 0):
            raise ValueError(f"counts.{name} must be finite and non-negative.")
        if name != "wins" and not np.array_equal(x, x.T):
            raise ValueError(f"counts.{name} must be symmetric (a tie counts for both models).")


def _probabilities(d: np.ndarray, lam) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P(i wins), P(j wins), P(tie) for ``d = θ_i − θ_j`` and λ (broadcast); stable for
    any d and for λ = ±∞."""
    d = np.asarray(d, dtype=np.float64)
    if np.isscalar(lam) and lam == np.inf:
        return np.zeros_like(d), np.zeros_like(d), np.ones_like(d)
    h = 0.5 * d
    log_d = np.logaddexp(np.logaddexp(h, -h), lam)
    return np.exp(h - log_d), np.exp(-h - log_d), np.exp(lam - log_d)


def _assemble(pairs: _Pairs, w_dd, w_dl, w_ll, ridge: float) -> np.ndarray:
    """Σ_pairs of [w_dd·x xᵀ, w_dl·x; w_dl·xᵀ, w_ll] with x = e_i − e_j, plus 2·ridge on θ."""
    n, i, j = pairs.n, pairs.first, pairs.second
    out = np.zeros((n + 1, n + 1))
    out[i, j] = -w_dd
    out[j, i] = -w_dd
    idx = np.arange(n)
    out[idx, idx] = np.bincount(i, w_dd, n) + np.bincount(j, w_dd, n) + 2.0 * ridge
    cross = np.bincount(i, w_dl, n) - np.bincount(j, w_dl, n)
    out[:n, n] = cross
    out[n, :n] = cross
    out[n, n] = np.sum(w_ll)
    return out


def _objective(x: np.ndarray, pairs: _Pairs, ridge: float) -> float:
    theta, lam = x[:-1], x[-1]
    h = 0.5 * (theta[pairs.first] - theta[pairs.second])
    log_d = np.logaddexp(np.logaddexp(h, -h), lam)
    ties = np.sum(pairs.c)
    nll = -(pairs.a - pairs.b) @ h - (ties * lam if ties else 0.0) + pairs.battles @ log_d
    return float(nll + ridge * theta @ theta)


def _gradient(x: np.ndarray, pairs: _Pairs, ridge: float) -> np.ndarray:
    theta, lam = x[:-1], x[-1]
    pi, pj, pt = _probabilities(theta[pairs.first] - theta[pairs.second], lam)
    g_d = 0.5 * (pairs.battles * (pi - pj) - (pairs.a - pairs.b))
    grad = np.empty(pairs.n + 1)
    grad[:-1] = np.bincount(pairs.first, g_d, pairs.n) - np.bincount(pairs.second, g_d, pairs.n)
    grad[:-1] += 2.0 * ridge * theta
    grad[-1] = pairs.battles @ pt - np.sum(pairs.c)
    return grad


def _hessian(x: np.ndarray, pairs: _Pairs, ridge: float) -> np.ndarray:
    """Per pair: ∂²/∂d² = N·(p_i p_j + p_t(1 − p_t)/4) (no cancellation; p_i p_j at
    ν = 0, BT's), ∂²/∂d∂λ = −N·(p_i − p_j)·p_t/2, ∂²/∂λ² = N·p_t(1 − p_t)."""
    theta, lam = x[:-1], x[-1]
    pi, pj, pt = _probabilities(theta[pairs.first] - theta[pairs.second], lam)
    n_ = pairs.battles
    w_dd = n_ * (pi * pj + 0.25 * pt * (1.0 - pt))
    return _assemble(pairs, w_dd, -0.5 * n_ * (pi - pj) * pt, n_ * pt * (1.0 - pt), ridge)


def _newton(x: np.ndarray, pairs: _Pairs, ridge: float, tol: float, max_iter: int):
    """Damped Newton with Armijo backtracking, as :func:`bradley_terry.bt_fit`, with two
    guards for starts far from the optimum (a bootstrap round's refit starts at the
    full-data fit). A step moves no coordinate by more than ``MAX_STEP``: an unbounded
    one can lower the objective yet land where the probabilities saturate and the
    Hessian is singular in floating point; there (no descent direction from the
    solve) the step is a scaled gradient step instead. And once the Newton decrement
    ``gᵀH⁻¹g`` (about twice the distance to the minimum in objective) is below the
    objective's rounding, Armijo's test cannot tell a good step from a bad one and
    would shrink it to nothing; there the full step is taken.
    """
    x = np.array(x, dtype=np.float64)
    value = _objective(x, pairs, ridge)
    for _ in range(max_iter):
        grad = _gradient(x, pairs, ridge)
        hess = _hessian(x, pairs, ridge)
        try:
            step = np.linalg.solve(hess, grad)
        except np.linalg.LinAlgError:
            step = np.full_like(grad, np.nan)
        if not np.all(np.isfinite(step)) or not grad @ step > 0:
            step = grad / np.max(np.diag(hess))
        step *= min(1.0, MAX_STEP / max(np.max(np.abs(step)), 1e-300))
        slope = float(grad @ step)
        t = 1.0
        if slope > 1e-12 * max(1.0, abs(value)):
            while True:
                new_value = _objective(x - t * step, pairs, ridge)
                if new_value <= value - 1e-4 * t * slope or t < 1e-10:
                    break
                t *= 0.5
            value = new_value
        x = x - t * step
        if np.max(np.abs(t * step)) < tol:
            break
    return x


def _fit(pairs: _Pairs, ridge, tol, max_iter, start: np.ndarray | None = None) -> DavidsonFit:
    n = pairs.n
    ties, total = float(np.sum(pairs.c)), float(np.sum(pairs.battles))
    if ties == 0:  # ν → 0: exactly BT on the decisive votes
        theta = bt_fit(pairs.win_matrix(), ridge=ridge, tol=tol, max_iter=max_iter)
        return DavidsonFit(theta, 0.0, -np.inf)
    if ties == total:  # ν → ∞; θ is the ridge's alone
        return DavidsonFit(np.zeros(n), np.inf, np.inf)
    if start is None:  # equal models tie with probability ν/(2 + ν): match the tie share
        share = ties / total
        start = np.append(np.zeros(n), np.log(2.0 * share / (1.0 - share)))
    x = _newton(start, pairs, ridge, tol, max_iter)
    theta = x[:-1] - x[:-1].mean()
    return DavidsonFit(theta, float(np.exp(x[-1])), float(x[-1]))


def davidson_fit(
    counts: PairCounts, ridge: float = RIDGE, tol: float = 1e-10, max_iter: int = 200
) -> DavidsonFit:
    """Davidson maximum (penalised) likelihood θ and ν from aggregated counts.

    Ties and both-bad votes are ties. Damped Newton on the full (n+1)×(n+1) system in
    (θ, λ = log ν), halving each step until the objective decreases enough (Armijo),
    from θ = 0 and the ν at which equal models would tie as often as observed. No
    ties: ``nu=0.0, log_nu=-inf`` and the BT fit with ties dropped; only ties:
    ``nu=inf, log_nu=inf``, θ = 0.
    """
    if ridge <= 0:
        raise ValueError("ridge must be > 0 (it keeps undefeated models finite).")
    return _fit(_Pairs.of(counts), ridge, tol, max_iter)


def _point(theta, log_nu) -> np.ndarray:
    return np.append(np.asarray(theta, dtype=np.float64), float(log_nu))


def davidson_objective(theta, log_nu: float, counts: PairCounts, ridge: float = RIDGE) -> float:
    """Negative log-likelihood of the counts plus ``ridge·Σθ²`` (finite λ)."""
    return _objective(_point(theta, log_nu), _Pairs.of(counts), ridge)


def davidson_gradient(theta, log_nu: float, counts: PairCounts, ridge: float = RIDGE):
    """Gradient of :func:`davidson_objective` in (θ, λ): shape (n+1,)."""
    return _gradient(_point(theta, log_nu), _Pairs.of(counts), ridge)


def davidson_information(
    theta, log_nu: float, counts: PairCounts, ridge: float = RIDGE
) -> np.ndarray:
    """Hessian of :func:`davidson_objective` in (θ, λ): (n+1)×(n+1), λ last.

    The observed information plus ``2·ridge`` on θ's diagonal. At λ = −∞ (ν = 0) the
    θ block is BT's and the λ row is zero.
    """
    return _hessian(_point(theta, log_nu), _Pairs.of(counts), ridge)


def davidson_sandwich(fit: DavidsonFit, counts: PairCounts, ridge: float = RIDGE) -> np.ndarray:
    """Robust covariance of (θ, λ): ``H⁻¹ G H⁻¹``, (n+1)×(n+1), λ last.

    ``H`` is :func:`davidson_information` at the fit (ridge included); ``G = Σ_cells
    count · s sᵀ`` over the pair-outcome cells (i beat j, j beat i, tie or both-bad),
    ``s`` the gradient of one vote's −log P(outcome) in (θ, λ) (no ridge). It holds
    when votes are independent but the model is wrong (e.g. raters tie more unevenly
    than Davidson's ν allows); if the model holds, G ≈ H − 2·ridge and this is about
    ``H⁻¹``. Σθ has variance 0 (each s sums to zero over θ). At ν = 0 or ∞ λ has no
    standard error: the θ block is that of θ alone, λ's row and column are NaN.
    """
    pairs = _Pairs.of(counts)
    n = pairs.n
    pi, pj, pt = _probabilities(fit.theta[pairs.first] - fit.theta[pairs.second], fit.log_nu)
    u = 0.5 * (pi - pj)  # ∂(−log P)/∂d of each outcome: u − ½, u + ½, u
    a, b, c = pairs.a, pairs.b, pairs.c
    g_dd = a * (u - 0.5) ** 2 + b * (u + 0.5) ** 2 + c * u**2
    g_dl = (a * (u - 0.5) + b * (u + 0.5)) * pt + c * u * (pt - 1.0)
    g_ll = (a + b) * pt**2 + c * (pt - 1.0) ** 2
    meat = _assemble(pairs, g_dd, g_dl, g_ll, 0.0)
    bread = _hessian(_point(fit.theta, fit.log_nu), pairs, ridge)
    if np.isfinite(fit.log_nu):
        return _sandwich(bread, meat, n)
    out = np.full((n + 1, n + 1), np.nan)
    out[:n, :n] = _sandwich(bread[:n, :n], meat[:n, :n], n)
    return out


def _sandwich(bread: np.ndarray, meat: np.ndarray, n: int) -> np.ndarray:
    """``H⁻¹ G H⁻¹``, accurately. ``u = (1, …, 1, 0)`` (θ's shift) is an eigenvector of
    H with the ridge's tiny eigenvalue ``2·ridge`` (a condition number of ~10⁷), and
    ``G u = 0``. Raising that eigenvalue (:func:`_lifted`) leaves the product unchanged
    in exact arithmetic and keeps the inverse well conditioned. The bootstrap's chord
    steps use the lifted Hessian too: rounds are centred, so θ's shift is never fitted."""
    inv = np.linalg.inv(_lifted(bread, n))
    out = inv @ meat @ inv
    return 0.5 * (out + out.T)


def _lifted(hessian: np.ndarray, n: int) -> np.ndarray:
    """The Hessian with the eigenvalue of θ's shift ``(1, …, 1, 0)``, the ridge's
    ``2·ridge``, raised by the mean diagonal (same eigenvectors)."""
    u = np.zeros(len(hessian))
    u[:n] = 1.0 / n
    return hessian + np.trace(hessian) / len(hessian) * n * np.outer(u, u)


def davidson_win_probability(theta, nu: float) -> np.ndarray:
    """P[i, j]: probability that i beats j (a decisive vote for i); NaN on the diagonal."""
    theta = np.asarray(theta, dtype=np.float64)
    p, _, _ = _probabilities(theta[:, None] - theta[None, :], _log(nu))
    np.fill_diagonal(p, np.nan)
    return p


def tie_probability(theta, nu: float) -> np.ndarray:
    """P[i, j]: probability of a tie (or both-bad vote) between i and j; NaN diagonal."""
    theta = np.asarray(theta, dtype=np.float64)
    _, _, p = _probabilities(theta[:, None] - theta[None, :], _log(nu))
    np.fill_diagonal(p, np.nan)
    return p


def _log(nu: float) -> float:
    if not nu >= 0:
        raise ValueError(f"nu={nu}: the tie parameter must be >= 0.")
    return float(np.log(nu)) if nu > 0 else -np.inf


def tie_rates(fit: DavidsonFit, counts: PairCounts) -> tuple[float, float]:
    """(predicted, observed) share of ties among the observed battles.

    Predicted: ``Σ_pairs N_ij·P_tie(i, j) / N`` at the fit; observed: ``(ties +
    both-bad) / N``. At the maximum likelihood they are equal (λ's score equation); a
    gap means the fit did not converge. NaN for no battles.
    """
    pairs = _Pairs.of(counts)
    total = float(np.sum(pairs.battles))
    if total == 0:
        return float("nan"), float("nan")
    _, _, pt = _probabilities(fit.theta[pairs.first] - fit.theta[pairs.second], fit.log_nu)
    return float(pairs.battles @ pt / total), float(np.sum(pairs.c) / total)


def _chord(pairs: _Pairs, draws: np.ndarray, x0: np.ndarray, inverse: np.ndarray, ridge: float):
    """Chord Newton for many rounds: ``draws`` (B, 3, P) cell counts -> x (B, n+1) and
    the rounds that did not converge to ``BOOTSTRAP_TOL``. Every step uses the
    full-data inverse Hessian; per-model sums of pair terms are segment sums over the
    pairs sorted by i and by j."""
    n, i, j = pairs.n, pairs.first, pairs.second
    first_models, first_starts = np.unique(i, return_index=True)
    by_second = np.argsort(j, kind="stable")
    second_models, second_starts = np.unique(j[by_second], return_index=True)
    a, b, c = draws[:, 0], draws[:, 1], draws[:, 2]
    battles, margin, tied = a + b + c, a - b, c.sum(axis=1)
    x = np.repeat(x0[None, :], len(draws), axis=0)
    grad = np.empty_like(x)
    size = np.full(len(draws), np.inf)
    for _ in range(CHORD_STEPS):
        theta = x[:, :n]
        pi, pj, pt = _probabilities(theta[:, i] - theta[:, j], x[:, n:])
        g_d = 0.5 * (battles * (pi - pj) - margin)
        grad[:, :n] = 2.0 * ridge * theta
        grad[:, first_models] += np.add.reduceat(g_d, first_starts, axis=1)
        grad[:, second_models] -= np.add.reduceat(g_d[:, by_second], second_starts, axis=1)
        grad[:, n] = np.einsum("bp,bp->b", battles, pt) - tied
        step = grad @ inverse
        x -= step
        size = np.max(np.abs(step), axis=1)
        if size.max() < BOOTSTRAP_TOL:
            break
    bad = ~(size < BOOTSTRAP_TOL) | ~np.all(np.isfinite(x), axis=1)
    return x, np.flatnonzero(bad)


def davidson_bootstrap(
    counts: PairCounts,
    rng: np.random.Generator,
    rounds: int,
    ridge: float = RIDGE,
    fit: DavidsonFit | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """θ (rounds, n), centred to mean 0 per round, and ν (rounds,) of bootstrap resamples.

    Battles are resampled as in :mod:`arena.stats.resample`: a multinomial draw over the
    pair-outcome cells with its exact sampler. All rounds start from ``fit`` (default:
    the full-data fit) and take chord steps with its inverse Hessian, vectorised over
    blocks of rounds, to ``BOOTSTRAP_TOL``; a round that has not converged after
    ``CHORD_STEPS`` (e.g. one that drew no tie, whose ν is 0) is refitted by
    :func:`davidson_fit`'s Newton method from the same start. One thread; the result
    depends on ``rng`` only. Data without ties give BT's bootstrap (``bootstrap_bt``
    with ties dropped, whose threads do not change the result) and ν = 0; data with
    only ties θ = 0, ν = ∞.
    """
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    pairs = _Pairs.of(counts)
    if any(np.any(x != np.round(x)) for x in (pairs.a, pairs.b, pairs.c)):
        raise ValueError("counts must be whole numbers of votes to resample battles.")
    n = pairs.n
    if fit is None:
        fit = davidson_fit(counts, ridge)
    if np.shape(fit.theta) != (n,):
        raise ValueError(f"fit.theta has shape {np.shape(fit.theta)}, counts {n} models.")
    ties, total = np.sum(pairs.c), np.sum(pairs.battles)
    if ties == 0:
        theta = bootstrap_bt(counts, rng, rounds, ties="drop", ridge=ridge, theta=fit.theta)
        return theta, np.zeros(rounds)
    if ties == total:
        return np.zeros((rounds, n)), np.full(rounds, np.inf)
    cells = _Cells.of(counts)  # the cells resample.py draws from, in the same order
    values = cells.counts.T.ravel()
    tables = _PoissonTables.build(values)
    if not np.isfinite(fit.log_nu):
        raise ValueError(
            f"fit.nu={fit.nu} but the counts have ties and decisive votes: "
            "pass the fit of these counts."
        )
    x0 = _point(fit.theta, fit.log_nu)
    inverse = np.linalg.inv(_lifted(_hessian(x0, pairs, ridge), n))
    theta, log_nu = np.empty((rounds, n)), np.empty(rounds)
    block = max(1, BLOCK_ELEMENTS // values.size)
    for start in range(0, rounds, block):
        size = min(block, rounds - start)
        draws = _multinomial(rng, values, tables, size).reshape(size, 3, -1)
        x, todo = _chord(pairs, draws, x0, inverse, ridge)
        for r in todo:
            a, b, c = draws[r]
            redo = _fit(_Pairs(n, pairs.first, pairs.second, a, b, c), ridge, 1e-10, 200, x0)
            x[r] = _point(redo.theta, redo.log_nu)
        theta[start : start + size] = x[:, :n] - x[:, :n].mean(axis=1, keepdims=True)
        log_nu[start : start + size] = x[:, n]
    return theta, np.exp(log_nu)
