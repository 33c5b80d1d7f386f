"""Active pair selection: spend the next vote where it shrinks ranking uncertainty most.

Plain functions over arrays (models are indices 0..n-1), choix style.

The model. Bradley-Terry strengths θ (natural-log scale) are fitted on the
votes so far; ties count as half a win each way. The information of the fit is
the Hessian of its penalised objective,
``H = Σ_pairs N_ab p_ab (1 - p_ab) x x^T + 2·RIDGE·I`` with ``x = e_a - e_b``
(:func:`arena.stats.bradley_terry.bt_information`, the same matrix the fit steps
with); its inverse ``C`` approximates the covariance of θ, and the variance of a
rating difference is ``V_ij = C_ii + C_jj - 2 C_ij``.

What one more vote buys. A vote on pair (a, b) adds ``q x x^T`` to H with
``q = p_ab (1 - p_ab)``; by Sherman–Morrison the variance of the difference
(i, j) drops by ``q (u_i - u_j)^2 / (1 + q x^T C x)`` where ``u = C x``.

What we want to shrink. Not every variance matters equally: the ranking is
decided by the pairs whose order is still uncertain. Each pair (i, j) gets the
weight ``w_ij = φ(Δ_ij / s_ij) / s_ij`` (the density at zero of the estimated
difference, ``s_ij = sqrt(V_ij)``), large for close pairs with wide intervals,
near zero for settled ones. The expected gain of voting on (a, b) is

    gain_ab = q Σ_{i<j} w_ij (u_i - u_j)^2 / (1 + q x^T C x)
            = q (M_aa + M_bb - 2 M_ab) / (1 + q (C_aa + C_bb - 2 C_ab)),

with ``M = C L C`` and ``L`` the Laplacian of ``w`` (since Σ_{i<j} w_ij (u_i-u_j)^2
= uᵀLu); so all pairs are scored in O(n^3), once per ratings refresh.

Sampling. Pairs are drawn with probability proportional to the gain, mixed
with a uniform coverage floor (every pair keeps a chance, new models get
votes quickly) and a boost for pairs below a minimum count.

Why BT stays unbiased under this sampling. The choice of the next pair
depends only on outcomes already observed, never on the outcome being drawn.
The likelihood of the observed outcomes given the chosen pairs is then the same
product of BT terms as under any fixed design (the design is ignorable), so
the maximum-likelihood BT fit stays consistent and needs no inverse-probability
reweighting. Reweighting would matter only if the BT model were misspecified
and one wanted the uniform-design average; tests/test_active.py checks in
simulation that the active design leaves the BT estimates unbiased.
"""

from __future__ import annotations

import numpy as np

from arena.stats.bradley_terry import RIDGE, bt_covariance, win_probability
from arena.stats.pairs import pair_index


def difference_variance(cov: np.ndarray) -> np.ndarray:
    d = np.diag(cov)
    return np.maximum(d[:, None] + d[None, :] - 2.0 * cov, 1e-12)


