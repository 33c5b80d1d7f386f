"""serve_battle / record_vote on a real SQLite workspace: one vote per battle, every
refusal leaves the database unchanged."""

from __future__ import annotations

import threading
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from arena.storage import db
from arena.voting.battles import BattleError, RaterIdentity, record_vote, serve_battle
from arena.voting.matchmaking import BalancedPolicy, Matchmaker
from tests.arena_fixtures import MODEL_NAMES, build_fixture

ALICE, BOB = "alice-0123456789", "bob-0123456789ab"


@pytest.fixture
def arena(store):
    fx = build_fixture(store, n_prompts=4, seeds=2)
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(0))
    return store, fx, mm


def counts(store) -> tuple[int, int]:
    with store.session() as s:
        return s.scalar(select(func.count(db.Vote.id))), s.scalar(select(func.count(db.Battle.id)))


def test_serve_stores_a_battle_and_shows_no_model(arena):
    store, _fx, mm = arena
    view = serve_battle(store, ALICE, mm)
    assert view.prompt.startswith("a watercolour lighthouse")
    text = repr(view) + repr(view.public())
    for name in [*MODEL_NAMES, *_fx.sources.values()]:
        assert name not in text
    with store.session() as s:
        battle = s.scalar(select(db.Battle).where(db.Battle.token == view.token))
        rater = s.get(db.Rater, battle.rater_id)
        shas = [s.get(db.Image, i).sha256 for i in (battle.left_image_id, battle.right_image_id)]
    # The URLs are the battle's random handles: no content hash, no path, no extension.
    assert (view.left_url, view.right_url) == (
        f"img/{battle.left_handle}",
        f"img/{battle.right_handle}",
    )
    assert len(battle.left_handle) == 24 and battle.left_handle != battle.right_handle
    assert not any(sha[:8] in text for sha in shas)
    assert rater.external_id == ALICE and rater.kind == "human"
    assert battle.policy == "balanced" and battle.kind == "normal"
    assert battle.left_image_id != battle.right_image_id


def test_vote_is_stored_with_reveal_and_flags(arena):
    store, _fx, mm = arena
    view = serve_battle(store, ALICE, mm)
    now = view.served_at + timedelta(seconds=5)
    receipt = record_vote(store, view.token, ALICE, "left", 2500, matchmaker=mm, now=now)
    assert receipt.decision_ms == 2500 and receipt.flag is None
    assert {receipt.left_model, receipt.right_model} <= set(MODEL_NAMES)
    assert receipt.left_model != receipt.right_model
    frame = store.votes_frame()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row.outcome == "left" and row.left_model == receipt.left_model
    assert mm.stats().votes.sum() == 2  # symmetric matrix: one vote
    # A fast vote is stored but flagged; a decision time beyond the elapsed time is clamped.
    fast = serve_battle(store, ALICE, mm)
    r2 = record_vote(
        store, fast.token, ALICE, "tie", 100, now=fast.served_at + timedelta(1 / 86400)
    )
    assert r2.flag == "fast" and r2.decision_ms == 100
    slow = serve_battle(store, ALICE, mm)
    r3 = record_vote(
        store, slow.token, ALICE, "both_bad", 10**9, now=slow.served_at + timedelta(0, 3)
    )
    assert r3.decision_ms == 3000 and r3.flag is None
    r4_view = serve_battle(store, ALICE, mm)
    r4 = record_vote(
        store, r4_view.token, ALICE, "right", now=r4_view.served_at + timedelta(0, 0.2)
    )
    assert r4.decision_ms == 200 and r4.flag == "fast"
    assert sorted(store.votes_frame()["outcome"]) == ["both_bad", "left", "right", "tie"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("replay", "already_voted"),
        ("forged", "unknown_token"),
        ("garbage", "unknown_token"),
        ("cross_rater", "wrong_rater"),
        ("bad_outcome", "bad_outcome"),
        ("expired", "expired"),
        ("negative_time", "bad_decision_ms"),
        ("bad_rater", "bad_rater"),
    ],
)
def test_refusals_change_nothing(arena, case, reason):
    store, _fx, mm = arena
    view = serve_battle(store, ALICE, mm)
    serve_battle(store, BOB, mm)
    record_vote(store, view.token, ALICE, "left", 1500)
    other = serve_battle(store, ALICE, mm)
    before = counts(store)
    args = {
        "replay": (view.token, ALICE, "right", 1500),
        "forged": ("A" * 32, ALICE, "left", 1500),
        "garbage": ("../../etc/passwd", ALICE, "left", 1500),
        "cross_rater": (other.token, BOB, "left", 1500),
        "bad_outcome": (other.token, ALICE, "maybe", 1500),
        "expired": (other.token, ALICE, "left", 1500),
        "negative_time": (other.token, ALICE, "left", -5),
        "bad_rater": (other.token, "x", "left", 1500),
    }[case]
    now = None
    if case == "expired":
        now = other.served_at + timedelta(seconds=store.settings.battle_ttl_seconds + 1)
    with pytest.raises(BattleError) as err:
        record_vote(store, *args, now=now)
    assert err.value.reason == reason
    assert str(err.value)
    assert counts(store) == before
    # The battle that was refused can still be voted on by its own rater.
    if case != "replay":
        record_vote(store, other.token, ALICE, "right", 1500)


