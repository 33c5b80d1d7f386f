"""The bootstrap's fast paths against plain references: the lookup-table Poisson sampler
against scipy's quantile function on the same uniforms, and the float32-then-float64
chord rounds against the exact damped Newton fit (bt_fit) of each round's draws."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from arena.stats import resample
from arena.stats.bradley_terry import RIDGE, bt_fit, bt_information, chord_fit
from arena.stats.elo import THETA_TO_ELO
from arena.stats.pairs import PairCounts, aggregate
from arena.stats.resample import (
    _BootstrapPlan,
    _Cells,
    _multinomial,
    bootstrap_bt,
    multinomial_draws,
    percentile_interval,
    poisson_draws,
)


def votes(rng, theta, n_votes, tie_rate=0.1):
    n = len(theta)
    left = rng.integers(0, n, n_votes)
    right = (left + rng.integers(1, n, n_votes)) % n
    p = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right])))
    outcome = np.where(rng.random(n_votes) < p, 0, 1)
    tied = rng.random(n_votes) < tie_rate
    outcome[tied] = np.where(rng.random(tied.sum()) < 0.3, 3, 2)
    return aggregate(n, left, right, outcome)


def newton_rounds(counts, seed, rounds, ties, chunk):
    """bt_fit of every round, on the draws bootstrap_bt makes under the same seed (one
    child generator per chunk, the same sampler); win matrices built here from the cells."""
    cells = _Cells.of(counts)
    values = cells.counts.T.ravel()
    tables = resample._PoissonTables.build(values)
    sizes = [min(chunk, rounds - s) for s in range(0, rounds, chunk)]
    out = []
    for child, size in zip(np.random.default_rng(seed).spawn(len(sizes)), sizes, strict=True):
        for draw in _multinomial(child, values, tables, size, np.int64):
            a, b, c = draw.reshape(3, -1).astype(np.float64)
            half = 0.5 * c if ties == "split" else 0.0
            w = np.zeros((counts.n_items, counts.n_items))
            w[cells.first, cells.second] = a + half
            w[cells.second, cells.first] = b + half
            out.append(bt_fit(w))
    return np.array(out)


@pytest.mark.parametrize(
    "lam",
    [
        np.array([0, 1, 2, 4, 10, 37, 1000, 250_000]),
        np.arange(600),  # many distinct means: coarser lookup tables, more CDF stepping
    ],
    ids=["spread", "many-means"],
)
def test_poisson_sampler_is_the_inverse_cdf_of_its_uniforms(lam):
    """X = min{k : U < F(k)} for the uniforms the sampler draws (row by row, cells in
    order): scipy's poisson.ppf of the same U, draw for draw."""
    size = 200
    ours = poisson_draws(np.random.default_rng(4), lam, size)
    u = np.random.default_rng(4).random((size, lam.size))
    assert np.array_equal(ours, stats.poisson.ppf(u, lam).astype(np.int64))


@pytest.mark.parametrize("ties", ["split", "drop"])
def test_bootstrap_rounds_equal_newton_fits_of_the_same_draws(ties):
    """The float32 tensors and float32-then-float64 chord steps against bt_fit per round:
    within the bootstrap's tolerance (1e-6 in θ, 0.0002 Elo), well under 0.001 Elo.
    Model 6 is weak and won 3 of its few votes, so some rounds it never wins (a θ the
    ridge makes, far below) and those rounds must come out right too."""
    rng = np.random.default_rng(3)
    theta = np.array([-1.0, -0.4, 0.0, 0.3, 0.9, 1.6, -3.5, 0.1])
    counts = votes(rng, theta, 3000)
    wins, ties_, both_bad = (x.copy() for x in (counts.wins, counts.ties, counts.both_bad))
    wins[:, 6] //= 20
    wins[6], ties_[6], ties_[:, 6], both_bad[6], both_bad[:, 6] = 0, 0, 0, 0, 0
    wins[6, 0] = 3
    few = PairCounts(wins, ties_, both_bad)
    rounds, chunk = 96, 16
    plan = _BootstrapPlan.build(few, ties, bt_fit(few.win_matrix(ties)), RIDGE)
    assert plan.dtype == np.float32  # the fast path is the one under test
    fast = bootstrap_bt(few, np.random.default_rng(11), rounds, ties, chunk=chunk, workers=2)
    exact = newton_rounds(few, 11, rounds, ties, chunk)
    assert np.max(np.abs(fast - exact)) < 3e-6
    assert np.any(exact[:, 6] < -6) and np.any(exact[:, 6] > -5)  # won none / won some


