"""A machine judge as a rater and as a decider (issue 21, item 3): its agreement with the
human majority against the ceiling on the same pairs, α with and without it, its own
leaderboard and rank correlation, and its position consistency.

References: a hand-computed fixture (3 models, 3 human raters, a judge with known answers
in both orders), the ``krippendorff`` package, ``scipy.stats`` (spearmanr, kendalltau,
binomtest), the textbook Wilson formula, and the project's BT fit on a win matrix built
by hand. Then: the numbers do not move with image ids, model names, rater ids or row
order; adding a judge leaves every human number as it was; the Agreement tab, the
exports and report.html show the judges end to end, and say so when there is none.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta

import krippendorff
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from arena.reports.agreement import AgreementService
from arena.reports.export import export_workspace, read_table
from arena.reports.frames import Filters
from arena.stats.agreement import (
    JUDGE_AGREEMENT_COLUMNS,
    JUDGE_CONSISTENCY_COLUMNS,
    JUDGE_CORRELATION_COLUMNS,
    JUDGE_LEADERBOARD_COLUMNS,
    agreement_report,
    judge_report,
)
from arena.stats.agreement.judges import alpha_contributions, order_consistency
from arena.stats.agreement.reliability import pair_coincidences
from arena.stats.bradley_terry import bt_fit
from arena.stats.elo import to_elo
from arena.storage import db
from arena.storage.store import PromptRow
from tests.agreement_data import relabel_prompts, synthetic_arena
from tests.test_leaderboard import _add_votes, arena_store, simulated_plan  # noqa: F401

T0 = datetime(2025, 5, 1, 9, 0, 0)
MODEL_OF = {1: "A", 2: "B", 3: "C"}  # image id 10·prompt + model digit
JUDGE = 100

# (left image, right image, outcome) per human rater 1, 2, 3, on five image pairs.
HUMANS = {
    "P1": [(11, 12, "left"), (11, 12, "left"), (11, 12, "right")],  # A, A, B: majority A
    "P2": [(22, 23, "left"), (22, 23, "left"), (23, 22, "right")],  # B, B, B: unanimous
    "P3": [(31, 33, "left"), (31, 33, "right"), (31, 33, "tie")],  # A, C, tie: split
    "P4": [(11, 13, "left"), (11, 13, "tie"), (11, 13, "both_bad")],  # one decisive vote
    "P6": [(12, 13, "left"), (12, 13, "left"), (12, 13, "right")],  # B, B, C
}
# The judge's answers: the first order, then the swapped one (None: never given).
JUDGE_ANSWERS = {
    "P1": [(11, 12, "left"), (12, 11, "right")],  # A, A: consistent
    "P2": [(22, 23, "left"), (23, 22, "left")],  # B, C: the left image both times
    "P3": [(31, 33, "right"), (33, 31, "tie")],  # C, tie
    "P4": [(11, 13, "left")],  # A; the swapped order never ran (a job killed midway)
    "P5": [(32, 33, "left"), (33, 32, "right")],  # B, B: no human voted on it
    "P6": [(12, 13, "tie"), (13, 12, "both_bad")],  # no side in either order
}


def _row(vote_id, rater, left, right, outcome, kind):
    return {
        "vote_id": vote_id,
        "created_at": T0 + timedelta(seconds=vote_id),
        "outcome": outcome,
        "rater_id": rater,
        "rater_kind": kind,
        "prompt_id": left // 10,
        "left_image_id": left,
        "right_image_id": right,
        "left_model": MODEL_OF[left % 10],
        "right_model": MODEL_OF[right % 10],
    }


def hand_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """(human votes, judge votes) of the hand fixture, shaped as ``store.votes_frame()``."""
    humans, judge = [], []
    for votes in HUMANS.values():
        for rater, (left, right, outcome) in enumerate(votes, start=1):
            humans.append(_row(len(humans) + 1, rater, left, right, outcome, "human"))
    for answers in JUDGE_ANSWERS.values():
        for order, (left, right, outcome) in zip(("first", "swapped"), answers, strict=False):
            judge.append(_row(1000 + len(judge), JUDGE, left, right, outcome, "judge"))
            judge[-1]["order"] = order
    return pd.DataFrame(humans), pd.DataFrame(judge)


def _hand_report(rounds=200, seed=0):
    human, judge = hand_frames()
    names = pd.DataFrame(
        [{"rater_id": JUDGE, "judge": "tiny", "judge_model": "tiny-vlm", "rater_group": "vlm"}]
    )
    return judge_report(human, judge, np.random.default_rng(seed), names, rounds=rounds)


def _wilson(x, n):
    z = stats.norm.ppf(0.975)
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


# -- (a) the judge as a rater -------------------------------------------------------------------
def test_agreement_with_the_majority_and_the_ceiling_on_the_same_pairs_by_hand():
    row = _hand_report().agreement.iloc[0]
    assert (row.judge, row.judge_model, row.rater_group) == ("tiny", "tiny-vlm", "vlm")
    assert row.votes == 11 and row.pairs == 6
    # Pairs with ≥ 2 decisive human votes and a decisive judge answer: P1, P2, P3.
    # P1: A, A against majority A -> 1. P2: B (agrees), C (disagrees) -> ½.
    # P3: C against an even split (A 1, C 1) -> ½; its tie is no side. P4: one decisive
    # human vote, no majority. P5: no human. P6: the judge gave no side (judge_ties).
    assert row.n == 3 and row.agreement == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert row.judge_ties == 1
    # The ceiling on P1, P2, P3: each decisive human vote against the other humans' majority.
    # P1: A vs (A, B) ½, A vs (A, B) ½, B vs (A, A) 0. P2: 1, 1, 1. P3: A vs C 0, C vs A 0.
    assert row.ceiling_n == 8 and row.ceiling == pytest.approx(4 / 8)
    assert row.difference == pytest.approx(2 / 3 - 1 / 2)
    low, high = _wilson(2.0, 3)
    assert (row.wilson_low, row.wilson_high) == pytest.approx((low, high), abs=1e-12)
    low, high = _wilson(4.0, 8)
    assert (row.ceiling_wilson_low, row.ceiling_wilson_high) == pytest.approx((low, high))
    for point, lo, hi in [
        ("agreement", "ci_low", "ci_high"),
        ("ceiling", "ceiling_ci_low", "ceiling_ci_high"),
        ("difference", "difference_low", "difference_high"),
    ]:
        assert row[lo] <= row[point] + 1e-12 and row[point] <= row[hi] + 1e-12
    assert row.versus_ceiling == "within"  # three pairs: the interval covers 0


def _oriented(left, right, outcome):
    """0: the pair's lower image id won, 1: the higher; 2 tie, 3 both bad."""
    if outcome in ("tie", "both_bad"):
        return {"tie": 2, "both_bad": 3}[outcome]
    won = left if outcome == "left" else right
    return 0 if won == min(left, right) else 1


