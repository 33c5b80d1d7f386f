"""Style control, sandwich intervals and pair reweighting against LMArena's arena-rank,
simulation truth and invariances.

arena-rank runs in its own venv (``make reference-env``; tests/arena_rank_reference.py).
"""

from __future__ import annotations

import numpy as np
import pytest

from arena.stats import contextual as C
from arena.stats.bradley_terry import bt_fit
from arena.stats.elo import THETA_TO_ELO
from arena.stats.pairs import OUTCOMES, aggregate
from arena.stats.ratings import compute_ratings
from tests.arena_rank_reference import run_arena_rank

Z95 = 1.959963984540054


def simulate(seed=0, n=8, votes=12_000, k=3, tie_rate=0.1, skew=False):
    """Votes whose left image's features differ from the right's; the first feature
    truly drives wins (β = 0.5 per SD), the others do not. With ``skew`` some pairs are
    shown far more often than others (what reweighting is for)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 0.6, n)
    if skew:
        p = rng.dirichlet(np.full(n * (n - 1) // 2, 0.4))
        i, j = np.triu_indices(n, 1)
        pick = rng.choice(p.size, size=votes, p=p)
        flip = rng.random(votes) < 0.5
        left, right = np.where(flip, j[pick], i[pick]), np.where(flip, i[pick], j[pick])
    else:
        left = rng.integers(0, n, votes)
        right = (left + rng.integers(1, n, votes)) % n
    per_image = rng.normal(size=(votes, 2, k)) + 0.4 * theta[np.stack([left, right], 1)][..., None]
    features = per_image[:, 0] - per_image[:, 1]
    standard = (features - features.mean(0)) / features.std(0)
    eta = theta[left] - theta[right] + standard @ np.r_[0.5, np.zeros(k - 1)]
    outcome = np.where(rng.random(votes) < 1 / (1 + np.exp(-eta)), 0, 1)
    outcome[rng.random(votes) < tie_rate] = 2
    return theta, left, right, outcome, features


def ratings_of(left, right, outcome, n, **kw):
    names = [f"m{i:04d}" for i in range(n)]
    return compute_ratings(
        np.array(names)[left],
        np.array(names)[right],
        np.array(OUTCOMES)[outcome],
        np.random.default_rng(0),
        names=names,
        min_votes=1,
        **kw,
    )


def half_width(lower, upper):
    return (np.asarray(upper) - np.asarray(lower)) / 2


@pytest.mark.parametrize("reweight", [None, 50])
def test_plain_sandwich_equals_arena_rank(reweight):
    _, left, right, outcome, _ = simulate(seed=1, skew=reweight is not None)
    ours = ratings_of(left, right, outcome, 8, ci="sandwich", reweight=reweight)
    ref = run_arena_rank(left, right, outcome, 8, reweighted=reweight is not None)
    assert np.max(np.abs(ours.rating - ref["ratings"])) < 0.01
    width = half_width(ours.lower, ours.upper)
    assert np.max(np.abs(width / half_width(ref["lower"], ref["upper"]) - 1)) < 0.01


@pytest.mark.parametrize("reweight", [None, 50])
def test_style_control_equals_arena_rank(reweight):
    _, left, right, outcome, features = simulate(seed=2, skew=reweight is not None)
    # arena-rank centres each difference before scaling, we only scale (a difference must
    # change sign with the sides; see test_swapping_sides_moves_nothing): on differences
    # whose mean is 0 the two standardisations are the same
    features = features - features.mean(axis=0)
    names = ["colorfulness", "contrast", "sharpness"]
    ours = ratings_of(
        left, right, outcome, 8, ci="sandwich", reweight=reweight, features=features,
        feature_names=names,
    )  # fmt: skip
    ref = run_arena_rank(
        left, right, outcome, 8, features=features, reweighted=reweight is not None,
        reg=C.FEATURE_PENALTY,
    )  # fmt: skip
    assert np.max(np.abs(ours.rating - ref["ratings"])) < 0.01
    assert np.allclose(ours.style.coefficient, THETA_TO_ELO * ref["coeffs"], atol=0.01)
    width = half_width(ours.lower, ours.upper)
    assert np.max(np.abs(width / half_width(ref["lower"], ref["upper"]) - 1)) < 0.01
    assert ours.style.names == names and ours.style.votes == len(left)


def test_a_feature_that_drives_wins_is_credited_to_the_feature():
    """All models equally good; model 0's images are more colourful and colour wins votes."""
    rng = np.random.default_rng(5)
    n, votes = 5, 20_000
    left = rng.integers(0, n, votes)
    right = (left + rng.integers(1, n, votes)) % n
    colour = rng.normal(size=(votes, 2)) + 1.0 * np.stack([left == 0, right == 0], 1)
    diff = colour[:, :1] - colour[:, 1:]
    outcome = np.where(rng.random(votes) < 1 / (1 + np.exp(-0.6 * diff[:, 0])), 0, 1)
    plain = ratings_of(left, right, outcome, n, ci="sandwich")
    styled = ratings_of(left, right, outcome, n, ci="sandwich", features=diff, feature_names=["c"])
    assert plain.lower[0] > 1050  # uncontrolled, model 0 leads clearly ...
    assert styled.lower[0] < 1000 < styled.upper[0]  # ... controlled, it is level
    assert np.all((styled.lower < 1000) & (styled.upper > 1000))
    truth = 0.6 * diff.std() * THETA_TO_ELO  # Elo points per SD of the difference
    se = (styled.style.upper[0] - styled.style.lower[0]) / (2 * Z95)
    assert abs(styled.style.coefficient[0] - truth) < 3 * se  # 3 SE: fails 0.3% by chance
    assert np.allclose(styled.style.uncontrolled, plain.rating)
    assert np.array_equal(styled.elo, plain.elo)  # Elo (on its own thread here) is the same


