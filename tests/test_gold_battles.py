"""Gold battles through the real battle path: served at the configured rate, the intact
side recorded, copies stored once and never served as ordinary images, votes kept out
of the leaderboard but counted for rater quality."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select

from arena.storage import db
from arena.voting.battles import record_vote, serve_battle
from arena.voting.exclusion import quality_report
from arena.voting.gold import degraded_copy
from arena.voting.matchmaking import BalancedPolicy, Matchmaker
from tests.arena_fixtures import build_fixture


@pytest.fixture
def gold_arena(tmp_path):
    from arena.config import load_settings
    from arena.storage.store import Store

    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws"), gold_rate=0.5))
    build_fixture(store, n_prompts=4, seeds=2)
    yield store, Matchmaker(store, BalancedPolicy(), np.random.default_rng(1))
    store.close()


def test_gold_battles_are_served_at_the_rate_and_answered(gold_arena):
    store, mm = gold_arena
    views = [serve_battle(store, f"rater-{k:012d}", mm) for k in range(40)]
    with store.session() as s:
        battles = {b.token: b for b in s.scalars(select(db.Battle))}
        images = {i.id: i for i in s.scalars(select(db.Image))}
    gold = [battles[v.token] for v in views if battles[v.token].kind == "gold"]
    assert 10 <= len(gold) <= 30  # rate 0.5 of 40, binomial 99.9% range
    for battle in gold:
        left, right = images[battle.left_image_id], images[battle.right_image_id]
        intact, copy = (left, right) if battle.gold_answer == "left" else (right, left)
        assert intact.broken is None and copy.broken == "gold"
        assert copy.model_id == intact.model_id and copy.params["gold_of"] == intact.id
        assert battle.policy == "gold"
    # Votes: the gold ones enter rater quality, never the leaderboard's frame.
    for k, view in enumerate(views):
        battle = battles[view.token]
        outcome = battle.gold_answer if battle.kind == "gold" else "left"
        record_vote(
            store,
            view.token,
            f"rater-{k:012d}",
            outcome,
            2000,
            matchmaker=mm,
            now=view.served_at + timedelta(seconds=3),
        )
    assert len(store.votes_frame()) == 40 - len(gold)
    report = quality_report(store)
    assert report["gold_accuracy"].dropna().eq(1.0).all()
    # Degraded copies are never served as ordinary images.
    mm.invalidate()
    for k in range(20):
        view = serve_battle(store, f"other-{k:012d}", mm)
        with store.session() as s:
            battle = s.scalar(select(db.Battle).where(db.Battle.token == view.token))
            if battle.kind == "normal":
                for image_id in (battle.left_image_id, battle.right_image_id):
                    assert s.get(db.Image, image_id).broken is None


def test_degraded_copies_are_made_once(gold_arena):
    store, _mm = gold_arena
    image_id = int(store.images_frame()["image_id"].iloc[0])
    first = degraded_copy(store, image_id, "blur")
    assert degraded_copy(store, image_id, "blur") == first
    assert degraded_copy(store, image_id, "noise") != first


@pytest.mark.parametrize("gold_rate", [1.0, 0.0])
def test_the_app_serves_and_records_with_the_stores_settings(tmp_path, gold_rate):
    """Settings have one owner: the app built on a store serves gold battles at the
    store's gold_rate and records their votes under the same store's settings (once,
    build_app took its own settings, and serving ignored their gold_rate)."""
    from types import SimpleNamespace

    from arena.config import load_settings
    from arena.storage.store import Store
    from arena.ui.app import build_app

    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        gold_rate=gold_rate,
        min_decision_ms=60_000,  # every vote below is "fast" only under these settings
        probation_votes=1,  # the issued rater's votes count at once
    )
    store = Store(settings)
    build_fixture(store, n_prompts=4, seeds=2)
    app = build_app(store, tabs=("arena.ui.vote_tab",))
    api = {fn.api_name: fn.fn for fn in app.fns.values()}
    request = SimpleNamespace(client=SimpleNamespace(host="203.0.113.9"), username=None)
    rater = api["rater"](request)["rater_id"]
    receipts = []
    for _ in range(6):
        battle = api["battle"](rater, request)
        with store.session() as s:
            row = s.scalar(select(db.Battle).where(db.Battle.token == battle["token"]))
            kind, answer = row.kind, row.gold_answer
        assert kind == ("gold" if gold_rate == 1.0 else "normal")
        receipts.append(api["vote"](battle["token"], rater, answer or "left", 2000, request))
    assert all(r["stored"] and r["flag"] == "fast" for r in receipts)
    with store.session() as s:
        kinds = [b.kind for b in s.scalars(select(db.Battle).join(db.Vote))]
    assert len(kinds) == 6 and set(kinds) == {"gold" if gold_rate == 1.0 else "normal"}
    assert len(store.votes_frame(include_gold=True)) == 6
    assert len(store.votes_frame()) == (0 if gold_rate == 1.0 else 6)  # gold: not ranked
    store.close()
