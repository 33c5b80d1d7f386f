"""Davidson's model with ties against an independent likelihood (scipy), finite and
complex-step differences, simulated truths, BT in the limit ν -> 0, and relabelling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from arena.stats import davidson
from arena.stats.bradley_terry import RIDGE, bt_fit, bt_information
from arena.stats.davidson import (
    DavidsonFit,
    davidson_bootstrap,
    davidson_fit,
    davidson_gradient,
    davidson_information,
    davidson_objective,
    davidson_sandwich,
    davidson_win_probability,
    tie_probability,
    tie_rates,
)
from arena.stats.pairs import PairCounts, pair_index
from arena.stats.resample import _Cells, multinomial_draws


def simulate(rng, theta, nu, per_pair, both_bad=0.3, skip=()):
    """Counts from Davidson's model: ``per_pair`` votes on every pair but those in
    ``skip``; a share ``both_bad`` of the ties is recorded as both-bad."""
    n = len(theta)
    i, j = pair_index(n)
    pi, pj = np.exp(theta[i]), np.exp(theta[j])
    tie = nu * np.sqrt(pi * pj)
    p = np.stack([pi, pj, tie], axis=1) / (pi + pj + tie)[:, None]
    votes = np.full(i.size, per_pair)
    for a, b in skip:
        votes[(i == a) & (j == b)] = 0
    cells = rng.multinomial(votes, p)
    bad = rng.binomial(cells[:, 2], both_bad)
    wins, ties, bb = (np.zeros((n, n), np.int64) for _ in range(3))
    wins[i, j], wins[j, i] = cells[:, 0], cells[:, 1]
    ties[i, j] = ties[j, i] = cells[:, 2] - bad
    bb[i, j] = bb[j, i] = bad
    return PairCounts(wins, ties, bb)


def reference_nll(x, counts, ridge=RIDGE):
    """The penalised Davidson likelihood written from the definition, π = exp(θ), ν =
    exp(λ), over the full matrices; complex-safe for complex-step derivatives."""
    n = counts.n_items
    pi = np.exp(x[:n])
    nu = np.exp(x[n])
    p, q = pi[:, None], pi[None, :]
    d = p + q + nu * np.sqrt(p * q)
    tied = counts.ties + counts.both_bad  # symmetric: each tie appears twice
    nll = -np.sum(counts.wins * np.log(p / d)) - 0.5 * np.sum(
        tied * np.log(nu * np.sqrt(p * q) / d)
    )
    return nll + ridge * np.sum(x[:n] ** 2)


def complex_step_gradient(f, x, h=1e-30):
    out = np.empty(x.size)
    for k in range(x.size):
        z = x.astype(complex)
        z[k] += 1j * h
        out[k] = f(z).imag / h
    return out


@pytest.fixture(scope="module")
def arena8():
    rng = np.random.default_rng(11)
    theta = np.array([-1.2, -0.8, -0.3, 0.0, 0.1, 0.4, 0.7, 1.1])
    theta -= theta.mean()
    return theta, simulate(rng, theta, 0.6, 1500)


def test_recovers_simulated_theta_and_nu(arena8):
    theta, counts = arena8
    fit = davidson_fit(counts)
    se = np.sqrt(np.diag(davidson_sandwich(fit, counts)))
    assert abs(fit.theta.sum()) < 1e-9
    assert np.all(np.abs(fit.theta - theta) < 4 * se[:-1]), (fit.theta - theta) / se[:-1]
    assert abs(fit.log_nu - np.log(0.6)) < 4 * se[-1]
    assert abs(fit.nu - 0.6) < 0.05
    assert fit.nu == pytest.approx(np.exp(fit.log_nu), rel=1e-14)


def test_fit_equals_scipy_minimize_of_the_same_likelihood():
    rng = np.random.default_rng(3)
    theta = rng.normal(0.0, 0.8, 6)
    counts = simulate(rng, theta, 0.35, 40, skip=[(0, 5), (1, 2)])
    fit = davidson_fit(counts)

    def f(x):
        return reference_nll(x, counts)

    res = minimize(
        f,
        np.zeros(7),
        jac=lambda x: complex_step_gradient(f, x),
        method="BFGS",
        options={"gtol": 1e-11, "maxiter": 1000},
    )
    assert np.max(np.abs(res.x[:6] - fit.theta)) < 1e-6
    assert abs(res.x[6] - fit.log_nu) < 1e-6
    assert f(np.append(fit.theta, fit.log_nu)) <= res.fun + 1e-9


def test_objective_gradient_hessian_match_independent_derivatives(arena8):
    _, counts = arena8
    counts = PairCounts(counts.wins // 50, counts.ties // 50, counts.both_bad // 50)
    rng = np.random.default_rng(5)
    x = np.append(rng.normal(0.0, 1.0, 8), -0.4)
    theta, lam = x[:8], x[8]
    assert davidson_objective(theta, lam, counts) == pytest.approx(
        reference_nll(x, counts), rel=1e-12
    )
    reference = complex_step_gradient(lambda z: reference_nll(z, counts), x)
    np.testing.assert_allclose(davidson_gradient(theta, lam, counts), reference, atol=1e-9)
    h = 1e-6
    numeric = np.empty((9, 9))
    for k in range(9):
        e = np.zeros(9)
        e[k] = h
        up = davidson_gradient((x + e)[:8], (x + e)[8], counts)
        down = davidson_gradient((x - e)[:8], (x - e)[8], counts)
        numeric[:, k] = (up - down) / (2 * h)
    hessian = davidson_information(theta, lam, counts)
    np.testing.assert_allclose(hessian, hessian.T, atol=0)
    np.testing.assert_allclose(hessian, numeric, atol=1e-6)
    # At ν = 0 the θ block is BT's information (which depends on the battles only).
    at_zero = davidson_information(theta, -np.inf, counts)
    np.testing.assert_allclose(at_zero[:8, :8], bt_information(theta, counts.battles), atol=1e-12)
    assert np.all(at_zero[8] == 0)


def test_relabelling_permutes_theta_and_pooling_ties_changes_nothing(arena8):
    _, counts = arena8
    fit = davidson_fit(counts)
    perm = np.random.default_rng(2).permutation(8)
    relabelled = PairCounts(
        counts.wins[np.ix_(perm, perm)],
        counts.ties[np.ix_(perm, perm)],
        counts.both_bad[np.ix_(perm, perm)],
    )
    other = davidson_fit(relabelled)
    np.testing.assert_allclose(other.theta, fit.theta[perm], atol=1e-12)
    assert other.nu == pytest.approx(fit.nu, rel=1e-12)
    # A both-bad vote is a tie: moving every both-bad vote to ties gives the same fit.
    zero = np.zeros_like(counts.ties)
    pooled = davidson_fit(PairCounts(counts.wins, counts.ties + counts.both_bad, zero))
    np.testing.assert_allclose(pooled.theta, fit.theta, atol=1e-12)
    assert pooled.nu == pytest.approx(fit.nu, rel=1e-12)


def test_no_ties_is_bradley_terry_and_few_ties_approach_it():
    rng = np.random.default_rng(4)
    theta = np.linspace(-1.0, 1.0, 5)
    counts = simulate(rng, theta, 0.0, 60, skip=[(0, 4)])
    assert counts.ties.sum() == counts.both_bad.sum() == 0
    fit = davidson_fit(counts)
    assert fit.nu == 0.0 and fit.log_nu == -np.inf
    np.testing.assert_array_equal(fit.theta, bt_fit(counts.win_matrix("drop"), ridge=RIDGE))
    assert tie_rates(fit, counts) == (0.0, 0.0)
    assert np.all(np.nan_to_num(tie_probability(fit.theta, fit.nu)) == 0)
    cov = davidson_sandwich(fit, counts)
    assert np.all(np.isnan(cov[5])) and np.all(np.isnan(cov[:, 5]))
    assert np.all(np.isfinite(cov[:5, :5])) and np.all(np.diag(cov)[:5] > 0)
    # One tie in 540 votes: ν is small and the fit is close to BT (the limit is continuous).
    ties = np.zeros_like(counts.ties)
    ties[1, 2] = ties[2, 1] = 1
    near = davidson_fit(PairCounts(counts.wins, ties, counts.both_bad))
    assert 0 < near.nu < 0.02
    assert np.max(np.abs(near.theta - fit.theta)) < 0.02
    assert np.max(np.abs(near.theta - fit.theta)) > 0


def test_only_ties_gives_infinite_nu_and_zero_theta():
    n = 3
    ties = np.ones((n, n), np.int64) - np.eye(n, dtype=np.int64)
    counts = PairCounts(np.zeros((n, n), np.int64), ties, np.zeros((n, n), np.int64))
    fit = davidson_fit(counts)
    assert fit.nu == np.inf and np.all(fit.theta == 0)
    assert tie_rates(fit, counts) == (1.0, 1.0)
    theta, nu = davidson_bootstrap(counts, np.random.default_rng(0), 5, fit=fit)
    assert theta.shape == (5, 3) and np.all(theta == 0) and np.all(nu == np.inf)


def test_predicted_ties_equal_observed_ties_and_probabilities_add_up(arena8):
    _, counts = arena8
    fit = davidson_fit(counts)
    predicted, observed = tie_rates(fit, counts)
    tied = (counts.ties + counts.both_bad).sum() / 2
    assert observed == tied / counts.total
    assert abs(predicted - observed) < 1e-8
    win = davidson_win_probability(fit.theta, fit.nu)
    tie = tie_probability(fit.theta, fit.nu)
    off = ~np.eye(8, dtype=bool)
    assert np.all(np.isnan(win[~off])) and np.all(np.isnan(tie[~off]))
    np.testing.assert_allclose((win + win.T + tie)[off], 1.0, atol=1e-14)
    np.testing.assert_allclose(tie, tie.T, atol=1e-15)
    # Decisive votes follow BT; equal models tie with ν / (2 + ν).
    bt = 1.0 / (1.0 + np.exp(-(fit.theta[:, None] - fit.theta[None, :])))
    np.testing.assert_allclose((win / (win + win.T))[off], bt[off], atol=1e-13)
    assert tie_probability(np.zeros(2), 0.6)[0, 1] == pytest.approx(0.6 / 2.6, rel=1e-14)


def test_bootstrap_rounds_equal_single_fits_of_the_same_draws():
    """The vectorised chord rounds (and their refits) against one davidson_fit per
    round on the multinomial draws of resample.py's sampler under the same seed."""
    rng = np.random.default_rng(8)
    theta = np.array([-2.0, -0.5, 0.0, 0.6, 2.2])
    counts = simulate(rng, theta, 0.05, 12)  # few ties: some rounds draw none
    fit = davidson_fit(counts)
    rounds = 60
    samples, nus = davidson_bootstrap(counts, np.random.default_rng(21), rounds, fit=fit)
    cells = _Cells.of(counts)
    draws = multinomial_draws(np.random.default_rng(21), cells.counts.T.ravel(), rounds)
    assert np.any(nus == 0)  # the refit path ran
    for r in range(rounds):
        a, b, c = draws[r].reshape(3, -1)
        w, t = np.zeros((5, 5)), np.zeros((5, 5))
        w[cells.first, cells.second], w[cells.second, cells.first] = a, b
        t[cells.first, cells.second] = t[cells.second, cells.first] = c
        one = davidson_fit(PairCounts(w, t, np.zeros((5, 5))))
        np.testing.assert_allclose(samples[r], one.theta, atol=1e-5)
        assert nus[r] == pytest.approx(one.nu, rel=1e-5, abs=1e-12)


