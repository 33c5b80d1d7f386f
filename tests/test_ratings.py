"""Ratings against independent references: choix, a plain Elo loop, known truths."""

from __future__ import annotations

import math

import choix
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from arena.stats.bradley_terry import RIDGE, bt_fit, bt_fit_batch, predicted_win_rate
from arena.stats.elo import THETA_TO_ELO, online_elo, to_elo
from arena.stats.pairs import BOTH_BAD, LEFT, OUTCOMES, RIGHT, TIE, aggregate, encode_outcomes
from arena.stats.ratings import (
    both_bad_rate,
    compute_ratings,
    observed_win_rate,
    rank_upper_bound,
    votes_per_model,
    win_rate,
)
from arena.stats.resample import bootstrap_bt, multinomial_draws, percentile_interval, poisson_draws


def simulate_votes(rng, theta, n_votes, tie_scale=0.4, both_bad=0.3):
    """Votes from BT strengths ``theta`` with ties whose split keeps E[score] = σ(Δ).

    A tie happens with probability ``tie_scale · p(1-p)`` (10% for an even pair);
    otherwise the left model wins with ``(p - t/2) / (1 - t)``. So counting a tie as
    half a win each way is an unbiased estimating equation for θ. A share
    ``both_bad`` of the ties is recorded as both-bad.
    """
    n = len(theta)
    left = rng.integers(0, n, n_votes)
    right = (left + rng.integers(1, n, n_votes)) % n
    p = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right])))
    t = tie_scale * p * (1.0 - p)
    q = (p - t / 2.0) / (1.0 - t)
    u = rng.random(n_votes)
    outcome = np.where(
        u < t,
        np.where(rng.random(n_votes) < both_bad, BOTH_BAD, TIE),
        np.where(rng.random(n_votes) < q, LEFT, RIGHT),
    )
    return left, right, outcome


def choix_comparisons(left, right, outcome):
    """Each vote twice: a decisive vote as two wins, a tie/both-bad as one win each way."""
    data = []
    for a, b, o in zip(left.tolist(), right.tolist(), outcome.tolist(), strict=True):
        if o == LEFT:
            data += [(a, b), (a, b)]
        elif o == RIGHT:
            data += [(b, a), (b, a)]
        else:
            data += [(a, b), (b, a)]
    return data


def fit_votes(n, left, right, outcome, ties="split"):
    return bt_fit(aggregate(n, left, right, outcome).win_matrix(ties))


# -- references ------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bt_equals_choix_maximum_likelihood(seed):
    rng = np.random.default_rng(seed)
    n = 7
    theta = rng.normal(0, 1, n)
    left, right, outcome = simulate_votes(rng, theta, 400, tie_scale=1.2)
    ours = to_elo(fit_votes(n, left, right, outcome))
    # Duplicated comparisons double the log-likelihood, so choix's alpha is twice our ridge.
    ref = choix.opt_pairwise(n, choix_comparisons(left, right, outcome), alpha=2 * RIDGE, tol=1e-12)
    assert np.max(np.abs(ours - to_elo(ref))) < 0.01


def test_bt_drop_ties_equals_choix_on_decisive_votes():
    rng = np.random.default_rng(5)
    n = 6
    left, right, outcome = simulate_votes(rng, rng.normal(0, 1, n), 300, tie_scale=1.5)
    ours = to_elo(fit_votes(n, left, right, outcome, ties="drop"))
    decisive = [
        (a, b) if o == LEFT else (b, a)
        for a, b, o in zip(left.tolist(), right.tolist(), outcome.tolist(), strict=True)
        if o <= RIGHT
    ]
    ref = choix.opt_pairwise(n, decisive, alpha=RIDGE, tol=1e-12)
    assert np.max(np.abs(ours - to_elo(ref))) < 0.01


