"""What each reader of "votes per pair" counts: one filter (arena.storage.vote_counts), three
deliberate choices. Reports leave out excluded raters, raters on probation and gold
battles; the active pair rule leaves out excluded raters and gold battles; the
matchmaker's balance counts every vote on a normal battle."""

import uuid

import numpy as np
import pytest
from PIL import Image

from arena.config import load_settings
from arena.stats.pairs import OUTCOMES
from arena.storage import db
from arena.storage.store import PromptRow, Store
from arena.voting.active_pairing import load_pair_counts
from arena.voting.matchmaking import load_index, load_pair_votes


@pytest.fixture
def counted(tmp_path):
    """Models a, b, c (and a reference set d); votes of five kinds of raters."""
    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws"), probation_votes=3))
    ids = {n: store.add_model(n, "import") for n in "abc"}
    ids["d"] = store.add_model("d", "reference")
    store.add_prompts([PromptRow("p0", "p0")], "s")
    pid = store.prompt_ids()[("s", "p0")]
    image = {
        n: store.add_image(mid, pid, store.images.put_image(Image.new("RGB", (4, 4), (k, 0, 0))))
        for k, (n, mid) in enumerate(ids.items())
    }
    with store.session() as s:
        raters = {}
        for name, group in [("script", None), ("excluded", None), ("new", "g1"), ("old", "g2")]:
            rater = db.Rater(external_id=f"rater-{name}", kind="human", client_group=group)
            s.add(rater)
            s.flush()
            raters[name] = rater.id

        def vote(rater, left, right, outcome, kind="normal"):
            battle = db.Battle(
                token=uuid.uuid4().hex,
                prompt_id=pid,
                left_image_id=image[left],
                right_image_id=image[right],
                rater_id=raters[rater],
                policy="test",
                kind=kind,
                gold_answer="left" if kind == "gold" else None,
            )
            s.add(battle)
            s.flush()
            s.add(db.Vote(battle_id=battle.id, rater_id=raters[rater], outcome=outcome))

        for left, right, outcome in [("a", "b", "left"), ("a", "b", "right"), ("b", "a", "tie")]:
            vote("script", left, right, outcome)
        vote("script", "a", "c", "both_bad")
        vote("script", "a", "d", "left")  # against a reference set: never a served pair
        vote("script", "a", "b", "left", kind="gold")
        vote("excluded", "a", "b", "left")
        vote("excluded", "a", "b", "left")
        vote("new", "b", "c", "left")  # a web rater with 1 of 3 probation votes
        for _ in range(3):
            vote("old", "b", "c", "right")  # a web rater past probation
    store.set_rater_exclusion(raters["excluded"], True, "test")
    yield store, ids, raters
    store.close()


def test_reports_leave_out_excluded_probation_and_gold(counted):
    store, _ids, raters = counted
    frame = store.votes_frame()
    by_rater = frame["rater_id"].value_counts().to_dict()
    assert by_rater == {raters["script"]: 5, raters["old"]: 3}
    assert set(frame["battle_kind"]) == {"normal"}
    assert len(store.votes_frame(include_gold=True)) == 9
    everyone = store.votes_frame(include_excluded=True)
    assert everyone["rater_id"].value_counts().to_dict() == {
        raters["script"]: 5,
        raters["excluded"]: 2,
        raters["new"]: 1,
        raters["old"]: 3,
    }
    assert len(store.votes_frame(include_excluded=True, include_gold=True)) == 12


def test_the_active_rule_counts_probation_but_not_excluded_or_gold(counted):
    store, ids, _raters = counted
    a, b, c = 0, 1, 2
    counts = load_pair_counts(store, (ids["a"], ids["b"], ids["c"]))
    wins = np.zeros((3, 3), int)
    wins[a, b] = wins[b, a] = 1  # script's left and right; not the excluded rater's, not gold
    wins[b, c], wins[c, b] = 1, 3  # the rater on probation counts here
    assert np.array_equal(counts.wins, wins)
    ties = np.zeros((3, 3), int)
    ties[a, b] = ties[b, a] = 1
    both_bad = np.zeros((3, 3), int)
    both_bad[a, c] = both_bad[c, a] = 1
    assert np.array_equal(counts.ties, ties) and np.array_equal(counts.both_bad, both_bad)


def test_the_matchmaker_balances_every_normal_vote(counted):
    store, ids, _raters = counted
    index = load_index(store)
    assert list(index.model_ids) == [ids["a"], ids["b"], ids["c"]]  # no reference set
    votes = load_pair_votes(store, index)
    expected = np.array([[0, 5, 1], [5, 0, 4], [1, 4, 0]])  # excluded and probation too
    assert np.array_equal(votes, expected)


def test_pair_outcome_counts_keep_sides_and_outcomes(counted):
    store, ids, _raters = counted
    cells = store.pair_outcome_counts(
        (ids["a"], ids["b"], ids["d"]),
        include_excluded=True,
        include_probation=True,
        include_gold=True,
    )
    assert cells.shape == (3, 3, len(OUTCOMES))
    left, right, tie = (OUTCOMES.index(o) for o in ("left", "right", "tie"))
    assert cells[0, 1, left] == 1 + 1 + 2  # script, gold, excluded rater
    assert cells[0, 1, right] == 1 and cells[1, 0, tie] == 1
    assert cells[0, 2, left] == 1  # a model listed is counted, whatever its kind
    assert cells.sum() == 4 + 1 + 1 + 1  # the votes with c are not asked for


def test_the_voting_readers_leave_the_judges_out(counted):
    """A judge's votes allocate nothing people are shown (issue 21): the active rule and
    the matchmaker's balance count as before; the reports' frame keeps them, for the
    filters to leave out (arena.reports.frames.Filters)."""
    store, ids, _raters = counted
    model_ids = (ids["a"], ids["b"], ids["c"])
    index = load_index(store)
    before = load_pair_counts(store, model_ids), load_pair_votes(store, index)
    frame_before = len(store.votes_frame())
    judge = store.rater_id("judge:test-vlm", kind="judge", group="vlm")
    pid = store.prompt_ids()[("s", "p0")]
    images = store.images_frame().set_index("model")["image_id"]
    with store.session() as s:
        for k in range(6):
            battle = db.Battle(
                token=uuid.uuid4().hex,
                prompt_id=pid,
                left_image_id=int(images["a"]),
                right_image_id=int(images["c"]),
                rater_id=judge,
                policy="judge",
            )
            s.add(battle)
            s.flush()
            s.add(db.Vote(battle_id=battle.id, rater_id=judge, outcome="left" if k else "tie"))
    counts, votes = load_pair_counts(store, model_ids), load_pair_votes(store, index)
    assert np.array_equal(counts.wins, before[0].wins)
    assert np.array_equal(counts.ties, before[0].ties)
    assert np.array_equal(votes, before[1])
    assert len(store.votes_frame()) == frame_before + 6
    with_judges = store.pair_outcome_counts(
        list(model_ids), include_excluded=False, include_probation=True
    )
    assert with_judges[0, 2].sum() == 1 + 6  # script's both_bad and the judge's six