def test_bootstrap_is_seeded_and_its_spread_matches_the_sandwich(arena8, monkeypatch):
    _, counts = arena8
    fit = davidson_fit(counts)
    refits, refit = [], davidson._fit
    monkeypatch.setattr(davidson, "_fit", lambda *a: refits.append(a) or refit(*a))
    a_theta, a_nu = davidson_bootstrap(counts, np.random.default_rng(5), 1000, fit=fit)
    assert not refits  # well-sampled rounds converge in the vectorised chord steps
    monkeypatch.undo()
    b_theta, b_nu = davidson_bootstrap(counts, np.random.default_rng(5), 1000)
    np.testing.assert_array_equal(a_theta, b_theta)
    np.testing.assert_array_equal(a_nu, b_nu)
    c_theta, _ = davidson_bootstrap(counts, np.random.default_rng(6), 1000, fit=fit)
    assert not np.array_equal(a_theta, c_theta)
    assert a_theta.shape == (1000, 8) and a_nu.shape == (1000,)
    np.testing.assert_allclose(a_theta.sum(axis=1), 0.0, atol=1e-12)
    se = np.sqrt(np.diag(davidson_sandwich(fit, counts)))
    np.testing.assert_allclose(a_theta.std(axis=0), se[:8], rtol=0.15)
    assert np.log(a_nu).std() == pytest.approx(se[8], rel=0.15)
    assert np.max(np.abs(a_theta.mean(axis=0) - fit.theta)) < 0.3 * se[:8].min()