def test_batch_fit_equals_single_fits():
    rng = np.random.default_rng(3)
    n = 9
    left, right, outcome = simulate_votes(rng, rng.normal(0, 1, n), 2000)
    counts = aggregate(n, left, right, outcome)
    wins = counts.win_matrix()
    batch = np.stack([wins * rng.uniform(0.5, 1.5, wins.shape) for _ in range(6)])
    together = bt_fit_batch(batch)
    one_by_one = np.stack([bt_fit(w) for w in batch])
    assert np.max(np.abs(together - one_by_one)) * THETA_TO_ELO < 1e-4


def reference_elo(n, left, right, outcome, k=4.0, scale=400.0, base=10.0, initial=1000.0):
    rating = [initial] * n
    for a, b, o in zip(left, right, outcome, strict=True):
        expected_a = 1 / (1 + base ** ((rating[b] - rating[a]) / scale))
        score_a = {LEFT: 1.0, RIGHT: 0.0}.get(int(o), 0.5)
        rating[a] += k * (score_a - expected_a)
        rating[b] += k * ((1 - score_a) - (1 - expected_a))
    return np.array(rating)


def test_online_elo_equals_reference_loop():
    rng = np.random.default_rng(4)
    n = 10
    left, right, outcome = simulate_votes(rng, rng.normal(0, 1, n), 5000)
    ours = online_elo(n, left, right, outcome)
    assert np.allclose(ours, reference_elo(n, left, right, outcome), atol=1e-9)
    assert ours.mean() == pytest.approx(1000.0)
    assert np.allclose(
        online_elo(n, left, right, outcome, k=32, initial=1500),
        reference_elo(n, left, right, outcome, k=32, initial=1500),
    )


def test_online_elo_tie_and_both_bad_score_half():
    up = online_elo(2, [0], [1], [LEFT])
    assert up[0] == pytest.approx(1002.0) and up[1] == pytest.approx(998.0)
    for code in (TIE, BOTH_BAD):
        assert np.allclose(online_elo(2, [0], [1], [code]), [1000.0, 1000.0])


# -- aggregation, scale, matrices ------------------------------------------------------------
def test_aggregate_counts_and_matrices():
    left = [0, 0, 1, 2, 0, 1]
    right = [1, 1, 0, 0, 2, 2]
    outcome = encode_outcomes(["left", "right", "left", "tie", "both_bad", "left"])
    c = aggregate(3, left, right, outcome)
    assert c.wins.tolist() == [[0, 1, 0], [2, 0, 1], [0, 0, 0]]
    assert c.ties[0, 2] == c.ties[2, 0] == 1 and c.both_bad[0, 2] == 1
    assert c.battles.tolist() == [[0, 3, 2], [3, 0, 1], [2, 1, 0]]
    assert c.total == 6
    assert votes_per_model(c).tolist() == [5, 4, 3]
    assert both_bad_rate(c) == pytest.approx([1 / 5, 0, 1 / 3])
    assert win_rate(c) == pytest.approx([(1 + 1) / 5, 3 / 4, 1 / 3])
    obs = observed_win_rate(c)
    assert obs[0, 1] == pytest.approx(1 / 3) and obs[0, 2] == pytest.approx(0.5)
    assert np.isnan(obs[0, 0])
    assert np.allclose(obs + obs.T, np.where(np.eye(3, dtype=bool), np.nan, 1.0), equal_nan=True)


def test_encode_outcomes_rejects_unknown():
    with pytest.raises(ValueError, match="'draw' is not one of"):
        encode_outcomes(["left", "draw"])


def test_elo_scale_centre_and_anchor():
    theta = np.array([0.0, math.log(10.0), -1.0])
    centred = to_elo(theta)
    assert centred.mean() == pytest.approx(1000.0)
    assert centred[1] - centred[0] == pytest.approx(400.0)  # 10:1 odds = 400 points
    anchored = to_elo(theta, anchor=(2, 1200.0))
    assert anchored[2] == pytest.approx(1200.0)
    assert anchored[1] - anchored[0] == pytest.approx(400.0)
    ref = to_elo(theta, reference=np.array([True, True, False]))
    assert ref[:2].mean() == pytest.approx(1000.0) and ref[1] - ref[0] == pytest.approx(400.0)
    p = predicted_win_rate(theta)
    assert p[1, 0] == pytest.approx(10 / 11)