def _package_alpha(columns: list[list[float]]) -> float:
    """The krippendorff package on coders × units (NaN: no value), nominal."""
    data = np.array(columns, dtype=float).T
    return krippendorff.alpha(
        reliability_data=data, level_of_measurement="nominal", value_domain=[0, 1, 2, 3]
    )


def test_alpha_without_and_with_the_judge_match_the_krippendorff_package():
    """The package on each unit coded both ways round (and, with the judge, once per
    answer of the judge): its coincidences are 2 (4) times ours, so with n pairable values
    α_ours = 1 - (1 - α_pkg)(n - 1) / (n - 1/k) for k = 2 (4) copies of each unit."""
    row = _hand_report().agreement.iloc[0]
    units = ["P1", "P2", "P3", "P4", "P6"]  # the judge's pairs with ≥ 2 human answers
    assert row.alpha_units == len(units)
    swap = {0: 1, 1: 0, 2: 2, 3: 3}
    without, with_judge, n_without, n_with = [], [], 0, 0
    for u in units:
        humans = [_oriented(*v) for v in HUMANS[u]]
        answers = [_oriented(*v) for v in JUDGE_ANSWERS[u]]
        answers = answers * 2 if len(answers) == 1 else answers
        for flip in (False, True):
            coded = [swap[a] if flip else a for a in humans]
            without.append(coded)
            for a in answers:
                with_judge.append([*coded, swap[a] if flip else a])
        n_without += len(humans)
        n_with += len(humans) + 1
    a_pkg = _package_alpha(without)
    expect = 1 - (1 - a_pkg) * (n_without - 1) / (n_without - 1 / 2)
    assert row.alpha_without == pytest.approx(expect, abs=1e-12)
    a_pkg = _package_alpha(with_judge)
    expect_with = 1 - (1 - a_pkg) * (n_with - 1) / (n_with - 1 / 4)
    assert row.alpha_with == pytest.approx(expect_with, abs=1e-12)
    assert row.alpha_change == pytest.approx(expect_with - expect, abs=1e-12)
    # The judge covers every human pair here: α without it is the page's α.
    human, _ = hand_frames()
    page = agreement_report(human, _no_scores(), np.random.default_rng(0), rounds=10)
    assert page.reliability.alpha.iloc[0] == pytest.approx(row.alpha_without, abs=1e-12)