def test_bootstrap_and_sandwich_agree_on_style_coefficients():
    _, left, right, outcome, features = simulate(seed=3, n=5, votes=6000, k=2)
    boot = ratings_of(left, right, outcome, 5, rounds=300, features=features)
    sand = ratings_of(left, right, outcome, 5, ci="sandwich", features=features)
    assert np.allclose(boot.rating, sand.rating)
    ratio = half_width(boot.lower, boot.upper) / half_width(sand.lower, sand.upper)
    assert np.all((ratio > 0.8) & (ratio < 1.25))
    ratio = half_width(boot.style.lower, boot.style.upper) / half_width(
        sand.style.lower, sand.style.upper
    )
    assert np.all((ratio > 0.8) & (ratio < 1.25))


def test_labels_and_row_order_do_not_move_the_numbers():
    _, left, right, outcome, features = simulate(seed=4, n=6, votes=5000)
    base = ratings_of(left, right, outcome, 6, ci="sandwich", features=features)
    perm = np.random.default_rng(9).permutation(6)  # model i is now called perm[i]
    order = np.random.default_rng(10).permutation(left.size)
    moved = ratings_of(
        perm[left][order], perm[right][order], outcome[order], 6, ci="sandwich",
        features=features[order],
    )  # fmt: skip
    assert np.allclose(moved.rating[perm], base.rating, atol=1e-8)
    assert np.allclose(moved.lower[perm], base.lower, atol=1e-8)
    assert np.allclose(moved.style.coefficient, base.style.coefficient, atol=1e-10)
    # swapping left and right (and negating the differences) is the same battle
    swapped_outcome = np.where(outcome == 0, 1, np.where(outcome == 1, 0, outcome))
    swapped = ratings_of(right, left, swapped_outcome, 6, ci="sandwich", features=-features)
    assert np.allclose(swapped.rating, base.rating, atol=1e-8)
    assert np.allclose(swapped.upper, base.upper, atol=1e-8)


def test_gradient_and_hessian_match_finite_differences():
    _, left, right, outcome, features = simulate(seed=6, n=4, votes=400, k=2)
    rows = C.make_rows(left, right, np.where(outcome == 0, 1.0, np.where(outcome == 1, 0, 0.5)))
    rows = C.make_rows(rows.a, rows.b, rows.y, features)
    rng = np.random.default_rng(0)
    theta, beta = rng.normal(size=4), rng.normal(size=2)
    params = np.r_[theta, beta]

    def f(p):
        return C.objective(rows, p[:4], p[4:], 1e-3, 0.05)

    grad, _ = C._gradient(rows, 4, theta, beta, 1e-3, 0.05)
    eps = 1e-6
    numeric = [(f(params + eps * e) - f(params - eps * e)) / (2 * eps) for e in np.eye(6)]
    assert np.allclose(grad, numeric, rtol=1e-6, atol=1e-5)
    hess = C.information(rows, 4, theta, beta, 1e-3, 0.05)

    def g(p):
        return C._gradient(rows, 4, p[:4], p[4:], 1e-3, 0.05)[0]

    numeric = np.array([(g(params + eps * e) - g(params - eps * e)) / (2 * eps) for e in np.eye(6)])
    assert np.allclose(hess, numeric, rtol=1e-5, atol=1e-4)