def test_rank_upper_bound():
    lower = np.array([1100.0, 1050.0, 990.0, 900.0, 1200.0])
    upper = np.array([1150.0, 1120.0, 1060.0, 980.0, 1300.0])
    ranked = np.array([True, True, True, True, False])
    rank = rank_upper_bound(lower, upper, ranked)
    # 0 and 1 overlap -> both rank 1; 2 is beaten by 0 (1100 > 1060); 3 by all three.
    assert rank[:4].tolist() == [1.0, 1.0, 2.0, 4.0]
    assert np.isnan(rank[4])


def test_disconnected_models_stay_finite():
    # Two groups never compared with each other, and a model with no votes at all.
    left, right, outcome = [0, 0, 1, 2, 3], [1, 1, 0, 3, 2], [0, 0, 0, 0, 1]
    theta = fit_votes(5, np.array(left), np.array(right), np.array(outcome))
    assert np.all(np.isfinite(theta)) and theta[4] == pytest.approx(0.0, abs=1e-9)
    assert theta[0] > theta[1]


def test_compute_ratings_in_pieces_equals_one_pass():
    rng = np.random.default_rng(21)
    n = 6
    left, right, outcome = simulate_votes(rng, rng.normal(0, 1, n), 1000)
    names = np.array([f"m{i}" for i in range(n)], dtype=object)
    labels = np.array(OUTCOMES, dtype=object)[outcome]

    def run(chunk):
        return compute_ratings(
            names[left],
            names[right],
            labels,
            np.random.default_rng(0),
            rounds=20,
            vote_chunk=chunk,
            min_votes=300,
        )

    whole, pieces = run(10**6), run(37)
    assert np.allclose(pieces.elo, online_elo(n, left, right, outcome))
    assert np.allclose(whole.elo, pieces.elo)
    assert np.array_equal(whole.counts.battles, pieces.counts.battles)
    assert np.array_equal(whole.counts.wins, pieces.counts.wins)
    assert np.allclose(whole.rating, pieces.rating) and np.allclose(whole.lower, pieces.lower)
    assert whole.names == [f"m{i}" for i in range(n)]
    assert np.array_equal(whole.provisional, whole.votes < 300)
    with pytest.raises(ValueError, match="anchor model 'zz'"):
        compute_ratings(names[left], names[right], labels, rng, anchor=("zz", 1.0))


# -- recovery and intervals ------------------------------------------------------------------
def test_recovery_and_interval_coverage():
    """20 models, 50k votes, repeated: Kendall τ ≥ 0.95 and 95% intervals cover 90–99%."""
    rng = np.random.default_rng(2024)
    n, sims = 20, 12
    covered, total = 0, 0
    for _ in range(sims):
        # 20 models ~30 Elo points apart over 600 points, in random order
        theta = rng.permutation(np.linspace(-1.7, 1.7, n)) + rng.normal(0, 0.02, n)
        left, right, outcome = simulate_votes(rng, theta, 50_000)
        fit = compute_ratings(
            [f"m{i:02d}" for i in left],
            [f"m{i:02d}" for i in right],
            outcome,
            rng=rng,
            names=[f"m{i:02d}" for i in range(n)],
            rounds=400,
        )
        truth = to_elo(theta)
        tau = stats.kendalltau(truth, fit.rating).statistic
        assert tau >= 0.95
        covered += int(np.sum((fit.lower <= truth) & (truth <= fit.upper)))
        total += n
    print(f"coverage {covered / total:.3f}")
    assert 0.90 <= covered / total <= 0.99


