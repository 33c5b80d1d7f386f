"""Agreement statistics against independent references (literature values, scipy,
hand-worked tables, analytic expectations on simulated data)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from arena.stats import agreement as ag
from arena.stats import ratings as rt
from arena.stats.clusters import prompt_clusters
from arena.stats.pairs import encode_outcomes
from tests.agreement_data import relabel_prompts, synthetic_arena


# -- Wilson ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I,
    # method 3 (score interval without continuity correction).
    [
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_matches_newcombe_table(x, n, low, high):
    lo, hi = ag.wilson_interval(x, n)
    assert float(lo) == pytest.approx(low, abs=6e-5)
    assert float(hi) == pytest.approx(high, abs=6e-5)


@pytest.mark.parametrize(("x", "n"), [(7, 10), (2.5, 9), (180, 200), (33, 1000)])
def test_wilson_inverts_the_score_test(x, n):
    """The Wilson bounds are the p where |x/n - p| = z·sqrt(p(1-p)/n): found by root search."""
    z = stats.norm.ppf(0.975)
    phat = x / n

    def f(p):
        return abs(phat - p) - z * math.sqrt(p * (1 - p) / n)

    low = optimize.brentq(f, 1e-12, phat) if phat > 0 else 0.0
    high = optimize.brentq(f, phat, 1 - 1e-12) if phat < 1 else 1.0
    lo, hi = ag.wilson_interval(x, n)
    assert float(lo) == pytest.approx(low, abs=1e-9)
    assert float(hi) == pytest.approx(high, abs=1e-9)


def test_wilson_empty_is_nan():
    lo, hi = ag.wilson_interval(0, 0)
    assert np.isnan(lo) and np.isnan(hi)


# -- Krippendorff's alpha ----------------------------------------------------------------------
def _long(matrix):
    units, values = [], []
    for row in matrix:
        for u, v in enumerate(row):
            if v is not None:
                units.append(u)
                values.append(v)
    return units, values


def test_alpha_krippendorff_2011_example():
    """Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
    4 observers x 12 units with missing values, nominal alpha = 0.743."""
    n = None
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
        [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n],
    ]
    assert ag.krippendorff_alpha_nominal(*_long(data)) == pytest.approx(0.743, abs=5e-4)


def test_alpha_wikipedia_example():
    """The computational example of the Wikipedia article (3 coders, 15 units): 0.691."""
    n = None
    data = [
        [n, n, n, n, n, 3, 4, 1, 2, 1, 1, 3, 3, n, 3],
        [1, n, 2, 1, 3, 3, 4, 3, n, n, n, n, n, n, n],
        [n, n, 2, 1, 3, 4, 4, n, 2, 1, 1, 3, 3, n, 4],
    ]
    assert ag.krippendorff_alpha_nominal(*_long(data)) == pytest.approx(0.691, abs=5e-4)


def test_alpha_perfect_agreement_and_labels():
    units = [0, 0, 1, 1, 2, 2, 2]
    assert ag.krippendorff_alpha_nominal(units, ["a", "a", "b", "b", "a", "a", "a"]) == 1.0
    # Only one value anywhere: no variation, alpha undefined.
    assert np.isnan(ag.krippendorff_alpha_nominal([0, 0, 1, 1], [1, 1, 1, 1]))


# -- rank correlations -------------------------------------------------------------------------
def test_rank_correlations_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(40, 9)).astype(float)  # many ties
    y = x + rng.normal(0, 2, size=x.shape)
    y[:, :3] = np.round(y[:, :3])
    rho = ag.spearman_rows(x, y)
    tau = ag.kendall_rows(x, y)
    for r in range(40):
        assert rho[r] == pytest.approx(stats.spearmanr(x[r], y[r]).statistic, abs=1e-12)
        assert tau[r] == pytest.approx(stats.kendalltau(x[r], y[r]).statistic, abs=1e-12)


# -- protocols on a hand-made table ------------------------------------------------------------
# Votes: left, left, right, right, tie, both_bad, left (metric score missing).
OUTCOME = encode_outcomes(["left", "left", "right", "right", "tie", "both_bad", "left"])
DELTA = np.array([1.0, 0.0, -2.0, 0.5, 0.1, -0.05, np.nan])


def _accuracy(protocol, threshold=0.0):
    credit, counted = ag.protocol_credit(DELTA, OUTCOME, protocol, threshold)
    return credit.sum() / counted.sum(), int(counted.sum())


def test_protocol_a_metric_ties_wrong():
    # Decisive and scored: +1 left ✓, 0 left ✗ (tie), -2 right ✓, +0.5 right ✗ -> 2/4.
    assert _accuracy("decisive") == (0.5, 4)


def test_protocol_b_metric_ties_half():
    # As (a) but the metric tie earns 1/2 -> 2.5/4.
    assert _accuracy("ties_half") == (0.625, 4)


def test_protocol_c_with_human_ties():
    # t = 0.2: left ✓, tie-vs-left ✗, right ✓, left-vs-right ✗, tie ✓, tie-vs-both-bad ✓ -> 4/6.
    assert _accuracy("with_ties", 0.2) == (4 / 6, 6)
    # t = 0: only the exact tie is predicted a tie -> left ✓, ✗, right ✓, ✗, ✗, ✗ -> 2/6.
    assert _accuracy("with_ties", 0.0) == (2 / 6, 6)


def test_tie_threshold_fit_by_hand():
    # Sorted |Δ|: 0 (left), .05 (both bad), .1 (tie), .5 (right, metric says left),
    # 1 (left ✓), 2 (right ✓). Ties predicted up to t earn: t=0 -> 0+2, t=.05 -> 1+2,
    # t=.1 -> 2+2, t=.5 -> 2+2, t=1 -> 2+1, t=2 -> 2. Best 4, smallest t = 0.1.
    assert ag.fit_tie_threshold(DELTA, OUTCOME) == 0.1


def test_tie_threshold_is_exhaustively_optimal():
    rng = np.random.default_rng(5)
    for _ in range(20):
        delta = np.round(rng.normal(0, 1, 60), 1)
        outcome = rng.integers(0, 4, 60)
        t = ag.fit_tie_threshold(delta, outcome)
        candidates = np.unique(np.r_[0.0, np.abs(delta)])
        accs = [ag.protocol_credit(delta, outcome, "with_ties", c)[0].mean() for c in candidates]
        best = max(accs)
        mine = ag.protocol_credit(delta, outcome, "with_ties", t)[0].mean()
        assert mine == pytest.approx(best)
        assert t == candidates[int(np.argmax(np.isclose(accs, best)))]


def test_cross_fitting_uses_only_the_other_folds():
    rng = np.random.default_rng(6)
    delta = rng.normal(0, 1, 300)
    outcome = rng.integers(0, 4, 300)
    fold = rng.integers(0, 3, 300)
    per_vote, fitted = ag.cross_fitted_thresholds(delta, outcome, fold, 3)
    for f in range(3):
        expect = ag.fit_tie_threshold(delta[fold != f], outcome[fold != f])
        assert fitted[f] == expect
        assert np.all(per_vote[fold == f] == expect)


def test_unknown_protocol_is_refused():
    with pytest.raises(ValueError, match="protocol 'nope'"):
        ag.protocol_credit(DELTA, OUTCOME, "nope")


# -- the human ceiling -------------------------------------------------------------------------
def test_ceiling_credit_by_hand():
    # Unit 0: A, A, B -> each A sees {A, B}: split, 1/2; B sees {A, A}: 0.
    # Unit 1: A, A -> each agrees: 1. Unit 2: one vote: not counted. Unit 3: a tie (ignored).
    unit = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    value = np.array([0, 0, 1, 1, 1, 0, 2, 0])
    credit, counted = ag.ceiling_credit(unit, value)
    assert counted.tolist() == [True, True, True, True, True, False, False, False]
    assert credit[counted].tolist() == [0.5, 0.5, 0.0, 1.0, 1.0]


def _frame(rows):
    """Votes frame from (rater, prompt, left image, right image, outcome); model = image % 10."""
    df = pd.DataFrame(
        rows, columns=["rater_id", "prompt_id", "left_image_id", "right_image_id", "outcome"]
    )
    df["left_model"] = "m" + (df["left_image_id"] % 10).astype(str)
    df["right_model"] = "m" + (df["right_image_id"] % 10).astype(str)
    df["category"] = "c"
    return df


def test_ceiling_and_alpha_through_the_report():
    # Pair (11, 12) shown both ways: rater 1 prefers 11, rater 2 prefers 11 (shown swapped),
    # rater 3 prefers 12; rater 1 votes again on the pair, flipping to 12 (latest kept).
    # Pair (21, 22): two raters both prefer 21. Pair (31, 32): a single vote.
    votes = _frame(
        [
            (1, 1, 11, 12, "left"),
            (2, 1, 12, 11, "right"),
            (3, 1, 11, 12, "right"),
            (1, 1, 12, 11, "left"),  # rater 1 again: now prefers 12 -> replaces the first
            (4, 2, 21, 22, "left"),
            (5, 2, 22, 21, "right"),
            (6, 3, 31, 32, "left"),
        ]
    )
    scores = pd.DataFrame(
        {
            "image_id": [11, 12, 21, 22, 31, 32],
            "metric": "s",
            "version": "1",
            "higher_is_better": True,
            "value": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        }
    )
    report = ag.agreement_report(votes, scores, np.random.default_rng(0), rounds=50)
    ceiling = report.accuracy[report.accuracy.metric == ag.CEILING].iloc[0]
    # Pair 1 (kept): rater1 -> 12, rater2 -> 11, rater3 -> 12: credits 1/2, 0, 1/2.
    # Pair 2: 1, 1. Total 3 / 5.
    assert ceiling.n == 5
    assert ceiling.accuracy == pytest.approx(0.6)
    # Alpha on the same 5 votes: values (canonical orientation) 1, 0, 1 | 0, 0, coincidences
    # symmetrised over the pair's orientation: o_00 = o_11 = 0.5 + 1, o_01 = o_10 = 1, so
    # n_0 = n_1 = 2.5, n = 5 and alpha = 1 - 4 * 2 / (25 - 2 * 2.5**2) = 0.36 (coded one way
    # only, n_0 = 3, n_1 = 2 would give 1 - 8 / 12 = 1/3).
    assert report.reliability.alpha.iloc[0] == pytest.approx(0.36, abs=1e-12)
    assert report.reliability.units.iloc[0] == 2
    # Metric accuracy (a) over all 7 decisive votes: the metric prefers the lower id.
    acc = report.accuracy.set_index(["metric", "protocol"]).loc[("s", "decisive")]
    human_lower = [True, True, False, False, True, True, True]
    assert acc.accuracy == pytest.approx(np.mean(human_lower))


# -- the whole report on simulated data --------------------------------------------------------
def test_accuracy_recovers_the_noise_level():
    """Human = sign of the hidden quality difference; metric = quality + N(0, σ²).
    Δq ~ N(0, 2), Δmetric = Δq + N(0, 2σ²): corr r = 1/sqrt(1 + σ²) and
    P(same sign) = 1/2 + arcsin(r)/π."""
    noise = {"sharp": 0.3, "loose": 1.0, "vague": 2.5}
    data = synthetic_arena(
        np.random.default_rng(11),
        n_models=4,
        n_prompts=3000,
        n_votes=20000,
        strength_sd=0.0,
        image_sd=1.0,
        metric_noise=noise,
    )
    report = ag.agreement_report(data.votes, data.scores, np.random.default_rng(1), rounds=300)
    acc = report.accuracy.set_index(["metric", "protocol"])
    for name, sigma in noise.items():
        expect = 0.5 + math.asin(1 / math.sqrt(1 + sigma**2)) / math.pi
        row = acc.loc[(name, "decisive")]
        assert row.accuracy == pytest.approx(expect, abs=0.015), name
        assert row.ci_low < expect < row.ci_high, name


def test_random_metric_sits_at_half_and_its_interval_covers_it():
    covered, accuracies = 0, []
    for seed in range(20):
        data = synthetic_arena(
            np.random.default_rng(100 + seed),
            n_models=4,
            n_prompts=150,
            n_votes=1500,
            metric_noise={},
        )
        rng = np.random.default_rng(seed)
        scores = pd.DataFrame(
            {
                "image_id": data.images.image_id,
                "metric": "random",
                "version": "1",
                "higher_is_better": True,
                "value": rng.normal(size=len(data.images)),
            }
        )
        report = ag.agreement_report(data.votes, scores, rng, rounds=200)
        row = report.accuracy.set_index(["metric", "protocol"]).loc[("random", "ties_half")]
        accuracies.append(row.accuracy)
        covered += row.ci_low <= 0.5 <= row.ci_high
    # Each image's random score is reused by many votes, so one run varies by ~0.03;
    # the mean of 20 runs by ~0.007.
    assert np.mean(accuracies) == pytest.approx(0.5, abs=0.02)
    assert covered >= 16  # 95% intervals: 19 expected out of 20


def test_model_level_correlation_recovers_the_noise_level():
    """Metric per-model mean = strength + N(0, 1) model bias (+ averaged image noise).
    With human ratings ≈ strength, E[Kendall τ] = (2/π)·arcsin(1/√2) = 1/2 and
    E[Spearman ρ] = 6/(π(n+1))·(arcsin r + (n-2)·arcsin(r/2)), r = 1/√2."""
    n_models, taus, rhos = 24, [], []
    for seed in range(8):
        data = synthetic_arena(
            np.random.default_rng(seed),
            n_models=n_models,
            n_prompts=120,
            n_votes=12000,
            strength_sd=1.0,
            image_sd=0.3,
            metric_noise={"m": 0.3},
            metric_model_bias={"m": 1.0},
        )
        report = ag.agreement_report(
            data.votes, data.scores, np.random.default_rng(seed), images=data.images, rounds=40
        )
        corr = report.correlations.iloc[0]
        taus.append(corr.kendall)
        rhos.append(corr.spearman)
        # The point estimate agrees with scipy on the frame the report shows.
        models = report.models
        # ρ and τ take the order of the ridge fit of all models, also of a model that
        # never lost (or won) and so has no human_rating: the plain BT fit, computed apart.
        plain = rt.compute_ratings(
            data.votes.left_model,
            data.votes.right_model,
            data.votes.outcome,
            np.random.default_rng(0),
            rounds=0,
        )
        h = pd.Series(plain.theta, index=plain.names)[models.model].to_numpy()
        m = models.m_mean.to_numpy()
        assert corr.kendall == pytest.approx(stats.kendalltau(h, m).statistic)
        assert corr.spearman == pytest.approx(stats.spearmanr(h, m).statistic)
    r = 1 / math.sqrt(2)
    e_rho = 6 / (math.pi * (n_models + 1)) * (math.asin(r) + (n_models - 2) * math.asin(r / 2))
    # Sample SDs at n=24 are about 0.1 (τ) and 0.13 (ρ); the mean of 8 is within 3 SE.
    assert np.mean(taus) == pytest.approx(0.5, abs=0.11)
    assert np.mean(rhos) == pytest.approx(e_rho, abs=0.14)


def test_a_perfect_metric_ranks_models_like_the_humans():
    data = synthetic_arena(
        np.random.default_rng(2),
        n_models=6,
        n_prompts=300,
        n_votes=20000,
        strength_sd=1.0,
        image_sd=0.2,
        metric_noise={"exact": 0.0},
    )
    report = ag.agreement_report(
        data.votes, data.scores, np.random.default_rng(0), images=data.images, rounds=100
    )
    corr = report.correlations.iloc[0]
    assert corr.spearman == 1.0 and corr.kendall == 1.0 and corr.spearman_bt == 1.0
    acc = report.accuracy.set_index(["metric", "protocol"]).loc[("exact", "decisive")]
    assert acc.accuracy == 1.0


def test_leaderboards_use_the_same_bt_fit_as_the_ratings():
    data = synthetic_arena(
        np.random.default_rng(4),
        n_models=5,
        n_prompts=80,
        n_votes=3000,
        rater_sd=0.7,
        tie_band=0.3,
        metric_noise={"m": 0.8},
    )
    report = ag.agreement_report(data.votes, data.scores, np.random.default_rng(0), rounds=20)
    boards = report.leaderboards.set_index(["decider", "model"])
    votes = data.votes
    human = rt.compute_ratings(
        votes.left_model, votes.right_model, votes.outcome, np.random.default_rng(0), rounds=0
    )
    for name, rating in zip(human.names, human.rating, strict=True):
        assert boards.loc[("human", name), "rating"] == pytest.approx(rating, abs=1e-6)
    # The metric's battles: same pairs, decided by the higher score.
    value = data.scores.set_index("image_id")["value"]
    delta = value.loc[votes.left_image_id].to_numpy() - value.loc[votes.right_image_id].to_numpy()
    decided = np.where(delta > 0, "left", np.where(delta < 0, "right", "tie"))
    metric = rt.compute_ratings(
        votes.left_model, votes.right_model, decided, np.random.default_rng(0), rounds=0
    )
    for name, rating in zip(metric.names, metric.rating, strict=True):
        assert boards.loc[("m", name), "rating"] == pytest.approx(rating, abs=1e-6)


def test_slices_partition_the_votes():
    data = synthetic_arena(
        np.random.default_rng(7), n_models=4, n_prompts=90, n_votes=2500, metric_noise={"m": 0.5}
    )
    report = ag.agreement_report(
        data.votes, data.scores, np.random.default_rng(0), prompts=data.prompts, rounds=50
    )
    overall = report.accuracy.set_index(["metric", "protocol"]).loc[("m", "ties_half")]
    for kind in ("category", "tag count", "model pair"):
        part = report.slices[report.slices.slice_kind == kind]
        assert part.n.sum() == overall.n, kind
        pooled = (part.accuracy * part.n).sum() / part.n.sum()
        assert pooled == pytest.approx(overall.accuracy), kind
    cats = report.slices[report.slices.slice_kind == "category"]
    assert set(cats.slice) == {"anime", "photo", "scene"}
    tags = report.slices[report.slices.slice_kind == "tag count"]
    assert set(tags.slice) <= set(ag.tag_bin_labels())
    # Tag counts from the prompts frame: bins by hand for one prompt.
    assert ag.count_tags(["a, b ,c", "", None, "solo"]).tolist() == [3, 0, 0, 1]


def test_tag_slices_count_a_vote_under_each_tag_and_ignore_labels_and_order():
    """Challenge labels as prompt tags (several per prompt): each tag's slice is the
    accuracy over the votes whose prompt carries it, the most-voted tags are kept, and
    neither the votes' row order nor the prompt ids move a number."""
    rng = np.random.default_rng(11)
    data = synthetic_arena(rng, n_models=4, n_prompts=60, n_votes=3000, metric_noise={"m": 0.7})
    labels = np.array(["Counting", "Text", "Perspective", "Rare"])
    chosen = [labels[rng.random(4) < (0.5, 0.4, 0.3, 0.02)] for _ in range(60)]
    prompts = data.prompts.assign(tags=[", ".join(c) for c in chosen])

    def tag_slices(votes, prompts_, **kw):
        r = ag.agreement_report(
            votes, data.scores, np.random.default_rng(0), prompts=prompts_, rounds=20, **kw
        )
        part = r.slices[(r.slices.slice_kind == "tag") & (r.slices.metric == "m")]
        return part.set_index("slice").sort_index()

    full = tag_slices(data.votes, prompts)
    tags_of = dict(zip(prompts.prompt_id, chosen, strict=True))
    for label in full.index:  # each slice = the report of the votes carrying that tag
        mine = data.votes[[label in tags_of[p] for p in data.votes.prompt_id]]
        alone = ag.agreement_report(mine, data.scores, np.random.default_rng(0), rounds=1)
        row = alone.accuracy.set_index(["metric", "protocol"]).loc[("m", "ties_half")]
        assert full.loc[label, "n"] == row["n"] and full.loc[label, "accuracy"] == pytest.approx(
            row["accuracy"]
        )
        assert full.loc[label, "prompts"] == mine.prompt_id.nunique()
    assert full["n"].sum() == sum(len(tags_of[p]) for p in data.votes.prompt_id)
    two = tag_slices(data.votes, prompts, max_tag_slices=2)
    top = full["n"].sort_values(ascending=False).index[:2]
    assert sorted(two.index) == sorted(top)
    shuffled = data.votes.sample(frac=1.0, random_state=3).reset_index(drop=True)
    pd.testing.assert_frame_equal(tag_slices(shuffled, prompts), full)
    moved = {p: 10_000 + 7 * k for k, p in enumerate(prompts.prompt_id[::-1])}  # new ids
    relabelled = tag_slices(
        data.votes.assign(prompt_id=data.votes.prompt_id.map(moved)),
        prompts.assign(prompt_id=prompts.prompt_id.map(moved)),
    )
    pd.testing.assert_frame_equal(relabelled, full)