def test_a_judge_with_one_answer_per_pair_is_one_more_coder():
    """Answered once, or the same in both orders, the judge's value simply joins the
    unit's values; answered two ways, the unit's matrix is the mean of both codings."""
    rng = np.random.default_rng(4)
    unit = np.repeat(np.arange(30), 4)
    answer = rng.integers(0, 4, unit.size)
    units = np.arange(30)
    a, b = rng.integers(0, 4, 30), rng.integers(0, 4, 30)
    without, with_a = alpha_contributions(unit, answer, units, a, units)
    np.testing.assert_allclose(without, pair_coincidences(unit, answer)[0], atol=1e-12)
    joined = pair_coincidences(np.r_[unit, units], np.r_[answer, a])[0]
    np.testing.assert_allclose(with_a, joined, atol=1e-12)
    _, twice_a = alpha_contributions(unit, answer, np.r_[units, units], np.r_[a, a], units)
    np.testing.assert_allclose(twice_a, with_a, atol=1e-12)
    _, with_b = alpha_contributions(unit, answer, units, b, units)
    _, with_ab = alpha_contributions(unit, answer, np.r_[units, units], np.r_[a, b], units)
    np.testing.assert_allclose(with_ab, (with_a + with_b) / 2, atol=1e-12)
    # A unit the judge did not answer keeps the humans' matrix.
    _, partial = alpha_contributions(unit, answer, units[:10], a[:10], units)
    np.testing.assert_allclose(partial[10:], without[10:], atol=1e-12)


# -- (c) position consistency -----------------------------------------------------------------
def test_position_consistency_and_left_choices_by_hand():
    row = _hand_report().consistency.iloc[0]
    # Both orders: P1 (A, A), P2 (B, C), P3 (C, tie), P5 (B, B), P6 (tie, both bad); P4 once.
    assert row.pairs_both_orders == 5 and row.consistent == 2
    assert row.consistency == pytest.approx(2 / 5)
    assert (row.wilson_low, row.wilson_high) == pytest.approx(_wilson(2.0, 5), abs=1e-12)
    assert row.left_both == 1 and row.right_both == 0  # P2
    # Decisive answers: P1 L R, P2 L L, P3 R, P4 L, P5 L R -> 5 of 8 on the left.
    assert row.decisive_votes == 8 and row.left_wins == 5
    test = stats.binomtest(5, 8, 0.5)
    assert row.left_p == pytest.approx(test.pvalue)
    ci = test.proportion_ci(0.95)
    assert (row.left_low, row.left_high) == pytest.approx((ci.low, ci.high))