def test_aggregated_bootstrap_matches_naive_battle_resampling():
    """Same interval widths (bootstrap s.d. per model) within Monte-Carlo error."""
    rng = np.random.default_rng(11)
    n, n_votes, rounds = 8, 3000, 600
    left, right, outcome = simulate_votes(rng, rng.normal(0, 0.8, n), n_votes)
    counts = aggregate(n, left, right, outcome)
    fast = to_elo(bootstrap_bt(counts, np.random.default_rng(1), rounds))
    naive_rng = np.random.default_rng(2)
    naive = []
    for _ in range(rounds):  # the textbook way: resample battles, aggregate, fit
        pick = naive_rng.integers(0, n_votes, n_votes)
        naive.append(fit_votes(n, left[pick], right[pick], outcome[pick]))
    naive = to_elo(np.array(naive))
    sd_fast, sd_naive = fast.std(axis=0, ddof=1), naive.std(axis=0, ddof=1)
    # s.d. of a sample s.d. ≈ sd / sqrt(2(B-1)); of the ratio of two independent ones ≈ 1/sqrt(B-1).
    z = (sd_fast / sd_naive - 1.0) * math.sqrt(rounds - 1)
    assert np.max(np.abs(z)) < 4.0
    assert abs(np.mean(sd_fast / sd_naive) - 1.0) < 3.0 / math.sqrt((rounds - 1) * n)
    w_fast = np.subtract(*percentile_interval(fast)[::-1])
    w_naive = np.subtract(*percentile_interval(naive)[::-1])
    assert np.allclose(w_fast, w_naive, rtol=0.2)
    # the two bootstraps centre on the same point
    assert np.allclose(fast.mean(axis=0), naive.mean(axis=0), atol=3 * sd_naive.max() / 10)


@pytest.mark.parametrize("lam", [0, 1, 4, 10, 37, 1000, 250_000])
def test_poisson_sampler_matches_scipy(lam):
    x = poisson_draws(np.random.default_rng(lam), np.full(40, lam), 1000).ravel()
    if lam == 0:
        assert np.all(x == 0)
        return
    lo, hi = stats.poisson.ppf([0.001, 0.999], lam).astype(int)
    ks = np.arange(lo, hi + 1)
    observed = np.array([np.sum(x < lo), *[np.sum(x == k) for k in ks], np.sum(x > hi)])
    expected = (
        x.size
        * np.r_[
            stats.poisson.cdf(lo - 1, lam), stats.poisson.pmf(ks, lam), stats.poisson.sf(hi, lam)
        ]
    )
    keep = expected > 5
    observed = np.r_[observed[keep], observed[~keep].sum()]
    expected = np.r_[expected[keep], expected[~keep].sum()]
    keep = expected > 0
    assert stats.chisquare(observed[keep], expected[keep]).pvalue > 1e-4


def test_multinomial_sampler_has_the_multinomial_law():
    counts = np.array([0, 3, 12, 40, 200, 1000, 5])
    draws = multinomial_draws(np.random.default_rng(9), counts, 40_000)
    total, p = counts.sum(), counts / counts.sum()
    assert np.all(draws.sum(axis=1) == total) and np.all(draws[:, 0] == 0)
    se_mean = np.sqrt(total * p * (1 - p) / len(draws))
    assert np.all(np.abs(draws.mean(axis=0) - total * p) <= 4.5 * se_mean + 1e-12)
    var = draws.var(axis=0)
    assert np.allclose(var[1:], (total * p * (1 - p))[1:], rtol=0.05)
    cov = np.cov(draws[:, 4], draws[:, 5])[0, 1]
    assert cov == pytest.approx(-total * p[4] * p[5], rel=0.06)
    ref = np.random.default_rng(10).multinomial(total, p, size=40_000)
    for k in (2, 3, 6):  # two-sample test against numpy's own multinomial, per cell
        assert stats.ks_2samp(draws[:, k], ref[:, k]).pvalue > 1e-4


def test_bootstrap_with_dropped_ties_matches_naive_resampling():
    rng = np.random.default_rng(12)
    n, n_votes, rounds = 5, 2000, 500
    left, right, outcome = simulate_votes(rng, rng.normal(0, 0.8, n), n_votes, tie_scale=1.2)
    counts = aggregate(n, left, right, outcome)
    fast = bootstrap_bt(counts, np.random.default_rng(1), rounds, ties="drop")
    naive_rng = np.random.default_rng(2)
    naive = []
    for _ in range(rounds):
        pick = naive_rng.integers(0, n_votes, n_votes)
        naive.append(fit_votes(n, left[pick], right[pick], outcome[pick], ties="drop"))
    ratio = fast.std(axis=0, ddof=1) / np.array(naive).std(axis=0, ddof=1)
    assert np.max(np.abs(ratio - 1.0)) * math.sqrt(rounds - 1) < 4.0