def test_rate_limit_and_daily_cap(store):
    build_fixture(store, n_prompts=4, seeds=2)
    store = store.with_settings(rate_limit_per_minute=3, daily_vote_cap=5)
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(1))
    views = [serve_battle(store, ALICE, mm) for _ in range(7)]
    t0 = views[-1].served_at + timedelta(seconds=2)
    for k in range(3):
        record_vote(store, views[k].token, ALICE, "left", 1000, now=t0)
    before = counts(store)
    with pytest.raises(BattleError) as err:
        record_vote(store, views[3].token, ALICE, "left", 1000, now=t0)
    assert err.value.reason == "rate_limited" and "break" in str(err.value)
    assert counts(store) == before
    later = t0 + timedelta(seconds=61)
    for k in (3, 4):
        record_vote(store, views[k].token, ALICE, "left", 1000, now=later)
    with pytest.raises(BattleError) as err:
        record_vote(store, views[5].token, ALICE, "left", 1000, now=later)
    assert err.value.reason in {"daily_cap", "rate_limited"}
    much_later = later + timedelta(seconds=120)
    if much_later.date() == later.date():
        with pytest.raises(BattleError) as err:
            record_vote(store, views[5].token, ALICE, "left", 1000, now=much_later)
        assert err.value.reason == "daily_cap"
    # Another rater is not limited by Alice's votes.
    bob_view = serve_battle(store, BOB, mm)
    record_vote(store, bob_view.token, BOB, "tie", 1000)


def test_concurrent_double_vote_stores_one(arena):
    store, _fx, mm = arena
    view = serve_battle(store, ALICE, mm)
    results: list[str] = []
    barrier = threading.Barrier(6)

    def vote(outcome):
        barrier.wait()
        try:
            record_vote(store, view.token, ALICE, outcome, 1500)
            results.append("ok")
        except BattleError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=vote, args=(o,)) for o in ["left", "right", "tie"] * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1
    assert set(results) - {"ok"} == {"already_voted"}
    assert counts(store)[0] == 1


def test_login_identity_is_separate_rater(arena):
    store, _fx, mm = arena
    anon = serve_battle(store, ALICE, mm)
    logged = serve_battle(store, RaterIdentity(ALICE, login="carol"), mm)
    with pytest.raises(BattleError) as err:
        record_vote(store, logged.token, ALICE, "left", 1500)
    assert err.value.reason == "wrong_rater"
    record_vote(store, logged.token, RaterIdentity(ALICE, login="carol"), "left", 1500)
    record_vote(store, anon.token, ALICE, "right", 1500)
    raters = store.raters_frame() if hasattr(store, "raters_frame") else None
    with store.session() as s:
        rows = s.execute(select(db.Rater.external_id, db.Rater.login)).all()
    # A login is one rater whatever browser id it comes with.
    assert set(rows) == {(ALICE, None), ("login:carol", "carol")}
    again = serve_battle(store, RaterIdentity("other-browser-id", login="carol"), mm)
    record_vote(store, again.token, RaterIdentity("third-browser", login="carol"), "tie", 1500)
    assert raters is None or len(raters) == 2


def test_no_battle_when_workspace_is_empty(store):
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(0))
    with pytest.raises(BattleError) as err:
        serve_battle(store, ALICE, mm)
    assert err.value.reason == "no_battle" and "two models" in str(err.value)
    assert counts(store) == (0, 0)