def test_sandwich_is_the_inverse_information_when_the_model_holds(arena8):
    _, counts = arena8
    fit = davidson_fit(counts)
    cov = davidson_sandwich(fit, counts)
    assert abs(np.ones(8) @ cov[:8, :8] @ np.ones(8)) < 1e-12  # Σθ does not move
    centre = np.eye(9)
    centre[:8, :8] -= 1.0 / 8
    inverse = centre @ np.linalg.inv(davidson_information(fit.theta, fit.log_nu, counts))
    inverse = inverse @ centre.T
    np.testing.assert_allclose(np.sqrt(np.diag(cov)), np.sqrt(np.diag(inverse)), rtol=0.1)


def test_bad_input_names_it():
    good = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match=r"counts\.wins must be a square matrix"):
        davidson_fit(PairCounts(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"counts\.ties has shape"):
        davidson_fit(PairCounts(good, np.zeros((2, 2)), good))
    negative = good.copy()
    negative[0, 1] = -1
    with pytest.raises(ValueError, match=r"counts\.wins must be finite and non-negative"):
        davidson_fit(PairCounts(negative, good, good))
    asymmetric = good.copy()
    asymmetric[0, 1] = 2
    with pytest.raises(ValueError, match=r"counts\.both_bad must be symmetric"):
        davidson_fit(PairCounts(good, good, asymmetric))
    wins = np.array([[0, 1.5, 0], [1, 0, 0], [0, 0, 0]])
    ties = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="whole numbers"):
        davidson_bootstrap(PairCounts(wins, ties, good), np.random.default_rng(0), 10)
    with pytest.raises(ValueError, match="rounds=0"):
        davidson_bootstrap(PairCounts(good, ties, good), np.random.default_rng(0), 0)
    mixed = PairCounts(np.array([[0, 2, 0], [1, 0, 0], [0, 0, 0]]), ties, good)
    wrong = DavidsonFit(np.zeros(3), 0.0, -np.inf)
    with pytest.raises(ValueError, match=r"fit\.nu=0\.0"):
        davidson_bootstrap(mixed, np.random.default_rng(0), 10, fit=wrong)
    with pytest.raises(ValueError, match=r"fit\.theta has shape \(2,\)"):
        davidson_bootstrap(mixed, np.random.default_rng(0), 10, fit=DavidsonFit(np.zeros(2), 1, 0))
    with pytest.raises(ValueError, match="nu=-1"):
        tie_probability(np.zeros(3), -1.0)
    assert isinstance(davidson_fit(PairCounts(good, good, good)), DavidsonFit)