def test_order_consistency_maps_the_swapped_order_back():
    # unit 0: lower image on the left "lower won", on the right "lower won": consistent.
    # unit 1: left image both times (lower, then higher): left_both. unit 2: right both.
    unit = np.array([0, 0, 1, 1, 2, 2, 3])
    answer = np.array([0, 0, 0, 1, 1, 0, 0])
    lower_left = np.array([True, False, True, False, True, False, True])
    got = order_consistency(unit, answer, lower_left, 4)
    assert got == {"pairs": 3, "consistent": 1, "left_both": 1, "right_both": 1}


# -- (b) the judge as a decider ---------------------------------------------------------------
def test_the_judges_own_leaderboard_is_the_bt_fit_of_its_battles():
    report = _hand_report()
    board = report.leaderboard.set_index("model")
    # Its battles, a tie or both-bad half a win each way (row beats column; A, B, C):
    # P1 A>B twice; P2 B>C, C>B; P3 C>A, tie; P4 A>C; P5 B>C twice; P6 tie, both bad.
    wins = np.array([[0, 2, 1.5], [0, 0, 4], [1.5, 2, 0]])
    rating = to_elo(bt_fit(wins))
    np.testing.assert_allclose(board.loc[["A", "B", "C"], "rating"], rating, atol=1e-9)
    assert list(report.leaderboard["model"]) == ["A", "B", "C"]  # by rank
    # A: P1, P3, P4; B: P1, P2, P5, P6; C: P2, P3, P4, P5, P6.
    assert list(board.loc[["A", "B", "C"], "votes"]) == [
        2 + 2 + 1,
        2 + 2 + 2 + 2,
        2 + 2 + 1 + 2 + 2,
    ]
    # The human board beside it: every human vote, ties split.
    human = np.array([[0, 2, 3.5], [1, 0, 5], [2.5, 1, 0]])
    np.testing.assert_allclose(
        board.loc[["A", "B", "C"], "human_rating"], to_elo(bt_fit(human)), atol=1e-9
    )
    corr = report.correlations.iloc[0]
    assert corr.n_models == 3 and corr.few_models
    rho = stats.spearmanr(board["rating"], board["human_rating"]).statistic
    tau = stats.kendalltau(board["rating"], board["human_rating"]).statistic
    assert corr.spearman == pytest.approx(rho) and corr.kendall == pytest.approx(tau)
    # By hand: the judge ranks A, B, C; the people B, A, C (B's wins over C weigh more).
    assert list(board.loc[["A", "B", "C"], "human_rank"]) == [2, 1, 3]
    assert corr.spearman == pytest.approx(1 - 6 * 2 / (3 * 8))  # Σd² = 2
    assert corr.kendall == pytest.approx((2 - 1) / 3)  # (A, B) discordant, the others not
    assert np.isnan(corr.spearman_low)  # three models: no interval, the p-value instead
    assert corr.spearman_p == pytest.approx(
        1.0
    )  # ρ ≥ 0.5 in 3 of 6 orders, ≤ 0.5 in 5: 2·min(3/6, 5/6)


