"""Expert vs crowd (issue 21, item 4): the rater groups compared by their leaderboards,
the rank correlation of those boards and their agreement on shared image pairs, against
hand-counted values, scipy and an independent BT fit; invariance to labels; the seeded
bootstrap; the Agreement tab, the exports and the Exports panel's Raters filter."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats

from arena.reports.agreement import AgreementService
from arena.reports.export import export_workspace, read_table
from arena.reports.frames import Filters
from arena.stats import agreement as ag
from arena.stats import ratings as rt
from arena.stats.agreement import groups as gs
from arena.stats.bradley_terry import RIDGE
from arena.stats.elo import THETA_TO_ELO
from tests.admin_only import assert_admin_only
from tests.agreement_data import populate_store, relabel_prompts, small_arena, synthetic_arena

MODEL = {1: "A", 2: "B", 3: "C"}
EXPERT, CROWD = "expert", "crowd"
# (rater, prompt, left image, right image, outcome); image = 10 * prompt + model (A=1,B=2,C=3)
EXPERT_VOTES = [
    (3, 1, 12, 11, "right"),  # e3 prefers A ... (superseded by its later vote)
    (1, 1, 11, 12, "left"),  # e1 A
    (2, 1, 12, 11, "right"),  # e2 A (shown swapped)
    (3, 1, 11, 12, "right"),  # e3 B: its latest answer on the pair
    (1, 1, 12, 13, "left"),  # e1 B
    (2, 1, 13, 12, "right"),  # e2 B
    (1, 1, 11, 13, "left"),  # e1 A
    (3, 1, 11, 13, "right"),  # e3 C
    (2, 2, 22, 21, "right"),  # e2 A
    (3, 2, 21, 22, "left"),  # e3 A
    (1, 2, 22, 23, "left"),  # e1 B
    (3, 2, 22, 23, "right"),  # e3 C
    (1, 2, 21, 23, "left"),  # e1 A
    (2, 2, 23, 21, "right"),  # e2 A
    (1, 3, 31, 32, "left"),  # e1 A (prompt 3: a pair only the experts voted on)
    (2, 3, 31, 32, "left"),  # e2 A
]
CROWD_VOTES = [
    (4, 1, 11, 12, "right"),  # c1 B
    (5, 1, 12, 11, "left"),  # c2 B
    (6, 1, 11, 12, "left"),  # c3 A
    (4, 1, 12, 13, "left"),  # c1 B
    (5, 1, 12, 13, "right"),  # c2 C
    (6, 1, 13, 12, "right"),  # c3 B
    (4, 1, 11, 13, "left"),  # c1 A
    (5, 1, 13, 11, "right"),  # c2 A
    (4, 2, 21, 22, "right"),  # c1 B
    (5, 2, 21, 22, "right"),  # c2 B
    (5, 2, 22, 23, "left"),  # c2 B
    (6, 2, 21, 23, "right"),  # c3 C
    (4, 2, 21, 23, "left"),  # c1 A
    (5, 2, 21, 23, "tie"),  # c2 tie (no side: left out of every agreement)
    (4, 3, 32, 33, "left"),  # c1 B (prompt 3: a pair only the crowd voted on)
    (5, 3, 33, 32, "right"),  # c2 B
]
# The win matrices by hand (row beat column; a tie is half a win each way), models A, B, C.
EXPERT_WINS = np.array([[0, 7, 3], [1, 0, 3], [1, 1, 0]], dtype=float)
CROWD_WINS = np.array([[0, 1, 3.5], [4, 0, 5], [1.5, 1, 0]], dtype=float)


def hand_votes(extra=()) -> pd.DataFrame:
    """The fixture as a ``Store.votes_frame()``-shaped frame, in time order."""
    rows = [(*v, EXPERT) for v in EXPERT_VOTES] + [(*v, CROWD) for v in CROWD_VOTES]
    rows += list(extra)
    frame = pd.DataFrame(
        rows,
        columns=["rater_id", "prompt_id", "left_image_id", "right_image_id", "outcome", "grp"],
    )
    frame = frame.rename(columns={"grp": "rater_group"})
    frame["vote_id"] = np.arange(1, len(frame) + 1)
    frame["created_at"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(frame["vote_id"], "s")
    frame["left_model"] = (frame["left_image_id"] % 10).map(MODEL)
    frame["right_model"] = (frame["right_image_id"] % 10).map(MODEL)
    frame["rater_kind"] = "human"
    return frame


def _bt_by_scipy(wins: np.ndarray) -> np.ndarray:
    """The penalised BT fit by a general-purpose optimiser (not the project's Newton)."""

    def loss(theta):
        d = theta[:, None] - theta[None, :]
        return -(wins * special.log_expit(d)).sum() + RIDGE * (theta**2).sum()

    theta = optimize.minimize(loss, np.zeros(len(wins)), method="BFGS", tol=1e-12).x
    return 1000.0 + THETA_TO_ELO * (theta - theta.mean())


# -- by hand -----------------------------------------------------------------------------------
def test_each_group_gets_its_own_board():
    comparison = gs.group_comparison(hand_votes(), np.random.default_rng(0), rounds=50)
    boards = comparison.boards
    assert comparison.groups == [CROWD, EXPERT]  # named groups sorted
    assert boards.groupby("group", sort=False)["model"].apply(list).to_dict() == {
        CROWD: ["B", "A", "C"],
        EXPERT: ["A", "B", "C"],
    }
    for group, wins in ((EXPERT, EXPERT_WINS), (CROWD, CROWD_WINS)):
        board = boards[boards.group == group].set_index("model")
        expected = _bt_by_scipy(wins)
        np.testing.assert_allclose(board.loc[["A", "B", "C"], "rating"], expected, atol=1e-4)
        assert board["rank"].tolist() == [1, 2, 3] and board["identified"].all()
        assert (board.rating_low <= board.rating).all() and (
            board.rating <= board.rating_high
        ).all()
    votes = boards.set_index(["group", "model"])["votes"]
    assert votes[EXPERT].to_dict() == {"A": 12, "B": 12, "C": 8}
    assert votes[CROWD].to_dict() == {"B": 11, "A": 10, "C": 11}


def test_a_group_board_is_the_leaderboard_of_its_votes_alone():
    """The group's board is the one the leaderboard machinery (compute_ratings) and the
    agreement page's human board give for that group's votes filtered on their own."""
    data = synthetic_arena(np.random.default_rng(5), n_models=6, n_prompts=40, n_votes=2500)
    votes = data.votes.assign(rater_group=np.where(data.votes.rater_id % 3 == 0, EXPERT, CROWD))
    comparison = gs.group_comparison(votes, np.random.default_rng(1), rounds=20)
    for group in (EXPERT, CROWD):
        own = votes[votes.rater_group == group]
        ratings = rt.compute_ratings(
            own.left_model, own.right_model, own.outcome, np.random.default_rng(0), rounds=0
        )
        board = comparison.boards[comparison.boards.group == group].set_index("model")
        for name, rating in zip(ratings.names, ratings.rating, strict=True):
            assert board.loc[name, "rating"] == pytest.approx(rating, abs=1e-6)
        report = ag.agreement_report(own, data.scores.iloc[:0], np.random.default_rng(0), rounds=5)
        human = report.leaderboards.set_index("model")
        np.testing.assert_allclose(board.loc[human.index, "rating"], human.rating, atol=1e-6)
        ceiling = report.accuracy.set_index("metric").loc[ag.CEILING]
        summary = comparison.summary.set_index("group").loc[group]
        assert summary.within == pytest.approx(ceiling.accuracy, abs=1e-12)
        assert summary.within_votes == ceiling.n


def test_rank_correlation_by_hand_and_against_scipy():
    comparison = gs.group_comparison(hand_votes(), np.random.default_rng(0), rounds=50)
    [row] = comparison.correlation.to_dict("records")
    assert (row["group_a"], row["group_b"], row["n_models"]) == (CROWD, EXPERT, 3)
    # Ranks A, B, C: experts 1, 2, 3; crowd 2, 1, 3: ρ = 1 - 6·2/(3·8) = 0.5, τ = (2 - 1)/3.
    assert row["spearman"] == pytest.approx(0.5) and row["kendall"] == pytest.approx(1 / 3)
    boards = comparison.boards.pivot(index="model", columns="group", values="rating")
    assert row["spearman"] == pytest.approx(stats.spearmanr(boards[CROWD], boards[EXPERT])[0])
    assert row["kendall"] == pytest.approx(stats.kendalltau(boards[CROWD], boards[EXPERT])[0])
    # 3 models: every pairing enumerated; ρ = 0.5 is reached or passed by 4 of 6 orders
    # on either side (two-sided p = 2 · 4/6, capped at 1).
    exact = stats.permutation_test(
        (boards[CROWD].to_numpy(), boards[EXPERT].to_numpy()),
        lambda x, y: stats.spearmanr(x, y)[0],
        permutation_type="pairings",
        alternative="two-sided",
    )
    assert row["spearman_p"] == pytest.approx(exact.pvalue)
    assert row["few_models"] and np.isnan(row["spearman_low"]) and np.isnan(row["kendall_high"])


def test_cross_group_agreement_by_hand():
    comparison = gs.group_comparison(hand_votes(), np.random.default_rng(0), rounds=50)
    rows = comparison.agreement.set_index(["votes_of", "majority_of"])
    assert (rows.group_a == CROWD).all() and (rows.group_b == EXPERT).all()
    assert (rows.shared_pairs == 6).all()  # the three pairs of prompts 1 and 2
    # Per shared pair, an expert's vote against the crowd's majority:
    # (A,B) crowd B,B,A: e1 A 0, e2 A 0, e3 B 1; (B,C) crowd B,C,B: e1 1, e2 1;
    # (A,C) crowd A,A: e1 A 1, e3 C 0; prompt 2: (A,B) crowd B,B: 0, 0; (B,C) crowd B:
    # e1 1, e3 0; (A,C) crowd C, A (the tie left out): an even split, ½ and ½.
    expected = {
        (EXPERT, CROWD): (6.0, 13, 6),
        (CROWD, EXPERT): (5.5, 13, 6),  # crowd votes against the experts' majority
        (EXPERT, EXPERT): (7.0, 13, 6),  # held-out expert vs the other experts, shared pairs
        # the crowd against the rest of it: (A,B) B,B,A: ½, ½, 0; (B,C) B,C,B: ½, 0, ½;
        # (A,C) A,A and prompt 2's (A,B) B,B: 1 each; (B,C) one vote: no rest; (A,C) C, A: 0, 0
        (CROWD, CROWD): (6.0, 12, 5),
    }
    for key, (credit, votes, pairs) in expected.items():
        assert rows.loc[key, "agreement"] == pytest.approx(credit / votes), key
        assert (rows.loc[key, "votes"], rows.loc[key, "pairs"]) == (votes, pairs), key
    summary = comparison.summary.set_index("group")
    # Over every pair of the group, prompt 3's unshared pair included (both agree: 2/2).
    assert summary.loc[EXPERT, "within"] == pytest.approx(9 / 15)
    assert summary.loc[CROWD, "within"] == pytest.approx(8 / 14)
    assert summary.loc[EXPERT, ["raters", "votes", "prompts", "models"]].tolist() == [3, 16, 3, 3]
    assert summary.loc[CROWD, ["raters", "votes", "prompts", "models"]].tolist() == [3, 16, 3, 3]


def test_majority_credit_by_hand():
    # Unit 0: voters answer 0, 0, 1; reference 0, 1 (split) -> ½ each. Unit 1: reference
    # 1, 1 -> a voter's 1 agrees, its 0 does not. Unit 2: no reference -> not counted.
    # Unit 1's tie (2) is no answer.
    unit = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 2])
    value = np.array([0, 0, 1, 0, 1, 1, 0, 1, 1, 2, 0])
    voters = np.array([1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1], dtype=bool)
    credit, counted = gs.majority_credit(unit, value, voters, ~voters)
    assert counted.tolist() == [True] * 3 + [False] * 2 + [True] * 2 + [False] * 4
    assert credit[counted].tolist() == [0.5, 0.5, 0.5, 1.0, 0.0]
    with pytest.raises(ValueError, match="overlap"):
        gs.majority_credit(unit, value, voters, voters)


