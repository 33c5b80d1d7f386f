"""Bradley-Terry with covariates ("style control"): ratings net of what the features explain.

Each battle ``k`` between models ``a_k`` (left) and ``b_k`` (right) carries a
feature vector ``x_k`` — for images, the difference of per-image features of the
two sides (:mod:`arena.reports.style` builds them) — and the left side wins with
probability ``σ(θ_a - θ_b + x_kᵀβ)``. The fit minimises

    -Σ_k w_k [y_k η_k - log(1 + e^{η_k})]  +  ridge·Σθ²  +  ½·penalty·W·Σβ²

with ``η_k = θ_a - θ_b + x_kᵀβ``, ``y_k`` 1 / 0 / ½ (left won / right won /
tie or both bad), ``w_k`` the battle's weight (its count, times a reweighting
factor; :func:`pair_weights`) and ``W = Σ w_k``. ``penalty`` is per vote, the
same unit as ``arena-rank``'s ``ContextualBradleyTerry(reg=...)`` (its loss is
the mean over battles), so the two fits agree when given the same value; the
ridge on θ is :data:`arena.stats.bradley_terry.RIDGE` as in the plain fit.
With no features this is the plain fit on battle rows, so plain BT and its
sandwich interval use the same code (:func:`rows_from_counts`).

Rows are kept as given (features differ battle by battle, so they do not
aggregate); identical rows may be merged by the caller with a count in ``w``.
Newton's method on the (n + k) parameters: each step is O(rows·k) for the
gradient and the Hessian's blocks, plus one (n + k)-square solve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from arena.stats.bradley_terry import RIDGE
from arena.stats.pairs import PairCounts, check_ties, pair_index

#: Default L2 penalty on the feature coefficients, per vote (see the module docstring):
#: small next to a standardised feature's curvature (~0.25 per vote), so it shrinks the
#: coefficients by well under 1% and only keeps a constant or collinear feature finite.
FEATURE_PENALTY = 1e-3


@dataclass(frozen=True)
class Rows:
    """Battles as rows: left index, right index, outcome score, weight, features (N, k)."""

    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    w: np.ndarray
    x: np.ndarray
    #: identical battles merged into a row: the weight of one battle of the row
    #: (``w / unit`` battles), used by the sandwich's per-battle scores.
    unit: np.ndarray
    #: per model count, the rows-to-pairs summing matrix (shared by reweighted copies)
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    def pair_sums(self, n: int, values: np.ndarray) -> np.ndarray:
        """Σ over the rows of each ordered pair (a, b) of ``values`` (N, m): (n·n, m).

        One sparse product with a rows-to-pairs matrix built once: all the Hessian's
        blocks in one pass over the rows instead of one bincount per column."""
        groups = self.cache.get(n)
        if groups is None:
            from scipy.sparse import csr_matrix

            code = self.a * n + self.b
            ones = np.ones(code.size)
            groups = csr_matrix((ones, (code, np.arange(code.size))), shape=(n * n, code.size))
            self.cache[n] = groups
        return np.asarray(groups @ values)

    @property
    def n_features(self) -> int:
        return self.x.shape[1]

    def take(self, keep: np.ndarray, index: np.ndarray | None = None) -> Rows:
        """The rows in ``keep``; models renumbered by ``index`` (old -> new) if given."""
        a, b = self.a[keep], self.b[keep]
        if index is not None:
            a, b = index[a], index[b]
        if index is None and keep.dtype == bool and keep.all():
            return self
        return Rows(a, b, self.y[keep], self.w[keep], self.x[keep], self.unit[keep])


def make_rows(
    left: np.ndarray,
    right: np.ndarray,
    outcome_score: np.ndarray,
    features: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> Rows:
    """Rows of single battles (weight 1 each unless given)."""
    a = np.asarray(left, dtype=np.int64)
    b = np.asarray(right, dtype=np.int64)
    y = np.asarray(outcome_score, dtype=np.float64)
    if not a.shape == b.shape == y.shape or a.ndim != 1:
        raise ValueError("left, right and outcome_score must be 1-d arrays of one length.")
    x = np.zeros((a.size, 0)) if features is None else np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != a.size:
        raise ValueError(f"features must have shape ({a.size}, k), got {x.shape}.")
    if not np.all(np.isfinite(x)):
        raise ValueError("features must be finite; drop or fill the battles without them.")
    w = np.ones(a.size) if weight is None else np.asarray(weight, dtype=np.float64)
    return Rows(a, b, y, w, x, w.copy())


def rows_from_counts(counts: PairCounts, ties: str = "split") -> Rows:
    """The plain BT data as rows: one per (pair, outcome) cell that has votes.

    ``ties="split"`` makes ties and both-bad votes rows with outcome ½ (each vote
    is then half a win each way, exactly the win matrix's split); ``"drop"``
    leaves them out.
    """
    check_ties(ties)
    i, j = pair_index(counts.n_items)
    drawn = (counts.ties + counts.both_bad)[i, j] if ties == "split" else np.zeros(i.size)
    a, b = np.tile(i, 3), np.tile(j, 3)
    y = np.repeat([1.0, 0.0, 0.5], i.size)
    c = np.concatenate([counts.wins[i, j], counts.wins[j, i], drawn]).astype(np.float64)
    keep = c > 0
    x = np.zeros((int(keep.sum()), 0))
    return Rows(a[keep], b[keep], y[keep], c[keep], x, np.ones(int(keep.sum())))


def pair_weights(rows: Rows, n: int, floor: float) -> Rows:
    """Reweighted rows: each battle of a pair weighs ``1 / max(battles of the pair, floor)``
    (arena-rank's ``reweighted=True``), rescaled so that the weights average 1 per battle.

    Each pair then counts about equally however often it was shown: a matchmaker
    that over-samples close pairs no longer tilts the fit towards them. Intervals
    widen, because the effective number of votes drops.
    """
    if floor < 1:
        raise ValueError(f"reweight floor={floor}: expected a number of battles >= 1.")
    lo, hi = np.minimum(rows.a, rows.b), np.maximum(rows.a, rows.b)
    battles = rows.w / rows.unit
    per_pair = np.bincount(lo * n + hi, weights=battles, minlength=n * n)
    factor = 1.0 / np.maximum(per_pair[lo * n + hi], floor)
    factor *= battles.sum() / float(np.sum(battles * factor))
    return Rows(rows.a, rows.b, rows.y, rows.w * factor, rows.x, rows.unit * factor, rows.cache)


@dataclass(frozen=True)
class ContextualFit:
    theta: np.ndarray  # (n,), Σθ = 0 up to the ridge's pull
    beta: np.ndarray  # (k,) feature coefficients, in θ units per standard deviation
    iterations: int


def _eta(rows: Rows, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
    eta = theta[rows.a] - theta[rows.b]
    if rows.n_features:
        eta += rows.x @ beta
    return eta


def objective(
    rows: Rows, theta: np.ndarray, beta: np.ndarray, ridge: float, penalty: float
) -> float:
    return _objective(rows, _eta(rows, theta, beta), theta, beta, ridge, penalty)


def _objective(rows, eta, theta, beta, ridge, penalty) -> float:
    loglik = np.dot(rows.w, rows.y * eta - np.logaddexp(0.0, eta))
    total = float(rows.w.sum())
    return float(-loglik + ridge * theta @ theta + 0.5 * penalty * total * beta @ beta)


def pair_laplacian(n: int, sums: np.ndarray) -> np.ndarray:
    """Σ over rows of values · (e_a - e_b)(e_a - e_b)ᵀ, as an n×n matrix, from the
    per-ordered-pair sums of the values (n·n,)."""
    m = sums.reshape(n, n)
    m = m + m.T
    out = -m
    out[np.diag_indices(n)] += m.sum(axis=1)
    return out


def information(
    rows: Rows, n: int, theta: np.ndarray, beta: np.ndarray, ridge: float, penalty: float
) -> np.ndarray:
    """Hessian of :func:`objective` at (θ, β): the (n + k)-square block matrix."""
    p = _probability(_eta(rows, theta, beta))
    return _hessian(rows, n, rows.w * p * (1.0 - p), ridge, penalty)


def _hessian(rows: Rows, n: int, v: np.ndarray, ridge: float, penalty: float) -> np.ndarray:
    """The (n + k)-square matrix Σ v·z zᵀ (z = (e_a - e_b, x)) plus the penalties'
    curvature: θθ from the pair sums of v, θβ from those of v·x (row sums minus column
    sums), ββ as xᵀ(v x)."""
    k = rows.n_features
    h = np.empty((n + k, n + k))
    columns = np.empty((v.size, 1 + k))
    columns[:, 0] = v
    if k:
        np.multiply(rows.x, v[:, None], out=columns[:, 1:])
    sums = rows.pair_sums(n, columns)
    h[:n, :n] = pair_laplacian(n, sums[:, 0]) + 2.0 * ridge * np.eye(n)
    if k:
        per_pair = sums[:, 1:].reshape(n, n, k)
        cross = per_pair.sum(axis=1) - per_pair.sum(axis=0)
        h[:n, n:], h[n:, :n] = cross, cross.T
        h[n:, n:] = rows.x.T @ columns[:, 1:] + penalty * rows.w.sum() * np.eye(k)
    return h


def _probability(eta: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * eta))


def _gradient(
    rows: Rows,
    n: int,
    theta: np.ndarray,
    beta: np.ndarray,
    ridge: float,
    penalty: float,
    eta: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Gradient of :func:`objective` and the probabilities σ(η) it was computed with."""
    p = _probability(_eta(rows, theta, beta) if eta is None else eta)
    r = rows.w * (rows.y - p)
    grad = np.empty(n + rows.n_features)
    grad[:n] = np.bincount(rows.b, r, minlength=n) - np.bincount(rows.a, r, minlength=n)
    grad[:n] += 2.0 * ridge * theta
    if rows.n_features:
        grad[n:] = -(rows.x.T @ r) + penalty * rows.w.sum() * beta
    return grad, p


def contextual_fit(
    rows: Rows,
    n: int,
    ridge: float = RIDGE,
    penalty: float = FEATURE_PENALTY,
    tol: float = 1e-10,
    max_iter: int = 100,
    initial: tuple[np.ndarray, np.ndarray] | None = None,
) -> ContextualFit:
    """Penalised maximum likelihood (θ, β) by damped Newton (Armijo halving).

    Converges from any start (the objective is strictly convex with both penalties
    positive); from the plain fit it typically takes 4–6 steps.
    """
    if ridge <= 0:
        raise ValueError("ridge must be > 0 (it keeps undefeated models finite).")
    if penalty < 0:
        raise ValueError(f"penalty={penalty}: expected a non-negative L2 penalty per vote.")
    k = rows.n_features
    if initial is None:
        theta, beta = np.zeros(n), np.zeros(k)
    else:
        theta, beta = (np.array(v, dtype=np.float64) for v in initial)
    eta = _eta(rows, theta, beta)
    value = _objective(rows, eta, theta, beta, ridge, penalty)
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        grad, p = _gradient(rows, n, theta, beta, ridge, penalty, eta)
        step = np.linalg.solve(_hessian(rows, n, rows.w * p * (1.0 - p), ridge, penalty), grad)
        slope = float(grad @ step)
        t = 1.0
        while True:
            cand_t, cand_b = theta - t * step[:n], beta - t * step[n:]
            cand_eta = _eta(rows, cand_t, cand_b)
            new_value = _objective(rows, cand_eta, cand_t, cand_b, ridge, penalty)
            if new_value <= value - 1e-4 * t * slope or t < 1e-10:
                break
            t *= 0.5
        theta, beta, value, eta = cand_t, cand_b, new_value, cand_eta
        size = np.max(np.abs(t * step), initial=0.0)
        # A full Newton step converges quadratically: after a full step of size s the
        # error is ~s², so a full step below sqrt(tol) already leaves one below tol.
        if size < tol or (t == 1.0 and size < np.sqrt(tol)):
            break
    return ContextualFit(theta - theta.mean(), beta, it)


def sandwich(
    rows: Rows, n: int, fit: ContextualFit, ridge: float = RIDGE, penalty: float = FEATURE_PENALTY
) -> np.ndarray:
    """Robust covariance of (θ, β): ``H⁻¹ G H⁻¹`` (Huber 1967; White 1980).

    ``H`` is :func:`information` (the penalties' curvature included) and ``G`` the
    covariance of one battle's score summed over battles: a row of ``c`` merged
    battles of weight ``u`` each adds ``c·u²·(y - p)²·z zᵀ`` with ``z = (e_a - e_b, x)``,
    centred on the mean score (which the penalties make nonzero). Unlike ``H⁻¹``
    alone it stays right when the model is misspecified (a tie scored ½ is not a
    BT outcome; raters differ). Its null direction ``1`` (θ all up by one) has
    zero variance, so it is already the covariance of the centred θ.
    """
    theta, beta = fit.theta, fit.beta
    p = _probability(_eta(rows, theta, beta))
    h = _hessian(rows, n, rows.w * p * (1.0 - p), ridge, penalty)
    battles = rows.w / rows.unit
    g2 = battles * (rows.unit * (rows.y - p)) ** 2
    g = _hessian(rows, n, g2, 0.0, 0.0)
    total = float(battles.sum())
    mean_score = np.concatenate([2.0 * ridge * theta, penalty * rows.w.sum() * beta]) / total
    g -= total * np.outer(mean_score, mean_score)
    inverse = np.linalg.inv(h)
    return inverse @ g @ inverse


def linear_interval(
    values: np.ndarray, covariance: np.ndarray, level: float
) -> tuple[np.ndarray, np.ndarray]:
    """Normal interval ``values ± z·sqrt(diag(covariance))`` at two-sided ``level``."""
    from scipy.stats import norm

    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a coverage in (0, 1), e.g. 0.95.")
    z = float(norm.ppf(0.5 + level / 2.0))
    half = z * np.sqrt(np.maximum(np.diag(covariance), 0.0))
    return values - half, values + half


#: Bootstrap rounds are fitted to this step size in θ and β (as the plain bootstrap).
BOOTSTRAP_TOL = 1e-6


def contextual_bootstrap(
    rows: Rows,
    n: int,
    rng: np.random.Generator,
    rounds: int,
    fit: ContextualFit,
    ridge: float = RIDGE,
    penalty: float = FEATURE_PENALTY,
    workers: int | None = None,
    chunk: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """(θ, β) of ``rounds`` resamples of the battles: arrays (rounds, n) and (rounds, k).

    A round resamples the battles with replacement (a multinomial draw over the rows,
    each row holding ``w / unit`` battles) and keeps each battle's weight; it is
    fitted by chord steps from ``fit`` with the full-data Hessian, falling back to
    :func:`contextual_fit` when 40 steps do not reach :data:`BOOTSTRAP_TOL`. Chunks
    of rounds draw from their own child generators, so results depend on the seed
    only, not on ``workers``.
    """
    from arena.stats.resample import chunked_rounds, multinomial_draws

    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    battles = np.rint(rows.w / rows.unit).astype(np.int64)
    inverse = np.linalg.inv(information(rows, n, fit.theta, fit.beta, ridge, penalty))
    start = np.concatenate([fit.theta, fit.beta])
    code = rows.a * n + rows.b

    def run(child: np.random.Generator, size: int) -> np.ndarray:
        draws = multinomial_draws(child, battles, size)
        out = np.empty((size, n + rows.n_features))
        for r, drawn in enumerate(draws):
            keep = np.flatnonzero(drawn)  # a round holds ~63% of the rows
            out[r] = _chord(
                _Round(code[keep], rows.y[keep], rows.unit[keep] * drawn[keep], rows.x[keep]),
                n,
                start,
                inverse,
                ridge,
                penalty,
            )
            if not np.all(np.isfinite(out[r])):  # chord did not settle: a damped refit
                weighted = Rows(rows.a, rows.b, rows.y, rows.unit * drawn, rows.x, rows.unit)
                fit_r = contextual_fit(weighted, n, ridge, penalty, initial=(start[:n], start[n:]))
                out[r] = np.concatenate([fit_r.theta, fit_r.beta])
        return out

    samples = np.concatenate(chunked_rounds(rng, rounds, chunk, workers, run))
    theta = samples[:, :n]
    return theta - theta.mean(axis=1, keepdims=True), samples[:, n:]


@dataclass(frozen=True)
class _Round:
    """One bootstrap round's drawn rows: ordered-pair code a·n + b, outcome, weight, x."""

    code: np.ndarray
    y: np.ndarray
    w: np.ndarray
    x: np.ndarray


def _chord(
    rnd: _Round, n: int, start: np.ndarray, inverse: np.ndarray, ridge: float, penalty: float
) -> np.ndarray:
    """Chord steps on one round (the gradient of :func:`objective` on its rows, stepped
    with the full-data inverse Hessian); NaNs if 40 steps do not reach the tolerance."""
    params = start.copy()
    total = float(rnd.w.sum())
    k = rnd.x.shape[1]
    grad = np.empty(n + k)
    for _ in range(40):
        theta, beta = params[:n], params[n:]
        eta = (theta[:, None] - theta[None, :]).ravel()[rnd.code]
        if k:
            eta += rnd.x @ beta
        r = rnd.w * (rnd.y - _probability(eta))
        sums = np.bincount(rnd.code, weights=r, minlength=n * n).reshape(n, n)
        grad[:n] = sums.sum(axis=0) - sums.sum(axis=1) + 2.0 * ridge * theta
        if k:
            grad[n:] = penalty * total * beta - rnd.x.T @ r
        step = inverse @ grad
        params -= step
        if np.max(np.abs(step), initial=0.0) < BOOTSTRAP_TOL:
            return params
    return np.full_like(params, np.nan)