def _judge_votes(data, rng, pairs=600, noise=0.6, left_bias=0.0, model_bias=None, rater=900):
    """A simulated judge on the arena's first distinct image pairs, in both orders (its
    second order missing on every tenth pair): it sees the hidden quality with noise."""
    lo = np.minimum(data.votes.left_image_id, data.votes.right_image_id)
    hi = np.maximum(data.votes.left_image_id, data.votes.right_image_id)
    votes = data.votes[~pd.concat([lo, hi], axis=1).duplicated().to_numpy()].head(pairs)
    model_bias = model_bias or {}
    out = []
    for order in (0, 1):
        p = votes.copy()
        if order:
            p = p[np.arange(len(p)) % 10 != 0]
            p = p.rename(
                columns={
                    "left_image_id": "right_image_id",
                    "right_image_id": "left_image_id",
                    "left_model": "right_model",
                    "right_model": "left_model",
                    "left_sha256": "right_sha256",
                    "right_sha256": "left_sha256",
                }
            )
        q = data.quality
        bias = p["left_model"].map(model_bias).fillna(0) - p["right_model"].map(model_bias).fillna(
            0
        )
        u = (
            q[p["left_image_id"].to_numpy() - 1]
            - q[p["right_image_id"].to_numpy() - 1]
            + bias.to_numpy()
            + left_bias
            + rng.normal(0, noise, len(p))
        )
        p["outcome"] = np.where(np.abs(u) < 0.1, "tie", np.where(u > 0, "left", "right"))
        p["rater_id"] = rater
        p["rater_kind"] = "judge"
        p["vote_id"] = 10**6 + order * 10**5 + np.arange(len(p))
        p["created_at"] = pd.Timestamp("2025-02-01") + pd.to_timedelta(p["vote_id"], unit="s")
        out.append(p)
    return pd.concat(out, ignore_index=True)


@pytest.fixture(scope="module")
def simulated():
    data = synthetic_arena(
        np.random.default_rng(11), n_models=8, n_prompts=80, n_votes=5000, n_raters=40,
        rater_sd=0.8, tie_band=0.1,
    )  # fmt: skip
    rng = np.random.default_rng(12)
    judges = pd.concat(
        [
            _judge_votes(data, rng, model_bias={"model-00": 1.5, "model-07": -1.0}),
            _judge_votes(data, rng, pairs=400, noise=2.0, left_bias=0.8, rater=901),
        ],
        ignore_index=True,
    )
    return data, judges


def test_rank_correlation_against_scipy_on_eight_models(simulated):
    data, judges = simulated
    report = judge_report(data.votes, judges, np.random.default_rng(0), rounds=100)
    assert list(report.correlations["judge"]) == ["judge 900", "judge 901"]
    for row in report.correlations.itertuples():
        board = report.leaderboard[report.leaderboard.judge == row.judge]
        assert board["identified"].all() and len(board) == 8 == row.n_models
        rho = stats.spearmanr(board["rating"], board["human_rating"]).statistic
        tau = stats.kendalltau(board["rating"], board["human_rating"]).statistic
        assert row.spearman == pytest.approx(rho) and row.kendall == pytest.approx(tau)
        assert row.spearman < 1 and not row.few_models
        assert row.spearman_low <= row.spearman <= row.spearman_high
    # The biased judge lifts model-00 above its human rank.
    biased = report.leaderboard[report.leaderboard.judge == "judge 900"].set_index("model")
    assert biased.at["model-00", "rank"] < biased.at["model-00", "human_rank"]
    # The noisy left-leaning judge: less consistent, more left, further from people.
    cons = report.consistency.set_index("judge")
    assert cons.at["judge 901", "left_win_rate"] > 0.6 > cons.at["judge 900", "left_win_rate"]
    assert cons.at["judge 901", "left_p"] < 1e-6
    assert cons.at["judge 901", "consistency"] < cons.at["judge 900", "consistency"]
    assert cons.at["judge 901", "left_both"] > cons.at["judge 901", "right_both"]
    agree = report.agreement.set_index("judge")
    assert agree.at["judge 901", "agreement"] < agree.at["judge 900", "agreement"]
    assert agree.at["judge 901", "versus_ceiling"] == "below"
    assert agree.at["judge 901", "alpha_change"] < 0
    # Pairs answered once (every tenth) are counted as raters, not for consistency.
    assert cons.at["judge 900", "pairs_both_orders"] == agree.at["judge 900", "pairs"] - 60


def _relabelled(frame, image_map, model_map, rater_shift):
    out = frame.copy()
    for side in ("left", "right"):
        out[f"{side}_image_id"] = out[f"{side}_image_id"].map(image_map)
        out[f"{side}_model"] = out[f"{side}_model"].map(model_map)
    out["rater_id"] = out["rater_id"] + rater_shift
    return out.sample(frac=1.0, random_state=5).reset_index(drop=True)