def test_votes_in_no_group_form_their_own_group():
    extra = [(7, 1, 11, 12, "left", None), (8, 1, 12, 11, "right", float("nan"))]
    comparison = gs.group_comparison(hand_votes(extra), np.random.default_rng(0), rounds=20)
    assert comparison.groups == [CROWD, EXPERT, gs.NO_GROUP]
    assert len(comparison.correlation) == 3 and len(comparison.agreement) == 12
    loose = comparison.boards[comparison.boards.group == gs.NO_GROUP]
    assert not loose.identified.any()  # A beat B twice: no rating from that alone
    corr = comparison.correlation.set_index(["group_a", "group_b"])
    assert corr.loc[(CROWD, gs.NO_GROUP), "n_models"] == 0
    assert np.isnan(corr.loc[(CROWD, gs.NO_GROUP), "spearman"])
    rows = comparison.agreement.set_index(["votes_of", "majority_of"])
    # The two loose votes (A, A) against the experts' majority A,A,B: 2/2; the experts'
    # own rows do not move.
    assert rows.loc[(gs.NO_GROUP, EXPERT), "agreement"] == pytest.approx(1.0)
    assert rows.loc[(gs.NO_GROUP, EXPERT), "shared_pairs"] == 1
    assert rows.loc[(EXPERT, CROWD), "agreement"] == pytest.approx(6 / 13)