def test_plain_rows_give_the_plain_fit_and_reweighting_is_neutral_on_balanced_pairs():
    _, left, right, outcome, _ = simulate(seed=7, n=5, votes=3000)
    counts = aggregate(5, left, right, outcome)
    rows = C.rows_from_counts(counts, "split")
    fit = C.contextual_fit(rows, 5, penalty=0.0)
    assert np.allclose(fit.theta, bt_fit(counts.win_matrix("split")), atol=1e-9)
    # every pair exactly as often: the reweighted fit is the plain fit
    i, j = np.triu_indices(5, 1)
    left, right = np.tile(i, 40), np.tile(j, 40)
    outcome = np.random.default_rng(1).integers(0, 3, left.size)
    plain = ratings_of(left, right, outcome, 5, ci="sandwich")
    weighted = ratings_of(left, right, outcome, 5, ci="sandwich", reweight=50)
    assert np.allclose(plain.rating, weighted.rating, atol=1e-8)
    assert np.allclose(plain.upper, weighted.upper, atol=1e-8)


def test_sandwich_covers_the_truth_about_95_percent():
    """Coverage of the 95% sandwich interval over simulated arenas (the full
    comparison with the bootstrap is in benchmarks/coverage.py)."""
    hits = []
    for seed in range(150):
        rng = np.random.default_rng(100 + seed)
        theta = rng.normal(0.0, 0.6, 6)
        left = rng.integers(0, 6, 1500)
        right = (left + rng.integers(1, 6, 1500)) % 6
        p = 1 / (1 + np.exp(theta[right] - theta[left]))
        outcome = np.where(rng.random(1500) < p, 0, 1)
        res = ratings_of(left, right, outcome, 6, ci="sandwich")
        truth = 1000 + THETA_TO_ELO * (theta - theta.mean())
        hits.append((res.lower <= truth) & (truth <= res.upper))
    coverage = np.mean(hits)
    assert 0.92 <= coverage <= 0.98, coverage


def test_bad_options_name_the_input():
    _, left, right, outcome, features = simulate(seed=8, n=4, votes=200)
    with pytest.raises(ValueError, match="one row per vote"):
        ratings_of(left, right, outcome, 4, features=features[:10])
    with pytest.raises(ValueError, match="davidson"):
        ratings_of(left, right, outcome, 4, ties="davidson", features=features)
    with pytest.raises(ValueError, match="ci='normal'"):
        ratings_of(left, right, outcome, 4, ci="normal")
    with pytest.raises(ValueError, match="reweight floor 0"):
        ratings_of(left, right, outcome, 4, reweight=0)
    constant = np.ones((left.size, 1))
    with pytest.raises(ValueError, match="no style feature varies"):
        ratings_of(left, right, outcome, 4, features=constant, feature_names=["aspect"])


def test_each_style_bootstrap_round_is_the_fit_of_its_draws():
    """The chord steps land where a full Newton fit of the same resampled battles does."""
    from arena.stats.resample import multinomial_draws

    _, left, right, outcome, features = simulate(seed=11, n=5, votes=800, k=2)
    score = np.where(outcome == 0, 1.0, np.where(outcome == 1, 0.0, 0.5))
    x = (features - features.mean(0)) / features.std(0)
    rows = C.make_rows(left, right, score, x)
    fit = C.contextual_fit(rows, 5)
    theta, beta = C.contextual_bootstrap(rows, 5, np.random.default_rng(3), 6, fit, workers=2)
    draws = multinomial_draws(np.random.default_rng(3).spawn(1)[0], np.ones(800, np.int64), 6)
    for r, drawn in enumerate(draws):
        again = C.contextual_fit(C.make_rows(left, right, score, x, weight=drawn.astype(float)), 5)
        assert np.allclose(theta[r], again.theta, atol=1e-5)
        assert np.allclose(beta[r], again.beta, atol=1e-5)


def _per_image_votes(seed, n=5, votes=8000, means=(0, 0, 0, 0, 2.0), beta=0.0):
    """Votes whose feature is each side's per-image value (varying within each model,
    with per-model means), minus the other side's; ``beta`` per unit of the difference."""
    rng = np.random.default_rng(seed)
    theta = np.linspace(-1, 1, n)
    left = rng.integers(0, n, votes)
    right = (left + rng.integers(1, n, votes)) % n
    means = np.asarray(means, float)
    diff = (means[left] + rng.normal(size=votes)) - (means[right] + rng.normal(size=votes))
    p = 1 / (1 + np.exp(-(theta[left] - theta[right] + beta * diff)))
    outcome = np.where(rng.random(votes) < p, 0, 1)
    outcome[rng.random(votes) < 0.1] = 2
    return left, right, outcome, diff[:, None]