def test_numbers_do_not_move_with_ids_names_or_row_order(simulated):
    """Image ids reversed (every pair's lower image becomes its higher), model names whose
    sort order is reversed, rater ids shifted and rows shuffled: the same tables."""
    data, judges = simulated
    report = judge_report(data.votes, judges, np.random.default_rng(0), rounds=100)
    ids = np.unique(np.r_[data.votes.left_image_id, data.votes.right_image_id])
    image_map = {int(i): int(10_000 - i) for i in ids}
    models = sorted(data.images.model.unique())
    model_map = {m: f"m{99 - k:02d}" for k, m in enumerate(models)}
    judge_names = pd.DataFrame(
        {"rater_id": [900 + 7, 901 + 7], "judge": ["judge 900", "judge 901"]}
    )
    again = judge_report(
        _relabelled(data.votes, image_map, model_map, 7),
        _relabelled(judges, image_map, model_map, 7),
        np.random.default_rng(0),
        judge_names,
        rounds=100,
    )
    for name in ("agreement", "consistency", "correlations"):
        pd.testing.assert_frame_equal(
            getattr(again, name), getattr(report, name), check_exact=False, rtol=1e-9
        )
    board = report.leaderboard.assign(model=report.leaderboard.model.map(model_map))
    pd.testing.assert_frame_equal(again.leaderboard, board, check_exact=False, rtol=1e-6)


def test_relabelled_prompts_move_no_interval(simulated):
    """The bootstrap numbers the prompts by their content: the same prompts imported in
    another order (other ids, rows shuffled) give exactly the same tables."""
    data, judges = simulated

    def tables(votes, judge_votes, prompts):
        rng = np.random.default_rng(0)
        return judge_report(votes, judge_votes, rng, rounds=100, prompts=prompts).tables()

    base = tables(data.votes, judges, data.prompts)
    prompts, votes, judge_votes = relabel_prompts(data.prompts, data.votes, judges)
    for name, table in tables(votes, judge_votes, prompts).items():
        pd.testing.assert_frame_equal(table, base[name], check_exact=True, obj=name)
    agreement = base["judge_agreement"]
    assert (agreement.ci_low < agreement.ci_high).all()