def test_one_group_or_none_compares_nothing():
    one = gs.group_comparison(
        hand_votes()[lambda f: f.rater_group == EXPERT], np.random.default_rng(0), rounds=5
    )
    assert one.groups == [EXPERT] and one.correlation.empty and one.agreement.empty
    assert len(one.summary) == 1 and len(one.boards) == 3
    empty = gs.group_comparison(hand_votes().iloc[:0], np.random.default_rng(0), rounds=5)
    assert empty.groups == [] and all(t.empty for t in empty.tables().values())
    assert list(empty.agreement.columns) == gs.AGREEMENT_COLUMNS
    no_column = gs.group_comparison(
        hand_votes().drop(columns="rater_group"), np.random.default_rng(0), rounds=5
    )
    assert no_column.groups == [gs.NO_GROUP]


def test_bad_input_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"lacks columns \['prompt_id'\]"):
        gs.group_comparison(hand_votes().drop(columns="prompt_id"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="rounds=0"):
        gs.group_comparison(hand_votes(), np.random.default_rng(0), rounds=0)
    with pytest.raises(ValueError, match="level"):
        gs.group_comparison(hand_votes(), np.random.default_rng(0), level=1.5)


# -- invariance and the bootstrap --------------------------------------------------------------
def _grouped_arena(seed=2, n_models=7):
    data = synthetic_arena(
        np.random.default_rng(seed),
        n_models=n_models,
        n_prompts=50,
        n_votes=3000,
        n_raters=18,
        rater_sd=0.6,
        tie_band=0.15,
    )
    group = np.where(
        data.votes.rater_id <= 8, EXPERT, np.where(data.votes.rater_id <= 15, CROWD, None)
    )
    return data.votes.assign(rater_group=group)


def _canonical(comparison, group_map=None, model_map=None) -> dict[str, pd.DataFrame]:
    """The tables with labels mapped back and rows in a label-free order."""
    group_map, model_map = group_map or {}, model_map or {}
    out = {}
    for name, frame in comparison.tables().items():
        frame = frame.copy()
        for col in ("group", "group_a", "group_b", "votes_of", "majority_of"):
            if col in frame:
                frame[col] = frame[col].map(lambda g: group_map.get(g, g))
        if "group_a" in frame:  # a pair of groups is unordered
            a, b = frame.group_a.copy(), frame.group_b.copy()
            frame["group_a"], frame["group_b"] = np.minimum(a, b), np.maximum(a, b)
        if "model" in frame:
            frame["model"] = frame["model"].map(lambda m: model_map.get(m, m))
        keys = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
        out[name] = frame.sort_values(keys).reset_index(drop=True)
    return out


def _assert_same(a: dict, b: dict):
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-9, atol=1e-6)


