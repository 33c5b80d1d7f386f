"""The active pair-selection rule against brute force, and BT unbiasedness under it."""

import numpy as np
import pytest

from arena.stats import active
from arena.stats.bradley_terry import RIDGE, bt_covariance, bt_fit, bt_objective, win_probability
from arena.stats.pairs import LEFT, RIGHT, TIE, aggregate, pair_index


def _random_state(n, rng, max_count=30):
    theta = rng.normal(0, 1, n)
    counts = np.triu(rng.integers(0, max_count, (n, n)), 1)
    return theta, counts + counts.T


def _brute_force_gain(counts, theta, a, b):
    """Re-invert the information matrix with one more (a, b) vote; weighted variance drop."""
    cov = bt_covariance(theta, counts)
    weights = active.order_uncertainty_weights(theta, cov)
    more = counts.astype(float).copy()
    more[a, b] += 1
    more[b, a] += 1
    cov_after = bt_covariance(theta, more)
    before = active.difference_variance(cov)
    after = active.difference_variance(cov_after)
    return 0.5 * np.sum(weights * (before - after))


def test_expected_gain_equals_the_brute_force_update():
    rng = np.random.default_rng(0)
    theta, counts = _random_state(7, rng)
    gain = active.expected_gain(counts, theta)
    for a, b in [(0, 1), (2, 5), (3, 6), (1, 4)]:
        # uᵀLu sums each unordered pair once, as the brute force does.
        assert gain[a, b] == pytest.approx(_brute_force_gain(counts, theta, a, b), rel=1e-6)
    assert np.allclose(gain, gain.T) and np.all(np.diag(gain) == 0)


def test_close_uncertain_pairs_gain_more_than_settled_ones():
    theta = np.array([0.0, 0.05, 3.0])
    counts = np.full((3, 3), 200.0)
    counts[0, 1] = counts[1, 0] = 20.0
    np.fill_diagonal(counts, 0)
    gain = active.expected_gain(counts, theta)
    assert gain[0, 1] > 5 * gain[0, 2]


def test_pair_probabilities_keep_a_floor_and_favour_new_pairs():
    rng = np.random.default_rng(1)
    theta, counts = _random_state(6, rng, max_count=100)
    counts = counts + 50 * (1 - np.eye(6, dtype=int))
    probs = active.pair_probabilities(counts, theta, floor=0.1)
    assert probs.sum() == pytest.approx(1.0)
    assert probs.min() >= 0.1 / 15 - 1e-12
    counts[0, :] = counts[:, 0] = 0
    probs = active.pair_probabilities(counts, theta, floor=0.1, min_count=10)
    rows, cols = pair_index(6)
    new = (rows == 0) | (cols == 0)
    assert probs[new].sum() == pytest.approx(0.1 * new.mean() + 0.9)


def test_unavailable_pairs_are_never_sampled():
    theta = np.zeros(4)
    counts = np.zeros((4, 4))
    available = np.ones((4, 4), bool)
    available[0, 3] = available[3, 0] = False
    probs = active.pair_probabilities(counts, theta, available=available)
    pairs = active.sample_pairs(probs, 4, 2000, np.random.default_rng(2))
    assert not any((a, b) == (0, 3) for a, b in pairs)
    with pytest.raises(ValueError, match="no pair"):
        active.pair_probabilities(counts, theta, available=np.zeros((4, 4), bool))


def _bt_fit(wins, iters=2000):
    """Zermelo's MM iteration for BT (an independent fitter for the test)."""
    n = len(wins)
    p = np.ones(n)
    games = wins + wins.T
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        p = (wins.sum(axis=1) + 1e-9) / denom
        p /= np.exp(np.log(p).mean())
    return np.log(p)