def test_relabelled_prompts_move_no_number():
    """The prompt bootstrap numbers its clusters by the prompts' content, not their ids:
    the same prompts imported in another order (other ids, other row order) give every
    table, intervals and the cross-fitted tie threshold included, exactly as before."""
    data = synthetic_arena(
        np.random.default_rng(11), n_models=4, n_prompts=60, n_votes=3000, metric_noise={"m": 0.7}
    )

    def report(votes, prompts, images):
        return ag.agreement_report(
            votes, data.scores, np.random.default_rng(0), images=images, prompts=prompts, rounds=50
        ).tables()

    full = report(data.votes, data.prompts, data.images)
    prompts, votes, images = relabel_prompts(data.prompts, data.votes, data.images)
    for name, table in report(votes, prompts, images).items():
        pd.testing.assert_frame_equal(table, full[name], check_exact=True, obj=name)
    ties = full["agreement_accuracy"].set_index(["metric", "protocol"]).loc[("m", "with_ties")]
    assert ties["ci_low"] < ties["accuracy"] < ties["ci_high"]


def test_prompt_clusters_follow_content_then_sha_then_ids():
    """Prompts by text (then category, tags, set, external id), images without a prompt
    (key -image_id - 1) after them by pixel hash, a missing prompt last; without the
    frames, id order (what np.unique gives)."""
    prompts = pd.DataFrame(
        {
            "prompt_id": [5, 9, 2],
            "prompt_set": ["s", "s", "t"],
            "external_id": ["a", "b", "a"],
            "text": ["b cat", "a dog", "b cat"],
            "tags": ["", "", ""],
            "category": ["", "", ""],
        }
    )
    images = pd.DataFrame({"image_id": [3, 7], "sha256": ["ff", "00"]})
    keys = pd.Series([2, 5, -4, 9, None, -8, 5, 77], dtype="Int64")
    codes, n = prompt_clusters(keys, prompts, images)
    # 9 "a dog"; 5 "b cat" set s; 2 "b cat" set t; image 7 "00"; image 3 "ff"; 77 unknown; NA
    assert n == 7 and codes.tolist() == [2, 1, 4, 0, 6, 3, 1, 5]
    plain, n_plain = prompt_clusters(keys.dropna().to_numpy(np.int64))
    assert n_plain == 6
    assert plain.tolist() == np.unique(keys.dropna(), return_inverse=True)[1].ravel().tolist()