def test_numbers_do_not_move_with_labels_or_row_order():
    votes = _grouped_arena()
    base = _canonical(gs.group_comparison(votes, np.random.default_rng(11), rounds=100))
    rng = np.random.default_rng(0)
    # image ids: any one-to-one relabelling (the "lower" image of a pair changes)
    ids = np.unique(np.r_[votes.left_image_id, votes.right_image_id])
    new_ids = dict(zip(ids, rng.permutation(ids.size) * 7 + 1000, strict=True))
    relabelled = votes.assign(
        left_image_id=votes.left_image_id.map(new_ids),
        right_image_id=votes.right_image_id.map(new_ids),
    )
    got = gs.group_comparison(relabelled, np.random.default_rng(11), rounds=100)
    _assert_same(base, _canonical(got))
    # rater ids, and the rows shuffled (time order comes from created_at)
    raters = {r: f"r{(r * 37) % 101}" for r in votes.rater_id.unique()}
    shuffled = votes.assign(rater_id=votes.rater_id.map(raters)).sample(frac=1, random_state=3)
    _assert_same(base, _canonical(gs.group_comparison(shuffled, np.random.default_rng(11), 100)))
    # model names: reversed order
    models = sorted(set(votes.left_model))
    rename = dict(zip(models, [f"z-{k}" for k in range(len(models))][::-1], strict=True))
    renamed = votes.assign(
        left_model=votes.left_model.map(rename), right_model=votes.right_model.map(rename)
    )
    got = gs.group_comparison(renamed, np.random.default_rng(11), rounds=100)
    _assert_same(base, _canonical(got, model_map={v: k for k, v in rename.items()}))
    # group names swapped consistently (their sorted order flips)
    swap = {EXPERT: CROWD, CROWD: EXPERT}
    swapped = votes.assign(rater_group=votes.rater_group.map(lambda g: swap.get(g, g)))
    got = gs.group_comparison(swapped, np.random.default_rng(11), rounds=100)
    _assert_same(base, _canonical(got, group_map=swap))


