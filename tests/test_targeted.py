"""Targeted voting (arena/stats/targeted.py): the null distribution against scipy and a
Monte Carlo, detection of raters and address groups that push one model, the
false-positive rate of honest raters simulated from the Bradley-Terry model, and the
policy end to end on a real SQLite workspace (votes through serve_battle/record_vote).

Simulated votes: ``simulate`` draws each rater's battles uniformly over model pairs
(random sides); an honest rater picks left with probability σ(θ_left - θ_right) and
says tie 10% of the time; a targeted rater votes like that except that it picks its
model X whenever X is in the battle.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from arena.config import load_settings
from arena.stats.rater_quality import rater_report
from arena.stats.targeted import holm, poisson_binomial_sf, targeted_report, unit_tests
from arena.storage import db
from arena.voting.exclusion import refresh_exclusions, thresholds_from

THETA = np.linspace(-1.5, 1.5, 8)  # model-k has strength THETA[k]: model-7 is the best


def simulate(rng, specs, theta=THETA, tie_rate=0.1, names=None) -> pd.DataFrame:
    """Votes of ``specs``: (rater_id, votes, target model index or None, client_group)."""
    n = len(theta)
    names = np.asarray(names or [f"model-{k}" for k in range(n)], dtype=object)
    parts = []
    for rater, votes, target, group in specs:
        a = rng.integers(0, n, votes)
        b = (a + rng.integers(1, n, votes)) % n
        left_wins = rng.random(votes) < 1.0 / (1.0 + np.exp(theta[b] - theta[a]))
        outcome = np.where(left_wins, "left", "right").astype(object)
        outcome[rng.random(votes) < tie_rate] = "tie"
        if target is not None:
            outcome[a == target], outcome[b == target] = "left", "right"
        parts.append(
            pd.DataFrame(
                {
                    "rater_id": rater,
                    "outcome": outcome,
                    "left_model": names[a],
                    "right_model": names[b],
                    "left_image_id": a,  # one image per model
                    "right_image_id": b,
                    "battle_kind": "normal",
                    "rater_excluded": False,
                    "client_group": group,
                    "decision_ms": 3000,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def honest(count, votes, first=1, group=None):
    return [(first + i, votes, None, group(i) if group else None) for i in range(count)]


# -- the null distribution -------------------------------------------------------------------
def test_tail_with_equal_probabilities_is_scipys_binomtest():
    cases = [(1, 1, 0.3), (5, 3, 0.5), (30, 20, 0.41), (200, 90, 0.35), (200, 200, 0.3)]
    probs = np.concatenate([np.full(n, p) for n, _, p in cases])
    owner = np.repeat(np.arange(len(cases)), [n for n, _, _ in cases])
    got = poisson_binomial_sf(probs, owner, [k for _, k, _ in cases])
    want = [binomtest(k, n, p, alternative="greater").pvalue for n, k, p in cases]
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[-1] == pytest.approx(0.3**200, rel=1e-9)  # ~1e-105 keeps its digits


def test_tail_with_unequal_probabilities_matches_a_convolution_and_a_monte_carlo():
    rng = np.random.default_rng(3)
    probs = rng.uniform(0.05, 0.95, 40)
    pmf = np.array([1.0])
    for p in probs:  # an independent reference: polynomial multiplication
        pmf = np.convolve(pmf, [1.0 - p, p])
    ks = np.arange(0, 42)
    # every k at once: 42 cells with the same 40 probabilities
    got = poisson_binomial_sf(np.tile(probs, len(ks)), np.repeat(np.arange(len(ks)), 40), ks)
    want = np.append(pmf[::-1].cumsum()[::-1], 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-300)
    draws = (rng.random((400_000, 40)) < probs).sum(axis=1)
    for k in (22, 26, 30):
        frequency = (draws >= k).mean()
        spread = np.sqrt(got[k] * (1 - got[k]) / len(draws))
        assert abs(frequency - got[k]) < 4 * spread + 1e-6, (k, frequency, got[k])


def test_chernoff_bound_for_large_cells_is_above_the_exact_tail_and_close():
    rng = np.random.default_rng(4)
    probs = rng.uniform(0.1, 0.9, 1500)
    ks = np.array([760, 800, 850, 900, 1500])
    owner = np.repeat(np.arange(len(ks)), len(probs))
    exact = poisson_binomial_sf(np.tile(probs, len(ks)), owner, ks, exact_max=2000)
    bound = poisson_binomial_sf(np.tile(probs, len(ks)), owner, ks, exact_max=1000)
    assert np.all(bound >= exact)
    assert np.all(bound[:-1] <= 60 * exact[:-1])  # within a factor ~sqrt(2π n)
    assert bound[-1] == pytest.approx(exact[-1], rel=1e-9)  # all picked: exact either way


def test_holm_adjusts_step_down():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(0.06, 0.04)
    np.testing.assert_allclose(holm(p), [0.03, 0.06, 0.06, 0.02])


# -- detection -------------------------------------------------------------------------------
@pytest.mark.parametrize("target", [0, 3, 7])
def test_a_persistent_id_that_always_picks_one_model_is_flagged(target):
    """Weakest, middle and strongest model; 400 votes (X in about 100 battles)."""
    rng = np.random.default_rng(10 + target)
    votes = simulate(rng, [*honest(300, 40), (999, 400, target, None)])
    units = unit_tests(votes).set_index("key")
    assert list(units.index[units["flagged"]]) == [999]
    row = units.loc[999]
    assert row["model"] == f"model-{target}" and row["picks"] == row["battles"]
    report = targeted_report(votes).set_index("rater_id")
    reason = report.loc[999, "targeted_reason"]
    assert reason.startswith(f"targeted: favours model-{target} (")
    assert f"{row['picks']} picks in {row['battles']} battles vs" in reason
    assert (report.drop(index=999)["targeted_reason"] == "").all()


@pytest.mark.parametrize(
    ("target", "votes", "at_least"),
    [(0, 50, 0.7), (4, 100, 0.45), (4, 200, 0.9), (7, 400, 0.75)],
)
def test_detection_power(target, votes, at_least):
    """How often a rater who always picks model-{target} is flagged (and it named), over
    20 arenas of 300 honest raters with 40 votes. The strongest model is the hard case:
    honest raters already pick it about 80% of the time."""
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng([target, votes, seed])
        units = unit_tests(simulate(rng, [*honest(300, 40), (999, votes, target, None)]))
        row = units.set_index("key").loc[999]
        hits += bool(row["flagged"]) and row["model"] == f"model-{target}"
        assert units["flagged"].sum() == int(row["flagged"])  # nobody else
    print(f"model-{target}, {votes} votes: flagged in {hits}/20 arenas")
    assert hits / 20 >= at_least


def test_flags_do_not_depend_on_labels_or_row_order():
    rng = np.random.default_rng(21)
    specs = [*honest(200, 40), (997, 150, 1, None), (998, 300, 4, None)]
    specs += [(2000 + i, 1, 2, "attack") for i in range(150)]
    votes = simulate(rng, specs)
    base = unit_tests(votes)
    flagged = base[base["flagged"]].set_index("key")
    assert set(flagged.index) == {997, 998, "attack"}

    relabel = {
        f"model-{k}": name
        for k, name in enumerate(
            np.random.default_rng(1).permutation(["zz", "aa", "mm", "bb", "yy", "cc", "xx", "dd"])
        )
    }
    new_id = dict(zip(votes["rater_id"].unique(), rng.permutation(10**6)[: 10**4], strict=False))
    moved = votes.sample(frac=1.0, random_state=5).reset_index(drop=True)
    moved["left_model"] = moved["left_model"].map(relabel)
    moved["right_model"] = moved["right_model"].map(relabel)
    moved["rater_id"] = moved["rater_id"].map(new_id)
    moved["client_group"] = moved["client_group"].map({"attack": "g-renamed"})
    again = unit_tests(moved)
    again_flagged = again[again["flagged"]].set_index("key")
    assert set(again_flagged.index) == {new_id[997], new_id[998], "g-renamed"}
    for old, new in ((997, new_id[997]), (998, new_id[998]), ("attack", "g-renamed")):
        assert again_flagged.loc[new, "model"] == relabel[flagged.loc[old, "model"]]
        assert again_flagged.loc[new, "p_adj"] == pytest.approx(flagged.loc[old, "p_adj"], rel=1e-6)
    assert again["flagged"].sum() == base["flagged"].sum() and len(again) == len(base)


def test_a_group_of_one_vote_ids_is_flagged_together():
    """300 fresh ids behind one address, one vote each, pick model-5 when it shows up;
    an honest heavy rater shares the address. No id alone has enough votes."""
    rng = np.random.default_rng(31)
    specs = [*honest(300, 40), *[(5000 + i, 1, 5, "nat-1") for i in range(300)]]
    specs.append((4999, 60, None, "nat-1"))
    votes = simulate(rng, specs)
    units = unit_tests(votes).set_index("key")
    assert not any(5000 + i in units.index for i in range(300))  # too few votes alone
    decisive = votes[votes["outcome"] != "tie"]
    voters = decisive.loc[decisive["client_group"] == "nat-1", "rater_id"].nunique()
    group = units.loc["nat-1"]
    assert group["flagged"] and group["model"] == "model-5" and group["raters"] == voters
    report = targeted_report(votes).set_index("rater_id")
    flagged = set(report.index[report["targeted_reason"] != ""])
    pushed = decisive[
        (decisive["left_model"] == "model-5") | (decisive["right_model"] == "model-5")
    ]
    pushed = set(pushed["rater_id"]) & set(range(5000, 5300))
    assert flagged == pushed  # exactly the ids that voted for model-5; not the others
    assert 4999 not in flagged  # the honest neighbour keeps its votes
    reason = report.loc[min(pushed), "targeted_reason"]
    assert reason.startswith(
        f"targeted from address group nat-1 ({voters} raters): favours model-5"
    )
    assert reason.endswith("this rater 1 picks vs " + reason.rsplit(" vs ", 1)[1])


def test_ties_both_bad_and_gold_are_not_evidence():
    rng = np.random.default_rng(41)
    votes = simulate(rng, [*honest(100, 40), (999, 200, 2, None)])
    base = unit_tests(votes)
    extra = votes.sample(n=600, random_state=2).assign(outcome="both_bad")
    gold = votes.sample(n=300, random_state=3).assign(battle_kind="gold", outcome="left")
    noisy = pd.concat([votes, extra, gold], ignore_index=True)
    pd.testing.assert_frame_equal(unit_tests(noisy), base)
    tie_only = simulate(rng, [(777, 100, None, None)], tie_rate=1.0)
    assert 777 not in set(unit_tests(pd.concat([votes, tie_only]))["key"])


def test_no_flag_without_enough_votes_or_without_others_votes_on_the_model():
    rng = np.random.default_rng(51)
    votes = simulate(rng, [*honest(100, 40), (998, 9, 0, None)], tie_rate=0.0)
    assert 998 not in set(unit_tests(votes, min_votes=10)["key"])
    # A model only this rater ever saw: the fit without it knows nothing of the model.
    names = [f"model-{k}" for k in range(8)] + ["model-new"]
    theta = np.append(THETA, 0.0)
    alone = simulate(rng, [(999, 300, 8, None)], theta=theta, names=names, tie_rate=0.0)
    units = unit_tests(pd.concat([votes, alone], ignore_index=True)).set_index("key")
    assert not units.loc[999, "flagged"] and units.loc[999, "p"] > 0.01
    # Once others have voted on it too, the same votes are flagged.
    seen = simulate(rng, honest(100, 40, first=200), theta=theta, names=names, tie_rate=0.0)
    units = unit_tests(pd.concat([votes, seen, alone], ignore_index=True)).set_index("key")
    assert units.loc[999, "flagged"] and units.loc[999, "model"] == "model-new"


def test_excluded_raters_are_left_out_of_the_null_fit():
    """A first attacker, already excluded, no longer hides a second one on the same model."""
    rng = np.random.default_rng(61)
    votes = simulate(rng, [*honest(40, 30), (998, 3000, 6, None), (999, 120, 6, None)])
    p_with = unit_tests(votes).set_index("key").loc[999, "p"]
    votes.loc[votes["rater_id"] == 998, "rater_excluded"] = True
    p_without = unit_tests(votes).set_index("key").loc[999, "p"]
    assert p_without < p_with / 100


# -- false positives -------------------------------------------------------------------------
LEVELS = (0.01, 0.05, 0.1)


def _false_positive_rates(make, seeds):
    """Per kind of unit: {level: fraction of p_models <= level}, units tested; units flagged."""
    p, flagged = {"rater": [], "group": []}, 0
    for seed in range(seeds):
        units = unit_tests(make(np.random.default_rng([7, seed])))
        for kind in p:
            p[kind].extend(units.loc[units["unit"] == kind, "p_models"])
        flagged += int(units["flagged"].sum())
    rates = {
        kind: ({level: float((np.asarray(v) <= level).mean()) for level in LEVELS}, len(v))
        for kind, v in p.items()
        if v
    }
    return rates, flagged


SCENARIOS = {  # name: (votes of one arena, arenas simulated)
    "many light raters": (
        lambda rng: simulate(rng, honest(400, 30, group=lambda i: f"g{i % 40}")),
        4,
    ),
    "few heavy raters": (
        lambda rng: simulate(rng, honest(20, 300, group=lambda i: f"g{i % 3}")),
        25,
    ),
    "one address group with half the votes": (
        lambda rng: simulate(rng, honest(80, 50, group=lambda i: "big" if i < 40 else None)),
        80,
    ),
    "three raters, lopsided strengths": (
        lambda rng: simulate(
            rng, honest(3, 100, group=lambda i: f"g{i % 2}"), theta=np.linspace(-3, 3, 4)
        ),
        200,
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_honest_raters_stay_within_the_nominal_false_positive_rate(scenario):
    """Per unit (raters and groups apart), P(p_models <= level) <= level + 2.5 binomial
    standard errors at 1%, 5% and 10%, p_models being the unit's p-value before the
    correction over units; and at the default alpha (family-wise 1e-3) no honest unit is
    ever flagged. The last three scenarios fail without the correction for the
    uncertainty of the fitted strengths (their groups reach 7-15% at the 1% level); the
    last also without the pseudo-wins (a model the others never saw win gets θ = -∞, and
    an honest win for it p ~ 0)."""
    make, seeds = SCENARIOS[scenario]
    rates, flagged = _false_positive_rates(make, seeds)
    print(f"{scenario}: {rates}")
    assert set(rates) == {"rater", "group"}
    for kind, (by_level, units) in rates.items():
        for level, rate in by_level.items():
            assert rate <= level + 2.5 * np.sqrt(level * (1 - level) / units), (kind, level, rate)
    assert flagged == 0


# -- the policy, end to end ------------------------------------------------------------------
STRENGTH = {"zephyrquokka-v3": 1.5, "marmalade-basilisk-xl": 0.0, "tundrafinch-turbo": -1.5}
TARGET = "tundrafinch-turbo"  # the weakest model: the one worth pushing


def _honest_background(store, fx, rng, raters=25, votes=40):
    """Honest raters' votes written straight to the database (BT outcomes, 3 s decisions)."""
    images = {}
    for iid, (model, pid) in fx.images.items():
        images.setdefault(pid, {}).setdefault(model, []).append(iid)
    ids = [store.rater_id(f"honest-{r:02d}") for r in range(raters)]
    models = list(STRENGTH)
    with store.session() as s:
        for rid in ids:
            for _ in range(votes):
                pid = fx.prompt_ids[rng.integers(len(fx.prompt_ids))]
                a, b = rng.choice(3, 2, replace=False)
                left = rng.choice(images[pid][models[a]])
                right = rng.choice(images[pid][models[b]])
                gap = STRENGTH[models[a]] - STRENGTH[models[b]]
                outcome = "left" if rng.random() < 1 / (1 + np.exp(-gap)) else "right"
                battle = db.Battle(
                    token=uuid.uuid4().hex,
                    prompt_id=int(pid),
                    left_image_id=int(left),
                    right_image_id=int(right),
                    rater_id=rid,
                    policy="test",
                )
                s.add(battle)
                s.flush()
                s.add(db.Vote(battle_id=battle.id, rater_id=rid, outcome=outcome, decision_ms=3000))
    return ids