def test_bt_stays_unbiased_under_active_sampling():
    """Over repeated simulations the BT estimate under the active design centres on the truth."""
    n, reps, votes, batch = 6, 30, 1500, 150
    truth = np.linspace(-1.2, 1.2, n)
    errors = []
    for rep in range(reps):
        rng = np.random.default_rng(100 + rep)
        wins = np.zeros((n, n))
        theta = np.zeros(n)
        for _ in range(votes // batch):
            counts = wins + wins.T
            probs = active.pair_probabilities(counts, theta, floor=0.1)
            for a, b in active.sample_pairs(probs, n, batch, rng):
                if rng.random() < 1 / (1 + np.exp(truth[b] - truth[a])):
                    wins[a, b] += 1
                else:
                    wins[b, a] += 1
            theta = _bt_fit(wins, iters=200)
        errors.append(_bt_fit(wins) - truth)
    errors = np.array(errors)
    mean, se = errors.mean(axis=0), errors.std(axis=0, ddof=1) / np.sqrt(reps)
    assert np.all(np.abs(mean) < 4 * se + 0.02), (mean, se)


def test_allocation_spreads_a_horizon_with_diminishing_returns():
    q = np.array([0.25, 0.25, 0.25, 0.0])
    m = np.array([4.0, 1.0, 0.0, 9.0])
    v = np.array([0.5, 0.5, 0.5, 0.5])
    one = active.allocate(q, m, v, horizon=1.0)
    assert one[0] > 0 and one[1:].sum() == pytest.approx(0.0, abs=1e-9)
    many = active.allocate(q, m, v, horizon=400.0)
    assert many.sum() == pytest.approx(400.0, rel=1e-6)
    assert many[0] > many[1] > 0 and many[2] == 0 and many[3] == 0
    # Equal marginal gains q m / (1 + k q v)^2 at the optimum for the pairs that get votes.
    marginal = q[:2] * m[:2] / (1 + many[:2] * q[:2] * v[:2]) ** 2
    assert marginal[0] == pytest.approx(marginal[1], rel=1e-6)


def test_a_new_model_draws_votes_through_the_gain_alone():
    rng = np.random.default_rng(3)
    theta = np.sort(rng.normal(0, 0.5, 8))
    counts = np.full((8, 8), 300.0)
    counts[7, :] = counts[:, 7] = 0
    np.fill_diagonal(counts, 0)
    probs = active.pair_probabilities(counts, theta, floor=0.1, min_count=0)
    rows, cols = pair_index(8)
    new = (rows == 7) | (cols == 7)
    assert probs[new].sum() > 0.8


def test_votes_to_separate_matches_re_inverting_the_information():
    rng = np.random.default_rng(4)
    theta, counts = _random_state(5, rng, max_count=20)
    a, b = 1, 3
    theta[a], theta[b] = 0.3, 0.1
    k = active.votes_to_separate(counts, theta, a, b)
    assert 0 < k < np.inf

    def separated_after(extra):
        more = counts.astype(float).copy()
        more[a, b] += extra
        more[b, a] += extra
        cov = bt_covariance(theta, more)
        sd = np.sqrt(cov[a, a] + cov[b, b] - 2 * cov[a, b])
        return abs(theta[a] - theta[b]) >= 1.959963984540054 * sd

    assert separated_after(k) and not separated_after(k - 1)


def test_votes_to_separate_edge_cases():
    theta = np.array([0.0, 0.0, 2.0])
    counts = np.full((3, 3), 1000.0)
    np.fill_diagonal(counts, 0)
    assert active.votes_to_separate(counts, theta, 0, 1) == np.inf
    assert active.votes_to_separate(counts, theta, 0, 2) == 0
    with pytest.raises(ValueError, match="itself"):
        active.votes_to_separate(counts, theta, 1, 1)


def test_votes_go_to_the_pairs_adjacent_in_the_current_ranking():
    """Equal counts, evenly spaced (shuffled) ratings: neighbours in rank get the focus mass."""
    n = 8
    theta = np.random.default_rng(5).permutation(np.linspace(-0.3, 0.3, n))
    counts = np.full((n, n), 100.0)
    np.fill_diagonal(counts, 0)
    probs = active.pair_probabilities(counts, theta, floor=0.1, horizon=200)
    rows, cols = pair_index(n)
    rank = np.argsort(np.argsort(-theta))
    adjacent = np.abs(rank[rows] - rank[cols]) == 1
    # 7 of 28 pairs are neighbours; uniform sampling would give them a quarter of the votes.
    assert probs[adjacent].sum() > 0.85
    assert probs.min() == pytest.approx(0.1 / len(rows))  # the floor still reaches every pair


def test_the_one_doubtful_close_pair_takes_the_next_votes():
    theta = np.array([1.5, 1.0, 0.5, 0.48, 0.0, -0.5])
    counts = np.full((6, 6), 200.0)
    np.fill_diagonal(counts, 0)
    counts[2, 3] = counts[3, 2] = 20.0
    probs = active.pair_probabilities(counts, theta, floor=0.1, horizon=100)
    rows, cols = pair_index(6)
    close = (rows == 2) & (cols == 3)
    assert probs[close][0] == pytest.approx(0.9 + 0.1 / 15)
    assert np.allclose(probs[~close], 0.1 / 15)


def _numerical_hessian(f, x, h=1e-3):
    """Central second differences of f at x from function values only."""
    n = len(x)
    hess = np.zeros((n, n))
    step = np.eye(n) * h
    for i in range(n):
        for j in range(i, n):
            hess[i, j] = hess[j, i] = (
                f(x + step[i] + step[j])
                - f(x + step[i] - step[j])
                - f(x - step[i] + step[j])
                + f(x - step[i] - step[j])
            ) / (4 * h * h)
    return hess


def test_active_covariance_is_the_inverse_hessian_of_the_fit():
    """The pair-choice rule works with the covariance of the ratings fit: the inverse
    Hessian of the penalised objective bt_fit minimises (ridge · Σθ² has curvature
    2 · ridge). Model 5 never played, so its variance is the prior's alone, where a
    ridge off by a factor shows at once."""
    rng = np.random.default_rng(7)
    truth = np.array([0.8, 0.3, 0.0, -0.4, -0.9, 0.0])
    played = 5
    left = rng.integers(0, played, 600)
    right = (left + rng.integers(1, played, 600)) % played
    p = 1 / (1 + np.exp(truth[right] - truth[left]))
    u = rng.random(600)
    outcome = np.where(u < 0.1, TIE, np.where(u < 0.1 + 0.9 * p, LEFT, RIGHT))
    counts = aggregate(6, left, right, outcome)
    wins = counts.win_matrix("split")
    theta = bt_fit(wins)
    battles = counts.battles.astype(float)  # what active_pairing hands to the rule

    hessian = _numerical_hessian(lambda t: bt_objective(t, wins), theta)
    assert hessian[5, 5] == pytest.approx(2 * RIDGE, rel=1e-4)
    expected = np.linalg.inv(hessian)
    assert np.allclose(bt_covariance(theta, battles), expected, rtol=1e-4, atol=1e-8)

    # The rule's own numbers, recomputed from the numerical covariance.
    before = active.difference_variance(expected)
    weights = active.order_uncertainty_weights(theta, expected)
    gain = active.expected_gain(battles, theta)
    p_win = win_probability(theta)
    q = p_win * (1 - p_win)
    for a, b in [(0, 1), (2, 3), (1, 5), (4, 5)]:
        x = np.zeros(6)
        x[a], x[b] = 1.0, -1.0
        after = active.difference_variance(np.linalg.inv(hessian + q[a, b] * np.outer(x, x)))
        assert gain[a, b] == pytest.approx(0.5 * np.sum(weights * (before - after)), rel=1e-4)
    v = expected[1, 1] + expected[5, 5] - 2 * expected[1, 5]
    z2 = 1.959963984540054**2
    need = np.ceil((v * z2 / (theta[1] - theta[5]) ** 2 - 1) / (q[1, 5] * v))
    assert active.votes_to_separate(battles, theta, 1, 5) == need