def test_relabelled_prompts_move_no_interval():
    """The bootstrap numbers the prompts by their content: the same prompts imported in
    another order (other ids, rows shuffled) give exactly the same tables."""
    data = synthetic_arena(
        np.random.default_rng(2), n_models=6, n_prompts=50, n_votes=3000, rater_sd=0.6
    )
    votes = data.votes.assign(rater_group=np.where(data.votes.rater_id % 3 == 0, EXPERT, CROWD))

    def tables(votes_, prompts_):
        rng = np.random.default_rng(11)
        return gs.group_comparison(votes_, rng, rounds=100, prompts=prompts_).tables()

    base = tables(votes, data.prompts)
    for name, table in tables(*relabel_prompts(data.prompts, votes)[::-1]).items():
        pd.testing.assert_frame_equal(table, base[name], check_exact=True, obj=name)
    within = base["group_summary"]
    assert (within.within_low < within.within_high).all()


def test_bootstrap_intervals_hold_the_estimate_and_follow_the_seed():
    votes = _grouped_arena()
    first = gs.group_comparison(votes, np.random.default_rng(4), rounds=300)
    again = gs.group_comparison(votes, np.random.default_rng(4), rounds=300)
    for name, frame in first.tables().items():
        pd.testing.assert_frame_equal(frame, again.tables()[name], check_exact=True)
    corr = first.correlation
    assert not corr.few_models.any() and (corr.n_models == 7).all()
    for key in ("spearman", "kendall"):
        assert (corr[f"{key}_low"] <= corr[key]).all() and (corr[key] <= corr[f"{key}_high"]).all()
        assert (corr[f"{key}_low"] < corr[f"{key}_high"]).all()
    agreement = first.agreement
    assert (agreement.ci_low <= agreement.agreement).all()
    assert (agreement.agreement <= agreement.ci_high).all()
    assert (first.summary.within_low <= first.summary.within).all()
    boards = first.boards
    assert (boards.rating_low <= boards.rating).all() and (
        boards.rating <= boards.rating_high
    ).all()
    other = gs.group_comparison(votes, np.random.default_rng(5), rounds=300)
    assert not np.allclose(other.agreement.ci_low, agreement.ci_low)
    pd.testing.assert_series_equal(other.agreement.agreement, agreement.agreement)