def test_float32_percentiles_equal_the_float64_path(monkeypatch):
    """The same seed with float32 tensors and with float64 ones (SINGLE_VOTES = 0): the
    95% intervals agree to well under 0.001 Elo on a 40-model board."""
    rng = np.random.default_rng(5)
    counts = votes(rng, rng.normal(0, 1.2, 40), 30_000)
    single = bootstrap_bt(counts, np.random.default_rng(2), 300)
    monkeypatch.setattr(resample, "SINGLE_VOTES", 0)
    double = bootstrap_bt(counts, np.random.default_rng(2), 300)
    gap = np.subtract(percentile_interval(single), percentile_interval(double))
    assert np.max(np.abs(gap)) * THETA_TO_ELO < 1e-3
    assert not np.array_equal(single, double)  # two paths really ran


def test_large_counts_use_float64_tensors_and_still_match_newton():
    """Above 2^22 votes float32 could round a model's half-votes: float64 tensors."""
    counts = PairCounts(
        np.array([[0, 900_000, 1_600_000], [700_000, 0, 1_000_000], [500_000, 800_000, 0]]),
        np.array([[0, 40_000, 3], [40_000, 0, 7], [3, 7, 0]]),
        np.zeros((3, 3), np.int64),
    )
    plan = _BootstrapPlan.build(counts, "split", bt_fit(counts.win_matrix()), RIDGE)
    assert plan.dtype == np.float64
    fast = bootstrap_bt(counts, np.random.default_rng(1), 6, chunk=3)
    assert np.max(np.abs(fast - newton_rounds(counts, 1, 6, "split", 3))) < 1e-7


def test_multinomial_beyond_int32_counts_keeps_the_total():
    counts = np.array([(1 << 30) - 10, 20, 7])
    draws = multinomial_draws(np.random.default_rng(0), counts, 4)
    assert draws.dtype == np.int64 and np.all(draws.sum(axis=1) == counts.sum())
    assert np.all(draws >= 0) and np.all(np.abs(draws[:, 1] - 20) < 40)


def test_float32_chord_fit_is_relabelling_invariant():
    """Permuting the models permutes θ (to the fit's tolerance) in the float32 path."""
    rng = np.random.default_rng(9)
    n, rounds = 12, 5
    counts = votes(rng, rng.normal(0, 1, n), 4000)
    wins = counts.win_matrix()
    theta = bt_fit(wins)
    inverse = np.linalg.inv(bt_information(theta, wins + wins.T))
    draws = rng.poisson(wins[None] * np.ones((rounds, 1, 1)))
    battles = (draws + draws.transpose(0, 2, 1)).astype(np.float32)
    won = draws.sum(axis=2).astype(np.float64)
    perm = rng.permutation(n)
    a, bad_a = chord_fit(battles, won, theta, inverse, RIDGE, 1e-9, 40)
    b, bad_b = chord_fit(
        battles[:, perm][:, :, perm],
        won[:, perm],
        theta[perm],
        inverse[np.ix_(perm, perm)],
        RIDGE,
        1e-9,
        40,
    )
    assert bad_a.size == bad_b.size == 0
    np.testing.assert_allclose(b, a[:, perm], atol=1e-8)
    exact = np.array([bt_fit(d) for d in draws.astype(np.float64)])
    np.testing.assert_allclose(a - a.mean(axis=1, keepdims=True), exact, atol=1e-8)
