"""Bradley-Terry with ties: the penalised maximum-likelihood fit, its information, batches.

Model ``i`` has a log-strength ``θ_i`` and beats ``j`` with probability
``σ(θ_i - θ_j)`` (:func:`win_probability`). The fit minimises

    -Σ_{i≠j} W_ij log σ(θ_i - θ_j)  +  RIDGE · Σ_i θ_i²

(:func:`bt_objective`) on the aggregated win matrix ``W`` (``W_ij`` = wins of
``i`` over ``j``; ``PairCounts.win_matrix`` counts a tie and a both-bad vote as
half a win each way, or drops them). The ridge term is the same L2 penalty as
``choix``'s ``alpha`` (choix is the reference in the tests); ``RIDGE = 1e-3``
is a Gaussian prior with standard deviation ``1/sqrt(2·RIDGE) ≈ 22`` on θ
(≈ 3,900 Elo points): invisible next to the information of even a few votes
(each vote adds up to 0.25), but enough that a model that won every game, or a
group of models never compared with the others, gets a finite rating (a number the
fit needs, not one the votes determine: :func:`identified` says which are). Because
the log-likelihood gradient sums to zero, the penalised optimum has ``Σθ = 0``:
a disconnected group is centred on 0.

The Hessian of that objective, ``Σ_pairs N_ab p_ab (1 - p_ab) x xᵀ + 2·RIDGE·I``
with ``x = e_a - e_b`` (:func:`bt_information`), is the one curvature every
user of the fit shares: Newton's steps, the chord steps of the batched and
bootstrap fits, the covariance the pair-choice rule (:mod:`arena.stats.active`)
and the targeted-voting test work with (:func:`bt_covariance`). Note the
``2·``: the penalty is ``RIDGE·θ²``, so its curvature is ``2·RIDGE``.
"""

from __future__ import annotations

import numpy as np

#: L2 penalty on θ (choix's ``alpha``): keeps undefeated and disconnected models finite.
RIDGE = 1e-3
#: A block of rows shares ~1 MB buffers, which stay in cache (the Davidson bootstrap's blocks).
BLOCK_ELEMENTS = 1 << 17
#: Chord steps run on blocks of rounds of about this many tensor entries (2 MiB of float64,
#: four times as many rounds in float32): big enough that the per-step Python work is
#: small next to the tensor passes, which run without the GIL, so threads overlap.
CHORD_BLOCK = 1 << 18