def test_the_correlation_interval_resamples_prompts_and_refits_both_boards():
    """A naive loop: draw the prompts as the bootstrap does, refit each group's board with
    the leaderboard machinery, correlate; the same draws give the same interval."""
    votes = _grouped_arena(seed=6, n_models=6)
    votes = votes[votes.rater_group.notna()]
    rounds = 60
    comparison = gs.group_comparison(votes, np.random.default_rng(9), rounds=rounds)
    prompts = np.unique(votes.prompt_id)
    weights = ag.cluster_weights(np.random.default_rng(9), prompts.size, rounds)
    rho = []
    for w in weights:
        take = np.repeat(np.arange(prompts.size), w.astype(int))
        drawn = pd.concat([votes[votes.prompt_id == prompts[k]] for k in take])
        boards = []
        for group in (CROWD, EXPERT):
            own = drawn[drawn.rater_group == group]
            fit = rt.compute_ratings(
                own.left_model, own.right_model, own.outcome, np.random.default_rng(0),
                names=sorted(set(votes.left_model)), rounds=0,
            )  # fmt: skip
            boards.append(fit.theta)
        rho.append(stats.spearmanr(*boards)[0])
    low, high = np.percentile(rho, [2.5, 97.5])
    [row] = comparison.correlation.to_dict("records")
    assert row["spearman_low"] == pytest.approx(low, abs=1e-9)
    assert row["spearman_high"] == pytest.approx(high, abs=1e-9)


# -- through the store: the Agreement tab, the exports, the Exports panel ----------------------
@pytest.fixture
def grouped_store(store):
    """The small synthetic arena in a workspace, raters 1-6 experts and 7-12 crowd."""
    populate_store(store, small_arena())
    for rater in range(1, 13):
        store.set_rater_group(rater, EXPERT if rater <= 6 else CROWD)
    return store.with_settings(bootstrap_rounds=40)


def test_the_service_compares_the_groups_of_the_filter(grouped_store):
    service = AgreementService(grouped_store)
    result = service.groups(seed=3)
    assert result.votes_used == 900 and result.comparison.groups == [CROWD, EXPERT]
    votes = grouped_store.votes_frame()
    prompts = grouped_store.prompts_frame()
    direct = gs.group_comparison(votes, np.random.default_rng(3), rounds=40, prompts=prompts)
    for name, frame in direct.tables().items():
        pd.testing.assert_frame_equal(result.comparison.tables()[name], frame)
    assert service.groups(seed=3) is result  # cached until the data change
    experts = service.groups(Filters(rater_group=EXPERT), seed=3).comparison
    assert experts.groups == [EXPERT] and experts.correlation.empty