def test_prompt_bootstrap_is_wider_than_wilson_on_clustered_data():
    """A metric that is right on half the prompts and wrong on the rest: votes within a
    prompt are perfectly correlated, so the prompt bootstrap must be much wider."""
    data = synthetic_arena(
        np.random.default_rng(8),
        n_models=4,
        n_prompts=40,
        n_votes=4000,
        strength_sd=0.0,
        metric_noise={},
    )
    prompt_of_image = data.images.set_index("image_id")["prompt_id"]
    flip = np.where(prompt_of_image.to_numpy() % 2 == 0, 1.0, -1.0)
    scores = pd.DataFrame(
        {
            "image_id": data.images.image_id,
            "metric": "half",
            "version": "1",
            "higher_is_better": True,
            "value": data.quality * flip,
        }
    )
    report = ag.agreement_report(data.votes, scores, np.random.default_rng(0), rounds=400)
    row = report.accuracy.set_index(["metric", "protocol"]).loc[("half", "decisive")]
    assert (row.ci_high - row.ci_low) > 3 * (row.wilson_high - row.wilson_low)


def test_cluster_bootstrap_equals_a_naive_loop():
    rng_data = np.random.default_rng(9)
    sums = rng_data.integers(0, 5, size=(30, 4)).astype(float)
    fast = ag.cluster_bootstrap(sums, np.random.default_rng(1), rounds=25, chunk=7)
    rng = np.random.default_rng(1)
    naive = []
    for size in (7, 7, 7, 4):
        idx = rng.integers(0, 30, size=(size, 30))
        naive.extend(sums[row].sum(axis=0) for row in idx)
    np.testing.assert_allclose(fast, np.array(naive))