def test_no_judge_votes_give_empty_tables_with_their_columns():
    human, _ = hand_frames()
    report = judge_report(human, None, np.random.default_rng(0))
    assert report.empty
    assert list(report.agreement.columns) == JUDGE_AGREEMENT_COLUMNS
    assert list(report.consistency.columns) == JUDGE_CONSISTENCY_COLUMNS
    assert list(report.correlations.columns) == JUDGE_CORRELATION_COLUMNS
    assert list(report.leaderboard.columns) == JUDGE_LEADERBOARD_COLUMNS
    with pytest.raises(ValueError, match=r"judge votes frame lacks columns \['left_model'"):
        judge_report(human, human.drop(columns="left_model"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="level"):
        judge_report(human, human, np.random.default_rng(0), level=1.5)


def _no_scores():
    return pd.DataFrame(columns=["image_id", "metric", "version", "value", "higher_is_better"])


# -- through the store: the page, the exports, report.html, and the human numbers -------------
def hand_store(store, with_judge=True):
    """The hand fixture in a real workspace: the judge a rater of kind judge, with its
    details on the rater row and on each vote, as ``arena judge`` writes them."""
    store.add_prompts([PromptRow(f"prompt {k}", f"p{k}", "", "cats") for k in (1, 2, 3)], "set")
    with store.session() as s:
        prompts = sorted(p.id for p in s.query(db.Prompt))
    image_ids = {}
    for digit, name in MODEL_OF.items():
        mid = store.add_model(name, "import")
        with store.session() as s:
            for k, pid in enumerate(prompts, start=1):
                image = db.Image(
                    sha256=f"{name}-{pid}".ljust(64, "0"), model_id=mid, prompt_id=pid,
                    width=8, height=8,
                )  # fmt: skip
                s.add(image)
                s.flush()
                image_ids[10 * k + digit] = (image.id, pid)
    human, judge = hand_frames()
    raters = {r: store.rater_id(f"person-{r}", kind="human") for r in (1, 2, 3)}
    if with_judge:
        raters[JUDGE] = store.rater_id("judge:tiny", kind="judge", group="vlm")
        with store.session() as s:
            s.get(db.Rater, raters[JUDGE]).details = {
                "name": "tiny",
                "model": "tiny-vlm",
                "template": "Which image fits '{prompt}' better?",
                "answers": {"left": "A", "right": "B", "tie": "C", "both_bad": "D"},
            }
    frames = [human, judge] if with_judge else [human]
    with store.session() as s:
        for frame in frames:
            for r in frame.itertuples():
                is_judge = r.rater_kind == "judge"
                battle = db.Battle(
                    token=uuid.uuid4().hex,
                    prompt_id=image_ids[r.left_image_id][1],
                    left_image_id=image_ids[r.left_image_id][0],
                    right_image_id=image_ids[r.right_image_id][0],
                    rater_id=raters[r.rater_id],
                    policy="judge" if is_judge else "uniform",
                    served_at=r.created_at,
                )
                s.add(battle)
                s.flush()
                probs = {o: 0.1 for o in ("left", "right", "tie", "both_bad")}
                probs[r.outcome] = 0.7
                details = {"probs": probs, "order": r.order} if is_judge else None
                s.add(
                    db.Vote(
                        battle_id=battle.id, rater_id=raters[r.rater_id], outcome=r.outcome,
                        created_at=r.created_at, details=details,
                    )
                )  # fmt: skip
    return store


def test_the_agreement_service_reads_the_judge_from_the_store(store):
    result = AgreementService(hand_store(store).with_settings(bootstrap_rounds=50)).get(seed=1)
    assert result.votes_used == 15  # the judge's 11 votes are not the report's votes
    pure = _hand_report(rounds=50)
    got = result.report.judges
    cols = ["judge", "judge_model", "rater_group", "votes", "pairs", "agreement", "n",
            "ceiling", "ceiling_n", "alpha_without", "alpha_with", "wilson_low"]  # fmt: skip
    pd.testing.assert_frame_equal(got.agreement[cols], pure.agreement[cols])
    pd.testing.assert_frame_equal(got.consistency, pure.consistency)
    assert list(got.leaderboard.model) == ["A", "B", "C"]
    # Asked for the judges, the report's votes are the judge's, read against every person.
    judged = AgreementService(store.with_settings(bootstrap_rounds=50)).get(
        Filters(rater_kind="judge"), seed=1
    )
    assert judged.votes_used == 11
    pd.testing.assert_frame_equal(judged.report.judges.agreement[cols], got.agreement[cols])
    # A group of people: the judge is read against that group only (none here: no majority).
    grouped = AgreementService(store).get(Filters(rater_group="expert"), rounds=5)
    assert grouped.report.judges.agreement.n.iloc[0] == 0


def _human_tables(report):
    return {k: v for k, v in report.tables().items() if not k.startswith("judge_")}


def test_judge_votes_leave_every_human_number_unchanged(arena_store):  # noqa: F811
    """The arena's 808 people's votes; then a judge on the same battles in both orders."""
    service = AgreementService(arena_store.with_settings(bootstrap_rounds=30))
    before = {
        "all": service.get(seed=3).report,
        "human": service.get(Filters(rater_kind="human"), seed=3).report,
    }
    assert before["all"].judges.empty
    rng = np.random.default_rng(1)
    plan = []
    for left, right, outcome, _kind, category, day in simulated_plan(rng, 300):
        swapped = {"left": "right", "right": "left"}.get(outcome, outcome)
        plan.append((left, right, "left", "judge", category, day))  # a left-leaning judge
        plan.append((right, left, swapped, "judge", category, day))
    _add_votes(arena_store, plan)
    service = AgreementService(arena_store.with_settings(bootstrap_rounds=30))  # no cache
    for key, filters in (("all", Filters()), ("human", Filters(rater_kind="human"))):
        after = service.get(filters, seed=3).report
        assert not after.judges.empty
        for name, table in _human_tables(before[key]).items():
            pd.testing.assert_frame_equal(_human_tables(after)[name], table, obj=name)


def test_the_agreement_tab_shows_the_judges(store):
    from arena.ui.agreement_tab import agreement_outputs

    service = AgreementService(hand_store(store).with_settings(bootstrap_rounds=30))
    *_, summary, raters, deciders, boards = agreement_outputs(service)
    assert "**tiny** agrees with the majority on 66.7% of 3 pairs" in summary
    assert "people on 50.0% of the same pairs" in summary
    assert "disagrees with people more than people disagree with each other" in summary
    assert "not distinguishable from the human ceiling (+16.7 pts [" in summary
    assert raters.iloc[0]["Judge"] == "tiny" and raters.iloc[0]["Model"] == "tiny-vlm"
    assert raters.iloc[0]["Agreement with majority"].startswith("66.7% [")
    assert deciders.iloc[0]["Orders agree"].startswith("40.0% [")
    assert deciders.iloc[0]["Orders agree"].endswith("of 5 pairs")
    assert list(boards.columns) == ["Model", "human", "tiny"]
    assert list(boards["Model"]) == ["B", "A", "C"]  # by the human rating
    assert boards.iloc[0]["tiny"].endswith("(#2)") and boards.iloc[1]["tiny"].endswith("(#1)")


def test_the_agreement_tab_says_when_there_is_no_judge(store):
    from arena.ui.agreement_tab import agreement_outputs

    service = AgreementService(hand_store(store, with_judge=False))
    *_, summary, raters, deciders, boards = agreement_outputs(service)
    assert summary.startswith("**Judges:** no machine judge has voted")
    assert raters.empty and deciders.empty and boards.empty
    # A filter it cannot read says so above; the judge section stays blank.
    *_, summary, raters, _, _ = agreement_outputs(service, since="not a date")
    assert summary == "" and raters.empty


def test_exports_and_report_html_carry_the_judge_tables(store, tmp_path):
    out = tmp_path / "export"
    export_workspace(hand_store(store), out, rounds=30, seed=2)
    manifest = json.loads((out / "manifest.json").read_text())
    for name in ("judge_agreement", "judge_consistency", "judge_correlations", "judge_leaderboard"):
        assert manifest["tables"][name]["rows"] >= 1
    agreement = read_table(out / "judge_agreement.csv")
    assert list(agreement.columns) == JUDGE_AGREEMENT_COLUMNS
    assert agreement.judge.iloc[0] == "tiny"
    assert agreement.agreement.iloc[0] == pytest.approx(2 / 3)
    assert read_table(out / "judge_leaderboard.csv").model.tolist() == ["A", "B", "C"]
    assert manifest["summary"]["judges"] == 1
    votes = read_table(out / "votes.csv")
    assert "judge" not in set(votes.rater_kind)  # the judge's votes stay out of the votes table
    page = (out / "report.html").read_text()
    assert "<h2>Judges</h2>" in page and "tiny-vlm" in page and "Position consistency" in page
    # Deterministic: the same bytes again.
    again = tmp_path / "again"
    export_workspace(store, again, rounds=30, seed=2)
    for name in ("judge_agreement", "judge_consistency", "judge_correlations", "judge_leaderboard"):
        assert (again / f"{name}.csv").read_bytes() == (out / f"{name}.csv").read_bytes()


def test_an_export_without_judges_has_empty_judge_tables_and_a_note(store, tmp_path):
    out = tmp_path / "export"
    export_workspace(hand_store(store, with_judge=False), out, rounds=10, seed=2)
    assert read_table(out / "judge_agreement.csv").empty
    assert "No machine judge voted" in (out / "report.html").read_text()