def test_policy_excludes_a_targeted_rater_and_an_admin_include_sticks(store):
    from arena.reports.leaderboard import leaderboard_frame
    from arena.ui.admin import raters_table, set_exclusion
    from arena.voting.battles import record_vote, serve_battle
    from arena.voting.matchmaking import BalancedPolicy, Matchmaker
    from tests.arena_fixtures import build_fixture

    fx = build_fixture(store, n_prompts=12, seeds=2)
    rng = np.random.default_rng(71)
    honest_ids = _honest_background(store, fx, rng)
    # A persistent id votes through the arena: for TARGET whenever it is shown, else honestly.
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(0))
    attacker = "persistent-0123456789"
    now = db.utcnow()
    for _ in range(60):
        view = serve_battle(store, attacker, mm, now=now, client_group="5e1f0c9a2b7d4e36")
        with store.session() as s:
            battle = s.query(db.Battle).filter_by(token=view.token).one()
            left, right = fx.images[battle.left_image_id][0], fx.images[battle.right_image_id][0]
        if TARGET in (left, right):
            outcome = "left" if left == TARGET else "right"
        else:
            p_left = 1 / (1 + np.exp(STRENGTH[right] - STRENGTH[left]))
            outcome = "left" if rng.random() < p_left else "right"
        now += timedelta(seconds=3)
        record_vote(store, view.token, attacker, outcome, 2500, matchmaker=mm, now=now)
        now += timedelta(seconds=1)
    attacker_id = store.rater_id(attacker)

    def target_rating() -> float:
        frame, _ = leaderboard_frame(store.votes_frame(), np.random.default_rng(0), rounds=0)
        return float(frame.set_index("model").loc[TARGET, "rating"])

    assert attacker_id in set(store.votes_frame()["rater_id"])  # past probation: counted
    pushed = target_rating()
    refresh_exclusions(store)
    raters = store.raters_frame().set_index("rater_id")
    assert raters.loc[attacker_id, "excluded"]
    assert f"targeted: favours {TARGET} (" in raters.loc[attacker_id, "excluded_reason"]
    assert not raters.loc[honest_ids, "excluded_reason"].str.contains("targeted").any()
    # The leaderboard no longer counts the attacker: the pushed model falls back.
    assert attacker_id not in set(store.votes_frame()["rater_id"])
    assert target_rating() < pushed - 20

    # The Admin app shows the evidence; an admin's include survives the policy.
    table = raters_table(store).set_index("rater_id")
    row = table.loc[attacker_id]
    assert row["targeted_model"] == TARGET and row["targeted_unit"] == "rater"
    assert row["targeted_picks"] == row["targeted_battles"] > row["targeted_expected"]
    assert row["targeted_p_adj"] <= store.settings.targeted_alpha and row["targeted_p"] > 0
    assert "targeted: favours" in row["flag_reasons"]
    assert "included again" in set_exclusion(store, attacker_id, False, "")
    refresh_exclusions(store)
    assert not store.raters_frame().set_index("rater_id").loc[attacker_id, "excluded"]
    assert attacker_id in set(store.votes_frame()["rater_id"])


def test_the_settings_reach_the_policy():
    settings = load_settings(env={"ARENA_TARGETED_ALPHA": "0.01"}, targeted_min_votes=25)
    thresholds = thresholds_from(settings)
    assert thresholds.targeted_alpha == 0.01 and thresholds.targeted_min_votes == 25
    rng = np.random.default_rng(81)
    votes = simulate(rng, [*honest(100, 40), (999, 24, 0, None)], tie_rate=0.0)
    strict = rater_report(votes, 700, thresholds).set_index("rater_id")
    loose = rater_report(votes, 700).set_index("rater_id")  # defaults: 10 votes, 1e-3
    assert "targeted: favours model-0" in loose.loc[999, "flag_reasons"]
    assert "targeted" not in strict.loc[999, "flag_reasons"]  # 24 votes: not tested
    assert pd.isna(strict.loc[999, "targeted_p"])