def test_position_bias():
    data = synthetic_arena(
        np.random.default_rng(10),
        n_models=4,
        n_prompts=200,
        n_votes=6000,
        left_bias=0.4,
        metric_noise={},
    )
    pos = ag.position_bias(encode_outcomes(data.votes.outcome)).iloc[0]
    n_left = int((data.votes.outcome == "left").sum())
    assert pos.left_wins == n_left and pos.decisive_votes == len(data.votes)
    assert pos.left_win_rate > 0.55 and pos.p_value < 1e-6
    assert pos.ci_low < pos.left_win_rate < pos.ci_high
    fair = ag.position_bias(encode_outcomes(["left", "right"] * 50 + ["tie"] * 7)).iloc[0]
    assert fair.decisive_votes == 100 and fair.p_value == pytest.approx(1.0)


def test_report_is_deterministic_and_handles_empty_input():
    data = synthetic_arena(np.random.default_rng(12), n_models=3, n_prompts=30, n_votes=400)
    a = ag.agreement_report(data.votes, data.scores, np.random.default_rng(5), rounds=30)
    b = ag.agreement_report(data.votes, data.scores, np.random.default_rng(5), rounds=30)
    for name, frame in a.tables().items():
        pd.testing.assert_frame_equal(frame, b.tables()[name])
    empty = ag.agreement_report(
        data.votes.iloc[:0], data.scores.iloc[:0], np.random.default_rng(0), rounds=10
    )
    assert all(len(f) == 0 for f in empty.tables().values() if f is not empty.models)