def test_judges_stay_out_unless_the_filter_asks(grouped_store):
    """A judge in its own group votes on the same pairs: the comparison of the default
    filter does not see it; --rater-kind judge gives its group alone."""
    judge = grouped_store.rater_id("judge:tiny", kind="judge", group="vlm")
    votes = grouped_store.votes_frame()
    with grouped_store.engine.begin() as conn:
        from sqlalchemy import text

        battles = conn.execute(text("SELECT id FROM battles ORDER BY id LIMIT 50")).all()
        for k, (battle,) in enumerate(battles):
            conn.execute(
                text(
                    "INSERT INTO battles (token, prompt_id, left_image_id, right_image_id, "
                    "rater_id, policy, kind, served_at) SELECT :t, prompt_id, left_image_id, "
                    "right_image_id, :r, 'uniform', 'normal', served_at FROM battles "
                    "WHERE id = :b"
                ),
                {"t": f"judge-{k}", "r": judge, "b": battle},
            )
            conn.execute(
                text(
                    "INSERT INTO votes (battle_id, rater_id, outcome, created_at) SELECT id, "
                    ":r, 'left', '2025-02-01 00:00:00' FROM battles WHERE token = :t"
                ),
                {"t": f"judge-{k}", "r": judge},
            )
    assert len(grouped_store.votes_frame()) == len(votes) + 50
    assert len(Filters().apply(grouped_store.votes_frame())) == len(votes)  # no judge counted
    service = AgreementService(grouped_store)
    assert service.groups(seed=1).comparison.groups == [CROWD, EXPERT]
    judged = service.groups(Filters(rater_kind="judge"), seed=1)
    assert judged.votes_used == 50 and judged.comparison.groups == ["vlm"]


def test_the_agreement_tab_shows_the_groups_in_the_admin_app_only(grouped_store):
    import gradio as gr

    from arena.ui import agreement_tab, group_section
    from arena.ui.filter_row import ALL, UNFILTERED

    with gr.Blocks():
        update, _inputs, outputs = agreement_tab.render(grouped_store, groups=True)
    shown = update(*UNFILTERED, "ties_half", "category")
    assert len(shown) == len(outputs) == 8 + 4 + 5  # the page, the judges, the groups
    note, summary, boards, correlation, agreement = shown[-5:]
    assert "Groups with votes: crowd (" in note and "expert (" in note
    assert summary["Group"].tolist() == [CROWD, EXPERT]
    assert set(boards.columns) >= {"Model", CROWD, EXPERT, "crowd: votes"} and len(boards) == 4
    assert correlation["Groups"].tolist() == ["crowd vs expert"]
    assert "(p = " in correlation.iloc[0]["Spearman ρ"]  # 4 models: no interval, the p-value
    assert len(agreement) == 4 and "expert (the rest of it)" in set(
        agreement["Against the majority of"]
    )
    one = update(ALL, ALL, ALL, ALL, "group: expert", "", "", "ties_half", "category")
    assert "Only one group has votes" in one[-5] and one[-2].empty
    bad = group_section.group_outputs(AgreementService(grouped_store), since="yesterday")
    assert "Cannot compare the groups" in bad[0] and "ISO date" in bad[0]

    label = "Cross-group agreement on shared image pairs"
    assert_admin_only(grouped_store, label)