def order_uncertainty_weights(theta: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """w_ij = φ(Δ_ij / s_ij) / s_ij: how much the order of i and j is still in doubt."""
    s = np.sqrt(difference_variance(cov))
    z = (theta[:, None] - theta[None, :]) / s
    w = np.exp(-0.5 * z * z) / (np.sqrt(2.0 * np.pi) * s)
    np.fill_diagonal(w, 0.0)
    return w


def _gain_terms(
    counts: np.ndarray, theta: np.ndarray, ridge: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pair: q = p(1-p), m = xᵀ(C L C)x (weighted variance numerator), v = xᵀCx."""
    cov = bt_covariance(theta, counts, ridge)
    w = order_uncertainty_weights(theta, cov)
    laplacian = np.diag(w.sum(axis=1)) - w
    m = cov @ laplacian @ cov
    dm, dc = np.diag(m), np.diag(cov)
    p = win_probability(theta)
    q = p * (1.0 - p)
    m_pair = np.maximum(dm[:, None] + dm[None, :] - 2.0 * m, 0.0)
    v_pair = np.maximum(dc[:, None] + dc[None, :] - 2.0 * cov, 1e-12)
    return q, m_pair, v_pair


def expected_gain(counts: np.ndarray, theta: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """gain[a, b]: expected weighted reduction of ranking uncertainty from one vote on (a, b)."""
    q, m, v = _gain_terms(counts, theta, ridge)
    gain = q * m / (1.0 + q * v)
    np.fill_diagonal(gain, 0.0)
    return gain


def allocate(q: np.ndarray, m: np.ndarray, v: np.ndarray, horizon: float) -> np.ndarray:
    """Split ``horizon`` votes over pairs so that the marginal gains are equal (water-filling).

    ``k`` votes on one pair reduce the weighted variance by ``k q m / (1 + k q v)``
    (Sherman–Morrison with ``k q x xᵀ``), whose marginal ``q m / (1 + k q v)²``
    falls with ``k``. Equal marginals λ give ``k = (sqrt(q m / λ) - 1) / (q v)``,
    clipped at 0; λ is found by bisection so that the allocations sum to ``horizon``.
    With a horizon of one vote this is the single best pair; with a long horizon the
    votes spread, as they should between two ratings refreshes. Cross-pair effects
    within the horizon are ignored (they are refreshed at the next fit).
    """
    qm = q * m
    qv = q * v
    live = (qm > 0) & (qv > 0)
    if not live.any():
        return np.zeros_like(q)
    qm_live, qv_live = qm[live], qv[live]

    def votes_at(log_lambda: float) -> np.ndarray:
        return np.maximum((np.sqrt(qm_live / np.exp(log_lambda)) - 1.0) / qv_live, 0.0)

    lo, hi = np.log(qm_live.max()) - 60.0, np.log(qm_live.max())
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if votes_at(mid).sum() > horizon:
            lo = mid
        else:
            hi = mid
    k = np.zeros_like(q)
    k[live] = votes_at(hi)
    return k


def pair_probabilities(
    counts: np.ndarray,
    theta: np.ndarray,
    available: np.ndarray | None = None,
    floor: float = 0.1,
    min_count: int = 0,
    horizon: float = 1000.0,
    ridge: float = RIDGE,
) -> np.ndarray:
    """Sampling probability of each unordered pair (upper triangle, sums to 1).

    ``floor`` of the mass is spread uniformly over available pairs (coverage);
    pairs with fewer than ``min_count`` battles share the rest first (off by
    default: a new model's wide interval already gives its pairs the largest
    gains); after that the mass follows the water-filling allocation of the
    ``horizon`` votes expected before the next ratings refresh.
    ``available[a, b]`` is False for pairs that cannot be served (no shared prompt).
    """
    n = len(theta)
    rows, cols = pair_index(n)
    ok = np.ones(len(rows), bool) if available is None else available[rows, cols].astype(bool)
    if not ok.any():
        raise ValueError("no pair of models can be served (no shared prompts with images)")
    uniform = ok / ok.sum()
    young = ok & (counts[rows, cols] < min_count)
    if young.any():
        focus = young / young.sum()
    else:
        q, m, v = (x[rows, cols] for x in _gain_terms(counts, theta, ridge))
        k = allocate(q * ok, m * ok, v, horizon * (1.0 - floor))
        focus = k / k.sum() if k.sum() > 0 else uniform
    return floor * uniform + (1.0 - floor) * focus


def sample_pairs(
    probabilities: np.ndarray, n_models: int, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``size`` pairs (rows of [a, b]) from upper-triangle ``probabilities``."""
    rows, cols = pair_index(n_models)
    picks = rng.choice(len(rows), size=size, p=probabilities)
    return np.stack([rows[picks], cols[picks]], axis=1)


def votes_to_separate(
    counts: np.ndarray,
    theta: np.ndarray,
    a: int,
    b: int,
    level: float = 0.95,
    ridge: float = RIDGE,
) -> float:
    """Further direct votes on (a, b) until their rating interval excludes a tie at ``level``.

    Assumes the current estimated difference Δ holds. After ``k`` more votes the
    variance of θ_a - θ_b is ``v / (1 + k q v)`` (Sherman–Morrison with ``k q x xᵀ``,
    ``v`` its current value), so the interval ``Δ ± z sqrt(V_k)`` excludes 0 once
    ``k ≥ (v z²/Δ² - 1) / (q v)``. Returns 0 when already separated and ``inf``
    when the estimated difference is exactly zero.
    """
    from scipy.stats import norm

    if a == b:
        raise ValueError("a model cannot be separated from itself")
    z = float(norm.ppf(0.5 + level / 2))
    cov = bt_covariance(theta, counts, ridge)
    v = cov[a, a] + cov[b, b] - 2.0 * cov[a, b]
    delta = abs(theta[a] - theta[b])
    if delta == 0:
        return float("inf")
    p = win_probability(theta)[a, b]
    q = p * (1.0 - p)
    return float(max(0.0, np.ceil((v * z * z / (delta * delta) - 1.0) / (q * v))))