def test_bad_frames_are_refused_with_the_column_named():
    data = synthetic_arena(np.random.default_rng(13), n_models=3, n_prompts=10, n_votes=50)
    with pytest.raises(ValueError, match="left_image_id"):
        ag.agreement_report(
            data.votes.drop(columns="left_image_id"), data.scores, np.random.default_rng(0)
        )
    with pytest.raises(ValueError, match="value"):
        ag.agreement_report(data.votes, data.scores.drop(columns="value"), np.random.default_rng(0))
    bad = data.votes.copy()
    bad.loc[0, "outcome"] = "maybe"
    with pytest.raises(ValueError, match="maybe"):
        ag.agreement_report(bad, data.scores, np.random.default_rng(0))


# -- model-level metrics (KID, FID ...: one number per model) ----------------------------------
#: The directions these tests store (distances better low, diversity high).
LOWER_IS_BETTER = {"fid", "kid"}


def _model_metrics(rows) -> pd.DataFrame:
    """A frame shaped like ``Store.model_metrics_frame()``."""
    return pd.DataFrame(
        [
            {
                "model": model,
                "model_kind": kind,
                "metric": metric,
                "reference": ref,
                "value": value,
                "std": std,
                "n": 50,
                "warning": "",
                "higher_is_better": metric not in LOWER_IS_BETTER,
                "computed_at": pd.Timestamp("2025-01-01"),
                "details": {"features": f"inception@x#abc+{tag}" if tag else "inception@x#abc"},
            }
            for model, kind, metric, ref, value, std, tag in rows
        ]
    )