def test_the_export_has_the_group_tables(grouped_store, tmp_path):
    export_workspace(grouped_store, tmp_path, rounds=40, seed=5)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    direct = gs.group_comparison(
        grouped_store.votes_frame(),
        np.random.default_rng(5),
        rounds=40,
        prompts=grouped_store.prompts_frame(),
    )
    columns = {
        "group_summary": gs.SUMMARY_COLUMNS,
        "group_leaderboards": gs.BOARD_COLUMNS,
        "group_correlation": gs.CORRELATION_COLUMNS,
        "group_agreement": gs.AGREEMENT_COLUMNS,
    }
    for name, cols in columns.items():
        table = read_table(tmp_path / f"{name}.csv")
        assert list(table.columns) == cols
        assert manifest["tables"][name] == {
            "file": f"{name}.csv",
            "rows": len(table),
            "columns": cols,
        }
        expected = direct.tables()[name]
        assert len(table) == len(expected)
        numeric = [c for c in cols if pd.api.types.is_float_dtype(expected[c])]
        np.testing.assert_allclose(table[numeric], expected[numeric], rtol=1e-9)
    assert manifest["summary"]["rater groups"] == "crowd, expert"
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Rater groups</h2>" in page and "Cross-group agreement on shared image pairs" in page
    assert "group_correlation.csv" in page
    one = tmp_path / "experts"
    export_workspace(grouped_store, one, rounds=5, filters=Filters(rater_group=EXPERT))
    assert len(read_table(one / "group_agreement.csv")) == 0
    assert "Fewer than two groups have votes" in (one / "report.html").read_text()


def _zip_votes(path) -> pd.DataFrame:
    with zipfile.ZipFile(path) as zf:
        target = path.parent / "unzipped"
        zf.extractall(target)
    return read_table(target / "votes.csv")


def test_the_exports_panel_filters_by_rater_kind_and_group(grouped_store):
    import gradio as gr

    from arena.ui.admin import build_admin_app
    from arena.ui.export_panel import build_zip, run

    path, text = build_zip(grouped_store, "csv", "group: expert")
    votes = _zip_votes(path)
    experts = (grouped_store.votes_frame().rater_group == EXPERT).sum()
    assert set(votes.rater_group) == {EXPERT} and len(votes) == experts < 900
    assert "votes: rater group expert" in text
    every, text = build_zip(grouped_store, "csv", "(all)")
    assert len(_zip_votes(every)) == 900 and "votes: all votes" in text
    message, button = run(grouped_store, "csv", "robot")
    assert "Export failed" in message and "rater kind 'robot'" in message
    assert button.visible is False

    # The Admin app's Exports tab: the Raters dropdown feeds the Build button.
    app = build_admin_app(grouped_store.with_settings(admin_secret="pw"))
    [build] = [
        b for b in app.blocks.values() if isinstance(b, gr.Button) and b.value == "Build export"
    ]
    [event] = [fn for fn in app.fns.values() if (build._id, "click") in fn.targets]
    raters = [b for b in event.inputs if getattr(b, "label", None) == "Raters"]
    assert len(raters) == 1 and "group: crowd" in [c[0] for c in raters[0].choices]
    assert event.api_visibility == "private"
    message, button = event.fn("csv", "group: crowd")
    assert "rater group crowd" in message
    assert set(_zip_votes(type(path)(button.value["path"])).rater_group) == {CROWD}


@pytest.mark.browser
def test_the_admin_agreement_tab_draws_the_group_section(grouped_store, tmp_path):
    """The Admin app in headless chromium: the Agreement tab's group tables appear."""
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    secret = "group-section-secret"
    store = grouped_store.with_settings(admin_secret=secret, bootstrap_rounds=20)
    with running_app(store) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url + "admin/")
        page.fill("input[type=text]", "admin")
        page.fill("input[type=password]", secret)
        page.keyboard.press("Enter")
        page.get_by_role("tab", name="Agreement").click()
        panel = page.get_by_role("tabpanel")
        expect(panel.get_by_text("Groups with votes", exact=False)).to_be_visible(timeout=60_000)
        for text in ("crowd vs expert", "expert (the rest of it)", "crowd: votes"):
            shown = panel.get_by_text(text, exact=True).locator("visible=true")
            expect(shown.first).to_be_visible()
        page.screenshot(path=str(tmp_path / "groups.png"), full_page=True)
        page.close()