def identified(wins: np.ndarray) -> np.ndarray:
    """Which models' ratings the votes determine: a boolean mask (n,).

    Without the ridge the BT likelihood has a finite maximum only on a set of models
    where each can reach each other by a chain of wins (a strongly connected "beat"
    graph, edge i -> j when ``wins[i, j] > 0``; Zermelo 1929, Ford 1957). A model
    that never won (or never lost) sits outside it: its maximum is at -inf (+inf), so
    the finite number the fit prints is set by the ridge alone. Returns the largest
    such set (ties: the one with the most battles); none when it has fewer than 2
    models. A tie counted as half a win each way links the pair both ways.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    wins = np.asarray(wins, dtype=np.float64)
    n = len(wins)
    beat = wins > 0
    np.fill_diagonal(beat, False)
    if n == 0:
        return np.zeros(0, dtype=bool)
    _, label = connected_components(csr_matrix(beat), directed=True, connection="strong")
    size = np.bincount(label, minlength=n)
    battles = np.bincount(label, weights=(wins + wins.T).sum(axis=1), minlength=n)
    best = max(range(len(size)), key=lambda c: (size[c], battles[c], -c))
    return (label == best) if size[best] >= 2 else np.zeros(n, dtype=bool)


def win_probability(theta: np.ndarray) -> np.ndarray:
    """P[..., i, j]: probability that i beats j under BT with log-strengths θ (..., n).

    ``σ(x) = (1 + tanh(x/2)) / 2``: no overflow for large differences.
    """
    theta = np.asarray(theta, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * (theta[..., :, None] - theta[..., None, :])))


def bt_objective(theta: np.ndarray, wins: np.ndarray, ridge: float = RIDGE) -> float:
    """Negative penalised log-likelihood (choix's ``PairwiseFcts.objective`` on counts)."""
    diff = theta[:, None] - theta[None, :]
    return float(np.sum(wins * np.logaddexp(0.0, -diff)) + ridge * np.sum(theta**2))


def bt_gradient_hessian(
    theta: np.ndarray, wins: np.ndarray, ridge: float = RIDGE
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and Hessian of :func:`bt_objective`."""
    n = wins + wins.T
    p = win_probability(theta)
    grad = (n * p).sum(axis=1) - wins.sum(axis=1) + 2.0 * ridge * theta
    return grad, bt_information(theta, n, ridge)


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


def bt_information(theta: np.ndarray, battles: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Hessian of :func:`bt_objective` at θ: the Fisher information plus ``2·ridge·I``.

    ``battles[..., a, b]`` counts the battles between a and b (symmetric, any outcome
    that enters the fit); θ (..., n) and battles (..., n, n) may carry batch axes.
    The Hessian does not depend on who won, only on how often each pair met.
    """
    theta = np.asarray(theta, dtype=np.float64)
    p = win_probability(theta)
    w = battles * p * (1.0 - p)
    n = theta.shape[-1]
    info = -w
    diagonal = np.arange(n)
    info[..., diagonal, diagonal] += w.sum(axis=-1)
    return info + 2.0 * ridge * np.eye(n)


def bt_covariance(theta: np.ndarray, battles: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Approximate covariance of the fitted θ: the inverse of :func:`bt_information`.

    The ridge keeps it finite for models without battles (variance ``1/(2·ridge)``,
    the prior's).
    """
    return np.linalg.inv(bt_information(theta, battles, ridge))


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
        hessian = bt_information(initial, mean + mean.T, ridge)
    theta, todo = chord_fit(
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


#: Float32 chord steps go on until a step is below this (float32 resolves steps down to
#: ~2e-6 on a 300-model board); float64 steps finish the fit.
SINGLE_TOL = 1e-5
#: Float32 steps only while θ spans less than this: π = exp(θ - max θ) stays far above
#: float32's smallest normal number (exp(-87)).
SINGLE_SPAN = 50.0


def chord_fit(
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
    π = exp(θ): a few passes over the tensor per step, no exp on it. Battles in
    float32 (which must hold the counts exactly) halve what those passes move:
    the first steps (up to half of ``max_iter``) then run in float32 down to
    ``SINGLE_TOL`` (or until they stop shrinking, at float32's resolution), and
    the last steps and the test against ``tol`` in float64, so the answer is the
    float64 fit's to within ``tol``. Returns θ and the rounds that did not
    converge (to be refitted by :func:`bt_fit`).
    """
    rounds, n, _ = battles.shape
    theta = np.repeat(initial[None, :], rounds, axis=0)
    rows = max(1, CHORD_BLOCK // (n * n))
    if battles.dtype == np.float32:
        # The float64 steps still read the counts in float32 (cast on the fly), and step
        # with the float32 inverse: a preconditioner off by 1e-7 changes each step by
        # that fraction, not the point where the gradient (in float64) vanishes.
        inverse = inverse.astype(np.float32)
        _single_steps(theta, battles, won, inverse, ridge, max_iter // 2, 4 * rows)
        theta[~np.all(np.isfinite(theta), axis=1)] = initial
        max_iter -= max_iter // 2
    step_size = np.full(rounds, np.inf)
    buf = np.empty((min(rows, rounds), n, n))
    for start in range(0, rounds, rows):
        block = slice(start, min(start + rows, rounds))
        th, nb, wb = theta[block], battles[block], won[block]
        bb = buf[: th.shape[0]]
        for _ in range(max_iter):
            size = _chord_step(th, nb, wb, bb, inverse, ridge)
            if size.max() < tol:
                break
        step_size[block] = size
    bad = ~(step_size < tol) | ~np.all(np.isfinite(theta), axis=1)
    return theta, np.flatnonzero(bad)


def _single_steps(
    theta: np.ndarray,
    battles: np.ndarray,
    won: np.ndarray,
    inverse: np.ndarray,
    ridge: float,
    max_iter: int,
    rows: int,
) -> None:
    """Chord steps in float32 on ``theta`` (in place), blocks of ``rows`` rounds, until
    the largest step is below ``SINGLE_TOL`` or stops halving."""
    rounds, n, _ = battles.shape
    buf = np.empty((min(rows, rounds), n, n), np.float32)
    for start in range(0, rounds, rows):
        block = slice(start, min(start + rows, rounds))
        th, nb, wb = theta[block], battles[block], won[block]
        previous = np.inf
        for _ in range(max_iter):
            if np.ptp(th) >= SINGLE_SPAN:
                break
            largest = _chord_step(th, nb, wb, buf[: th.shape[0]], inverse, ridge).max()
            if not SINGLE_TOL <= largest < previous / 2:
                break
            previous = largest


def _chord_step(
    theta: np.ndarray,
    battles: np.ndarray,
    won: np.ndarray,
    work: np.ndarray,
    inverse: np.ndarray,
    ridge: float,
) -> np.ndarray:
    """One chord step on a block of rounds, in place on ``theta``; returns each round's
    largest |step|. The tensor passes run in ``work``'s precision."""
    pi = np.exp(theta - theta.max(axis=1, keepdims=True))
    p = pi.astype(work.dtype, copy=False)
    work[...] = p[:, None, :]  # a broadcast copy and an in-place add: faster than add.outer
    work += p[:, :, None]
    np.divide(battles, work, out=work)
    grad = work @ np.ones(work.shape[-1], work.dtype)  # row sums, as one BLAS pass
    grad *= pi
    grad -= won
    if work.dtype == np.float32:
        # The likelihood part sums to 0 exactly; its float32 rounding does not, and the
        # inverse (eigenvalue 1/(2·ridge) along the ones) would blow that up into a shift.
        grad -= grad.mean(axis=1, keepdims=True)
    grad += 2.0 * ridge * theta
    step = grad.astype(inverse.dtype, copy=False) @ inverse
    theta -= step
    return np.max(np.abs(step), axis=1)


def bt_refit_batch(
    wins: np.ndarray,
    initial: np.ndarray,
    ridge: float = RIDGE,
    inverse: np.ndarray | None = None,
    tol: float = 1e-12,
) -> np.ndarray:
    """Fit (B, n, n) win matrices from a nearby ``initial`` to ``tol`` (tighter than
    :func:`bt_fit`'s stopping rule, for callers that compare refits of nearly equal
    models, e.g. :mod:`arena.stats.flips`): chord steps with a shared
    inverse Hessian first if given (O(n²) a step), then each round's own Newton steps
    (a few votes off a small arena change the Hessian too much for the chord), then
    :func:`bt_fit` (damped) for what still has not converged or left the finite numbers.

    Steps are centred: the optimum has Σθ = 0 (the likelihood's gradient sums to 0), and
    the common shift, whose curvature is only the ridge's, would otherwise turn rounding
    noise into steps of ~1e-10 at 10⁶ votes that never settle.
    """
    rounds, n, _ = wins.shape
    battles = wins + wins.transpose(0, 2, 1)
    won = wins.sum(axis=2)
    start = initial - initial.mean()
    theta = np.repeat(start[None, :], rounds, axis=0)
    todo = np.arange(rounds)
    diagonal = np.arange(n)
    with np.errstate(all="ignore"):  # a diverging round turns non-finite and stays in todo
        for chord in ([inverse] if inverse is not None else []) + [None]:
            theta[todo[~np.all(np.isfinite(theta[todo]), axis=1)]] = start
            for _ in range(30 if chord is not None else 25):
                th, nb = theta[todo], battles[todo]
                if chord is not None:  # Σ_j N_ij σ(θ_i − θ_j) = π_i Σ_j N_ij / (π_i + π_j)
                    pi = np.exp(th - th.max(axis=1, keepdims=True))
                    grad = pi * (nb / (pi[:, :, None] + pi[:, None, :])).sum(axis=2)
                    step = (grad + 2.0 * ridge * th - won[todo]) @ chord
                else:
                    p = 0.5 * (1.0 + np.tanh(0.5 * (th[:, :, None] - th[:, None, :])))
                    grad = (nb * p).sum(axis=2) - won[todo] + 2.0 * ridge * th
                    w = nb * p * (1.0 - p)
                    hess = -w
                    hess[:, diagonal, diagonal] += w.sum(axis=2) + 2.0 * ridge
                    step = np.linalg.solve(hess, grad[:, :, None])[:, :, 0]
                step -= step.mean(axis=1, keepdims=True)
                theta[todo] = th - step
                todo = todo[~(np.abs(step).max(axis=1) < tol)]
                if len(todo) == 0:
                    break
    for r in np.union1d(todo, np.flatnonzero(~np.all(np.isfinite(theta), axis=1))):
        theta[r] = bt_fit(wins[r], ridge=ridge, initial=initial)
    return theta - theta.mean(axis=1, keepdims=True)


def predicted_win_rate(theta: np.ndarray) -> np.ndarray:
    """BT probability that i beats j; NaN on the diagonal."""
    theta = np.asarray(theta, dtype=np.float64)
    p = win_probability(theta)
    np.fill_diagonal(p, np.nan)
    return p