def test_model_level_metrics_join_the_correlation_table_like_scipy():
    """ρ and τ of a fixed per-model number against the human ratings equal scipy's on the
    models that have it, oriented by higher_is_better (lower FID = better)."""
    data = synthetic_arena(
        np.random.default_rng(5), n_models=6, n_prompts=100, n_votes=4000, metric_noise={}
    )
    models = sorted(data.votes.left_model.unique())
    # Hand-made: FID falls with the hidden strength except one swapped pair; model-05 has
    # no FID; diversity is arbitrary; a reference set's own row must be ignored.
    order = np.argsort(np.argsort(-data.strength))  # 0 = strongest
    fid = 10.0 + 5.0 * order.astype(float)
    fid[[0, 1]] = fid[[1, 0]]
    rows = [(m, "demo", "fid", "real", fid[k], None, "") for k, m in enumerate(models[:5])]
    rows += [
        (m, "demo", "diversity", "", [0.3, 0.1, 0.2, 0.5, 0.4, 0.6][k], 0.01, "")
        for k, m in enumerate(models)
    ]
    rows += [
        (m, "demo", "kid", "real", 0.01 * (k % 3), 0.002, "demo-random")
        for k, m in enumerate(models)
    ]
    rows.append(("real", "reference", "fid", "real", 0.0, None, ""))
    report = ag.agreement_report(
        data.votes,
        data.scores,
        np.random.default_rng(0),
        rounds=200,
        model_metrics=_model_metrics(rows),
    )
    corr = report.correlations.set_index("metric")
    assert set(corr.index) == {"fid", "diversity", "kid"}
    assert (corr.level == "model").all()
    frame = report.models.set_index("model")
    human = frame.human_rating
    for name, sign in (("fid", -1), ("diversity", 1), ("kid", -1)):
        values = frame[f"{name}_value"]
        ok = values.notna()
        row = corr.loc[name]
        assert row.n_models == ok.sum()
        assert row.spearman == pytest.approx(
            stats.spearmanr(sign * values[ok], human[ok]).statistic
        )
        assert row.kendall == pytest.approx(
            stats.kendalltau(sign * values[ok], human[ok]).statistic
        )
        assert row.few_models == (row.n_models < 6)
        if row.few_models:  # no bootstrap interval over so few models, only the p-value
            assert np.isnan(row[["spearman_low", "kendall_high"]].to_numpy(float)).all()
        else:
            assert row.spearman_low <= row.spearman <= row.spearman_high
            assert row.kendall_low <= row.kendall <= row.kendall_high
        assert 0 < row.spearman_p <= 1 and 0 < row.kendall_p <= 1
        assert np.isnan(row.spearman_bt)  # no battles decided by a per-model number
    assert corr.loc["fid", "n_models"] == 5 and corr.loc["fid", "spearman"] > 0.5
    assert frame.loc[models[0], "kid_std"] == pytest.approx(0.002)
    assert report.info["model_metrics"] == ["diversity", "fid", "kid"]
    assert report.info["model_metric_features"] == [
        "inception@x#abc",
        "inception@x#abc+demo-random",
    ]
    # Without model_metrics nothing changes but the level column of the per-image rows.
    plain = ag.agreement_report(data.votes, data.scores, np.random.default_rng(0), rounds=20)
    assert plain.correlations.empty and plain.info["model_metrics"] == []