def test_bootstrap_is_seeded_and_independent_of_workers():
    rng = np.random.default_rng(0)
    left, right, outcome = simulate_votes(rng, rng.normal(0, 1, 6), 2000)
    counts = aggregate(6, left, right, outcome)
    a = bootstrap_bt(counts, np.random.default_rng(7), 50, workers=1, chunk=8)
    b = bootstrap_bt(counts, np.random.default_rng(7), 50, workers=3, chunk=8)
    c = bootstrap_bt(counts, np.random.default_rng(8), 50, workers=1, chunk=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (50, 6)


# -- properties ------------------------------------------------------------------------------
@st.composite
def vote_sets(draw, min_items=2, max_items=6):
    n = draw(st.integers(min_items, max_items))
    size = draw(st.integers(1, 40))
    left = np.array(draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size)))
    shift = np.array(draw(st.lists(st.integers(1, n - 1), min_size=size, max_size=size)))
    outcome = np.array(draw(st.lists(st.integers(0, 3), min_size=size, max_size=size)))
    return n, left, (left + shift) % n, outcome


@settings(max_examples=60, deadline=None)
@given(vote_sets(), st.randoms(use_true_random=False))
def test_relabelling_permutes_ratings(votes, random):
    n, left, right, outcome = votes
    perm = np.array(random.sample(range(n), n))
    before = fit_votes(n, left, right, outcome)
    after = fit_votes(n, perm[left], perm[right], outcome)
    assert np.allclose(after[perm], before, atol=1e-7)
    assert np.allclose(
        online_elo(n, perm[left], perm[right], outcome)[perm],
        online_elo(n, left, right, outcome),
    )


@settings(max_examples=60, deadline=None)
@given(vote_sets())
def test_swapping_sides_changes_nothing(votes):
    n, left, right, outcome = votes
    swapped = np.select([outcome == LEFT, outcome == RIGHT], [RIGHT, LEFT], outcome)
    a = aggregate(n, left, right, outcome)
    b = aggregate(n, right, left, swapped)
    assert np.array_equal(a.wins, b.wins) and np.array_equal(a.ties, b.ties)
    assert np.array_equal(a.both_bad, b.both_bad)
    assert np.allclose(fit_votes(n, right, left, swapped), fit_votes(n, left, right, outcome))
    assert np.allclose(online_elo(n, right, left, swapped), online_elo(n, left, right, outcome))


@settings(max_examples=60, deadline=None)
@given(vote_sets(), st.randoms(use_true_random=False))
def test_vote_order_does_not_change_bt(votes, random):
    n, left, right, outcome = votes
    order = np.array(random.sample(range(len(left)), len(left)))
    assert np.allclose(
        fit_votes(n, left[order], right[order], outcome[order]),
        fit_votes(n, left, right, outcome),
        atol=1e-9,
    )


@settings(max_examples=60, deadline=None)
@given(vote_sets(min_items=2), st.integers(1, 5))
def test_model_that_wins_every_game_is_finite_and_top(votes, repeats):
    n, left, right, outcome = votes
    champ = n  # a new model that beats every other model, `repeats` times each
    others = np.repeat(np.arange(n), repeats)
    left = np.concatenate([left, others])
    right = np.concatenate([right, np.full(others.size, champ)])
    outcome = np.concatenate([outcome, np.full(others.size, RIGHT)])
    theta = fit_votes(n + 1, left, right, outcome)
    assert np.all(np.isfinite(theta))
    assert theta[champ] > np.max(theta[:n])
    assert to_elo(theta)[champ] < 1000 + 10 * THETA_TO_ELO * 10
