"""Failure rates from reviewers' flags (issue 22, item 2): per model, blind sample and all
reviews, against hand counts and scipy's Wilson interval; the union over verdicts; the
correlation with the human rating against scipy; the stratified blind sample; invariance
to ids and row order; bad input refused naming it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from arena.stats.failures import (
    ALL_REVIEWS,
    ANY_FAILURE,
    BLIND,
    NO_FAILURE,
    RATE_COLUMNS,
    blind_sample,
    failure_rates,
    failure_rating_correlation,
)

MODES = ("hands", "text rendering", "other")

# Images 1-5 of model A, 6-9 of model B, 10 of model C (never reviewed).
IMAGES = pd.DataFrame(
    {"image_id": range(1, 11), "model": ["A"] * 5 + ["B"] * 4 + ["C"]},
)
# (image, reviewer, flag, blind)
FLAGS = [
    (1, "ann", "hands", True),
    (1, "ann", "text rendering", True),
    (2, "ann", NO_FAILURE, True),
    (3, "ann", NO_FAILURE, True),
    (3, "bob", "hands", False),  # open verdict on a blind-judged image: all reviews only
    (4, "bob", "text rendering", False),
    (6, "ann", NO_FAILURE, True),
    (6, "bob", "hands", True),  # two blind verdicts disagree: the image fails (union)
    (7, "ann", NO_FAILURE, True),
    (8, "bob", "other", False),
    (99, "bob", "hands", False),  # not an image in scope (broken, other prompt): left out
]


def flags_frame(rows=FLAGS) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "reviewer", "flag", "blind"])


# By hand: (model, source, mode) -> (images, reviewed, flagged)
EXPECTED = {
    ("A", BLIND, ANY_FAILURE): (5, 3, 1),  # 1 fails; 2, 3 judged fine blind
    ("A", BLIND, "hands"): (5, 3, 1),
    ("A", BLIND, "text rendering"): (5, 3, 1),
    ("A", BLIND, "other"): (5, 3, 0),
    ("A", ALL_REVIEWS, ANY_FAILURE): (5, 4, 3),  # 1, 3 (bob), 4
    ("A", ALL_REVIEWS, "hands"): (5, 4, 2),
    ("A", ALL_REVIEWS, "text rendering"): (5, 4, 2),
    ("A", ALL_REVIEWS, "other"): (5, 4, 0),
    ("B", BLIND, ANY_FAILURE): (4, 2, 1),  # 6 (union), 7 fine
    ("B", BLIND, "hands"): (4, 2, 1),
    ("B", BLIND, "text rendering"): (4, 2, 0),
    ("B", BLIND, "other"): (4, 2, 0),
    ("B", ALL_REVIEWS, ANY_FAILURE): (4, 3, 2),  # 6, 8
    ("B", ALL_REVIEWS, "hands"): (4, 3, 1),
    ("B", ALL_REVIEWS, "text rendering"): (4, 3, 0),
    ("B", ALL_REVIEWS, "other"): (4, 3, 1),
}


def scipy_wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def test_rates_match_hand_counts_and_scipys_wilson_interval():
    rates = failure_rates(flags_frame(), IMAGES, MODES)
    assert list(rates.columns) == RATE_COLUMNS
    assert len(rates) == 3 * 2 * 4  # models x sources x (any + 3 modes)
    for row in rates.itertuples(index=False):
        if row.model == "C":  # nothing reviewed: no rate
            assert (row.images, row.reviewed, row.flagged) == (1, 0, 0)
            assert np.isnan(row.rate) and np.isnan(row.ci_low) and np.isnan(row.ci_high)
            continue
        images, reviewed, flagged = EXPECTED[(row.model, row.source, row.mode)]
        assert (row.images, row.reviewed, row.flagged) == (images, reviewed, flagged)
        assert row.rate == pytest.approx(flagged / reviewed)
        low, high = scipy_wilson(flagged, reviewed)
        assert row.ci_low == pytest.approx(low, abs=1e-12)
        assert row.ci_high == pytest.approx(high, abs=1e-12)
    # rows: models sorted, blind first, "any failure" then the configured order
    first = rates[rates["model"] == "A"]
    assert first["source"].tolist()[:4] == [BLIND] * 4
    assert first["mode"].tolist()[:4] == [ANY_FAILURE, *MODES]


def test_wilson_by_hand_on_one_cell():
    """1 failure in 3 blind reviews: p = 1/3, z = 1.959964, by the textbook formula."""
    rates = failure_rates(flags_frame(), IMAGES, MODES)
    row = rates[(rates.model == "A") & (rates.source == BLIND) & (rates["mode"] == ANY_FAILURE)]
    z, n, p = stats.norm.ppf(0.975), 3, 1 / 3
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    assert row["ci_low"].item() == pytest.approx(centre - half, abs=1e-12)
    assert row["ci_high"].item() == pytest.approx(centre + half, abs=1e-12)
    assert (row["ci_low"].item(), row["ci_high"].item()) == pytest.approx((0.0615, 0.7923), 1e-3)


def test_modes_nobody_used_show_as_zero_and_unlisted_stored_modes_are_kept():
    rows = [*FLAGS, (5, "cy", "blurry", False)]  # a mode since taken off the list
    rates = failure_rates(flags_frame(rows), IMAGES, MODES)
    assert rates[rates.model == "A"]["mode"].unique().tolist() == [ANY_FAILURE, *MODES, "blurry"]
    blurry = rates[
        (rates.model == "A") & (rates.source == ALL_REVIEWS) & (rates["mode"] == "blurry")
    ]
    assert (blurry["reviewed"].item(), blurry["flagged"].item()) == (5, 1)
    no_flags = failure_rates(flags_frame([]), IMAGES, MODES)
    assert (no_flags["reviewed"] == 0).all() and no_flags["rate"].isna().all()


def test_rates_do_not_move_with_ids_row_order_or_model_order():
    rates = failure_rates(flags_frame(), IMAGES, MODES)
    rng = np.random.default_rng(7)
    relabel = dict(zip(range(1, 11), rng.permutation(np.arange(1000, 1010)), strict=True))
    relabel[99] = 5000
    images = IMAGES.assign(image_id=IMAGES["image_id"].map(relabel)).sample(frac=1, random_state=1)
    flags = flags_frame().assign(image_id=lambda f: f["image_id"].map(relabel))
    flags = flags.sample(frac=1, random_state=2)
    moved = failure_rates(flags, images, MODES)
    pd.testing.assert_frame_equal(moved, rates)
    # blind given as 0/1 reads the same as booleans
    numeric = failure_rates(flags.assign(blind=flags["blind"].astype(int)), images, MODES)
    pd.testing.assert_frame_equal(numeric, rates)


@pytest.mark.parametrize(
    ("flags", "images", "message"),
    [
        (flags_frame().drop(columns="blind"), IMAGES, "flags lacks column"),
        (flags_frame(), IMAGES.drop(columns="model"), "images lacks column"),
        (flags_frame().assign(blind="maybe"), IMAGES, "flags.blind value 'maybe'"),
        (flags_frame().assign(blind=None), IMAGES, "flags.blind has missing values"),
        (flags_frame(), pd.concat([IMAGES, IMAGES.head(1)]), "image_id 1 twice"),
        ([("1", "ann")], IMAGES, "flags: expected a pandas DataFrame"),
    ],
)
def test_bad_input_is_refused_naming_it(flags, images, message):
    with pytest.raises(ValueError, match=message):
        failure_rates(flags, images, MODES)


def test_correlation_with_the_rating_matches_scipy():
    models = [f"m{k}" for k in range(6)]
    reviewed = np.array([20, 25, 30, 20, 40, 10])
    flagged = np.array([10, 5, 3, 8, 2, 6])
    rates = pd.DataFrame(
        {
            "model": models,
            "source": BLIND,
            "mode": ANY_FAILURE,
            "images": 50,
            "reviewed": reviewed,
            "flagged": flagged,
            "rate": flagged / reviewed,
        }
    )
    ratings = pd.Series([900.0, 1010, 1100, 950, 1200, 980], index=models)
    table = failure_rating_correlation(rates, ratings, np.random.default_rng(0))
    row = table.iloc[0]
    x, y = rates["rate"].to_numpy(), ratings[models].to_numpy()
    assert row["n_models"] == 6
    assert row["spearman"] == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert row["kendall"] == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)

    def rho(a):
        return stats.spearmanr(a, y).statistic

    exact = stats.permutation_test((x,), rho, permutation_type="pairings", n_resamples=np.inf)
    assert row["spearman_p"] == pytest.approx(exact.pvalue, abs=1e-12)
    assert row["spearman"] < 0  # the preferred models fail less here
    # A model without a rating or without reviews is left out; order does not matter.
    shuffled = rates.sample(frac=1, random_state=3)
    again = failure_rating_correlation(shuffled, ratings.drop("m5"), np.random.default_rng(0))
    assert again.iloc[0]["n_models"] == 5
    few = failure_rating_correlation(rates.head(2), ratings, np.random.default_rng(0))
    assert few.iloc[0]["n_models"] == 2 and np.isnan(few.iloc[0]["spearman_p"])


def test_blind_sample_is_stratified_seeded_and_continues_past_judged_images():
    ids = np.arange(1, 301)
    models = np.array(["A"] * 200 + ["B"] * 60 + ["C"] * 40, dtype=object)
    first = blind_sample(ids, models, 50, np.random.default_rng(11))
    assert len(first) == len(set(first.tolist())) == 50
    counts = pd.Series(models[first - 1]).value_counts()
    assert sorted(counts.tolist()) == [16, 17, 17]  # a third each, give or take one
    same = blind_sample(ids, models, 50, np.random.default_rng(11))
    np.testing.assert_array_equal(first, same)
    # the row order of the pool does not change the draw (ids are sorted per model first)
    order = np.random.default_rng(5).permutation(300)
    shuffled = blind_sample(ids[order], models[order], 50, np.random.default_rng(11))
    assert sorted(shuffled.tolist()) == sorted(first.tolist())
    # the next sample with the same seed passes over what was judged
    second = blind_sample(ids, models, 50, np.random.default_rng(11), skip=set(first.tolist()))
    assert not set(second.tolist()) & set(first.tolist())
    # a model that runs out leaves the rest to the others
    big = blind_sample(ids, models, 250, np.random.default_rng(1))
    assert pd.Series(models[big - 1]).value_counts()["C"] == 40
    # the order shown does not follow the model: not grouped
    labels = models[first - 1]
    assert (labels[1:] != labels[:-1]).sum() > 10
    with pytest.raises(ValueError, match="sample size 0"):
        blind_sample(ids, models, 0, np.random.default_rng(0))
    with pytest.raises(ValueError, match="differ in length"):
        blind_sample(ids, models[:-1], 5, np.random.default_rng(0))


def test_every_model_gets_a_simple_random_sample():
    """Over many seeds, each image of a model is drawn equally often (no id order bias)."""
    ids = np.arange(1, 41)
    models = np.array(["A"] * 20 + ["B"] * 20, dtype=object)
    hits = np.zeros(41)
    for seed in range(2000):
        hits[blind_sample(ids, models, 10, np.random.default_rng(seed))] += 1
    share = hits[1:] / 2000  # each image: 5 of 20 drawn per sample -> 0.25
    assert np.abs(share - 0.25).max() < 0.05
    chi2 = stats.chisquare(hits[1:21]).pvalue
    assert chi2 > 0.001