def test_model_level_interval_bootstraps_the_human_side_only():
    """A metric that orders the models exactly as the well-separated human ratings has ρ = τ
    = 1 and a degenerate interval at 1; several reference sets label rows metric@reference."""
    data = synthetic_arena(
        np.random.default_rng(8),
        n_models=6,  # 5 would be few_models: no interval
        n_prompts=200,
        n_votes=20000,
        strength_sd=3.0,
        image_sd=0.1,
        metric_noise={},
    )
    models = sorted(data.votes.left_model.unique())
    rows = [
        (m, "demo", "fid", ref, -data.strength[k] + (ref == "b"), None, "")
        for k, m in enumerate(models)
        for ref in ("a", "b")
    ]
    report = ag.agreement_report(
        data.votes,
        data.scores,
        np.random.default_rng(0),
        rounds=100,
        model_metrics=_model_metrics(rows),
    )
    corr = report.correlations.set_index("metric")
    assert list(corr.index) == ["fid@a", "fid@b"]
    for label in corr.index:
        assert corr.loc[label, "spearman"] == 1.0 and corr.loc[label, "kendall"] == 1.0
        assert corr.loc[label, "spearman_low"] == corr.loc[label, "spearman_high"] == 1.0


# -- direction: read from the data, never from a list of names ---------------------------------
def test_a_metric_stored_lower_is_better_is_negated_from_the_data():
    """The same numbers stored with higher_is_better False give the report of their
    negation stored higher-is-better, and the opposite verdict on every decisive vote."""
    data = synthetic_arena(
        np.random.default_rng(11), n_models=5, n_prompts=60, n_votes=1500, metric_noise={"q": 0.3}
    )
    good = data.scores.assign(higher_is_better=True)
    low = data.scores.assign(value=-data.scores.value, higher_is_better=False)
    wrong = data.scores.assign(value=-data.scores.value, higher_is_better=True)

    def report(scores):
        return ag.agreement_report(data.votes, scores, np.random.default_rng(0), rounds=50)

    a, b, c = report(good), report(low), report(wrong)
    for name, table in a.tables().items():
        pd.testing.assert_frame_equal(table, b.tables()[name], check_exact=True)
    decisive_a = a.accuracy.set_index(["metric", "protocol"]).loc[("q", "decisive"), "accuracy"]
    decisive_c = c.accuracy.set_index(["metric", "protocol"]).loc[("q", "decisive"), "accuracy"]
    assert decisive_a > 0.6
    assert decisive_c == pytest.approx(1.0 - decisive_a)  # no metric ties in continuous scores
    assert a.correlations.spearman.iloc[0] == pytest.approx(-c.correlations.spearman.iloc[0])