def test_swapping_sides_moves_nothing():
    """A vote shown the other way round (sides, outcome and difference flipped) is the
    same vote: ratings and coefficients must not move, even when the differences' mean is
    not 0 (centring them would add a hidden left-side term)."""
    left, right, outcome, x = _per_image_votes(21, beta=0.5)
    x = x + 0.5  # a difference whose mean is clearly not 0
    base = ratings_of(left, right, outcome, 5, ci="sandwich", features=x)
    swap = np.random.default_rng(0).random(left.size) < 0.5
    flipped = np.where(outcome == 0, 1, np.where(outcome == 1, 0, outcome))
    moved = ratings_of(
        np.where(swap, right, left), np.where(swap, left, right),
        np.where(swap, flipped, outcome), 5, ci="sandwich", features=np.where(swap[:, None], -x, x),
    )  # fmt: skip
    assert np.allclose(moved.rating, base.rating, atol=1e-8)
    assert np.allclose(moved.upper, base.upper, atol=1e-8)
    assert np.allclose(moved.style.coefficient, base.style.coefficient, atol=1e-8)


def test_left_clicks_on_other_models_do_not_move_a_model_through_its_style():
    """m4's images are more colourful; colour does not matter. A rater who always clicks
    left on pairs without m4 must not move m4's style-controlled rating (with centred
    differences the clicks became a colour effect applied to m4: 39 Elo)."""
    left, right, outcome, x = _per_image_votes(3)
    honest = ratings_of(left, right, outcome, 5, ci="sandwich", features=x)
    rng = np.random.default_rng(9)
    a = rng.integers(0, 4, 500)
    b = (a + rng.integers(1, 4, 500)) % 4
    extra = rng.normal(size=500) - rng.normal(size=500)
    clicked = ratings_of(
        np.r_[left, a], np.r_[right, b], np.r_[outcome, np.zeros(500, int)], 5,
        ci="sandwich", features=np.r_[x[:, 0], extra][:, None],
    )  # fmt: skip
    plain = ratings_of(np.r_[left, a], np.r_[right, b], np.r_[outcome, np.zeros(500, int)], 5)
    shift = clicked.rating[4] - honest.rating[4]
    assert abs(shift - (plain.rating[4] - ratings_of(left, right, outcome, 5).rating[4])) < 3


def test_a_per_model_constant_feature_is_left_out_and_named():
    """Resolution when every model renders at one size: its difference is g[a] - g[b], the
    models' own strengths in disguise, so the fit could not tell them apart."""
    left, right, outcome, x = _per_image_votes(5)
    pixels = np.log2(np.array([512, 512, 1024, 1024, 2048.0]) ** 2)
    resolution = (pixels[left] - pixels[right])[:, None]
    both = ratings_of(
        left, right, outcome, 5, ci="sandwich", features=np.c_[x, resolution],
        feature_names=["colorfulness", "resolution"],
    )  # fmt: skip
    assert both.style.names == ["colorfulness"] and both.style.constant == ["resolution"]
    with pytest.raises(ValueError, match="no style feature varies within the models"):
        ratings_of(left, right, outcome, 5, features=resolution, feature_names=["resolution"])


def test_the_style_fit_rates_only_models_its_votes_determine():
    """A model whose votes all lack a feature value (images not scored yet), or whose only
    complete votes are wins, gets no style-controlled rating (not 1000 ± 0, not +1,500)."""
    left, right, outcome, x = _per_image_votes(7)
    unscored = x.copy()
    unscored[(left == 4) | (right == 4)] = np.nan
    res = ratings_of(left, right, outcome, 5, ci="sandwich", features=unscored)
    assert not res.identified[4] and np.isnan(res.rating[4]) and np.isnan(res.upper[4])
    assert np.isnan(res.style.uncontrolled[4])  # the same votes, without control
    assert res.identified[:4].all() and np.all(res.upper[:4] > res.lower[:4])
    only_wins = x.copy()
    lost = ((left == 4) & (outcome != 0)) | ((right == 4) & (outcome != 1))
    only_wins[lost] = np.nan
    res = ratings_of(left, right, outcome, 5, ci="sandwich", features=only_wins)
    assert not res.identified[4] and np.isnan(res.rating[4])


def test_dropped_ties_are_not_counted_or_standardised():
    left, right, outcome, x = _per_image_votes(8, beta=0.4)
    res = ratings_of(left, right, outcome, 5, ties="drop", ci="sandwich", features=x)
    decisive = outcome < 2
    assert res.style.votes == int(decisive.sum())
    assert res.style.sd[0] == pytest.approx(np.sqrt(np.mean(x[decisive, 0] ** 2)))


def test_a_failed_style_fit_leaves_no_elo_thread_running():
    import threading
    import time

    left, right, outcome, _ = _per_image_votes(9)
    before = threading.active_count()
    with pytest.raises(ValueError, match="no style feature varies"):
        ratings_of(left, right, outcome, 5, features=np.ones((left.size, 1)))
    time.sleep(0.2)
    assert threading.active_count() == before