def test_sandwich_meat_is_the_sum_of_per_vote_scores():
    """G from scores written out per vote (complex-step gradients of −log P(outcome) from
    the definition), then H⁻¹ G H⁻¹ by plain inversion on a small, well-conditioned case."""
    rng = np.random.default_rng(9)
    counts = simulate(rng, np.array([-0.5, 0.0, 0.3, 0.6]), 0.8, 15, skip=[(0, 3)])
    fit = davidson_fit(counts, ridge=0.5)
    x = np.append(fit.theta, fit.log_nu)

    def minus_log_p(z, i, j, outcome):
        pi, pj, nu = np.exp(z[i]), np.exp(z[j]), np.exp(z[4])
        tie = nu * np.sqrt(pi * pj)
        return -np.log((pi, pj, tie)[outcome] / (pi + pj + tie))

    meat = np.zeros((5, 5))
    tied = counts.ties + counts.both_bad
    for i, j in zip(*pair_index(4), strict=True):
        for outcome, k in enumerate((counts.wins[i, j], counts.wins[j, i], tied[i, j])):
            s = complex_step_gradient(lambda z: minus_log_p(z, i, j, outcome), x)  # noqa: B023
            meat += k * np.outer(s, s)
    inv = np.linalg.inv(davidson_information(fit.theta, fit.log_nu, counts, ridge=0.5))
    np.testing.assert_allclose(
        davidson_sandwich(fit, counts, ridge=0.5), inv @ meat @ inv, rtol=1e-9, atol=1e-12
    )


def test_newton_converges_from_far_starts():
    """A bootstrap round's refit starts at the full-data fit, which can be far from its
    own optimum; steps that overshoot into saturated probabilities must not derail it."""
    rng = np.random.default_rng(8)
    counts = simulate(rng, np.array([-2.0, -0.5, 0.0, 0.6, 2.2]), 0.05, 12)
    fit = davidson_fit(counts)
    pairs = davidson._Pairs.of(counts)
    for start in ([0, 0, 0, 0, 0, 5.0], [0, 0, 0, 0, 0, -12.0], [6, -6, 3, -3, 0, 8.0]):
        far = davidson._fit(pairs, RIDGE, 1e-10, 200, np.array(start, dtype=float))
        np.testing.assert_allclose(far.theta, fit.theta, atol=1e-8)
        assert far.log_nu == pytest.approx(fit.log_nu, abs=1e-8)