def test_model_level_direction_comes_from_the_frame():
    """A model-level number stored higher-is-better is not negated, whatever its name; a
    frame without the direction is refused rather than guessed."""
    data = synthetic_arena(
        np.random.default_rng(5), n_models=5, n_prompts=60, n_votes=1500, metric_noise={}
    )
    models = sorted(data.votes.left_model.unique())
    strength = pd.Series(data.strength, index=models)
    frame = _model_metrics([(m, "demo", "fid", "r", float(strength[m]), None, "") for m in models])
    rng = np.random.default_rng(0)
    as_stored = ag.agreement_report(data.votes, data.scores, rng, rounds=50, model_metrics=frame)
    assert as_stored.correlations.set_index("metric").loc["fid", "spearman"] < -0.5
    upward = frame.assign(higher_is_better=True)
    flipped = ag.agreement_report(
        data.votes, data.scores, np.random.default_rng(0), rounds=50, model_metrics=upward
    )
    assert flipped.correlations.set_index("metric").loc["fid", "spearman"] > 0.5
    with pytest.raises(ValueError, match="higher_is_better"):
        ag.agreement_report(
            data.votes,
            data.scores,
            np.random.default_rng(0),
            rounds=5,
            model_metrics=frame.drop(columns="higher_is_better"),
        )
    with pytest.raises(ValueError, match="higher_is_better"):
        ag.agreement_report(
            data.votes, data.scores.drop(columns="higher_is_better"), np.random.default_rng(0)
        )
