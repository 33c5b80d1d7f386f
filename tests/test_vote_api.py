"""The HTTP API through gradio_client against the real app: /battle and /vote round trips;
replayed, forged, cross-rater and malformed votes are refused and change nothing."""

from __future__ import annotations

import urllib.request

import pytest
from gradio_client import Client
from sqlalchemy import func, select

from arena.config import load_settings
from arena.storage import db
from arena.storage.store import Store
from tests.arena_app import running_app, served_fixture
from tests.arena_fixtures import MODEL_NAMES, build_fixture
from tests.arena_process import issued_rater_id

# Rater ids are issued by the server (/rater); the module's app issues these two.
ALICE = BOB = ""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    global ALICE, BOB
    with served_fixture(tmp_path_factory.mktemp("api") / "ws", reveal_models=True) as served_app:
        store, client, url, ALICE, BOB = served_app
        yield store, client, url


def vote_count(store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count(db.Vote.id)))


def test_api_lists_only_battle_and_vote(served):
    _store, client, _url = served
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert set(endpoints) == {"/rater", "/battle", "/vote"}
    assert endpoints["/rater"]["parameters"] == []
    params = [p["parameter_name"] for p in endpoints["/vote"]["parameters"]]
    assert params == ["battle_token", "rater_id", "outcome", "decision_ms"]


def test_battle_vote_round_trips(served):
    store, client, url = served
    before = vote_count(store)
    for k, outcome in enumerate(["left", "right", "tie", "both_bad"]):
        battle = client.predict(ALICE, api_name="/battle")
        assert set(battle) == {"token", "prompt", "left_image", "right_image"}
        with urllib.request.urlopen(url + battle["left_image"]) as resp:
            assert resp.status == 200 and resp.headers["content-type"] == "image/jpeg"
        result = client.predict(battle["token"], ALICE, outcome, 10 + k, api_name="/vote")
        assert result["stored"] is True and result["outcome"] == outcome
        assert {result["left_model"], result["right_model"]} <= set(MODEL_NAMES)
        with store.session() as s:
            vote = s.get(db.Vote, result["vote_id"])
            battle_row = s.get(db.Battle, vote.battle_id)
        assert battle_row.token == battle["token"] and vote.outcome == outcome
        # decision_ms is the client's figure, bounded by the time since serving; 10 ms is fast
        assert vote.decision_ms == 10 + k and vote.flag == result["flag"] == "fast"
    assert vote_count(store) == before + 4


def refused(client, *args) -> str:
    with pytest.raises(Exception) as err:  # gradio_client raises AppError with our message
        client.predict(*args, api_name="/vote")
    return str(err.value)


def test_refusals_leave_the_vote_count_unchanged(served):
    store, client, _url = served
    battle = client.predict(ALICE, api_name="/battle")
    client.predict(battle["token"], ALICE, "left", 1500, api_name="/vote")
    other = client.predict(ALICE, api_name="/battle")
    before = vote_count(store)
    assert "already_voted" in refused(client, battle["token"], ALICE, "right", 1500)
    assert "unknown_token" in refused(client, "F" * 32, ALICE, "left", 1500)
    forged = battle["token"][:-1] + ("y" if battle["token"].endswith("x") else "x")
    assert "unknown_token" in refused(client, forged, ALICE, "left", 1500)
    assert "wrong_rater" in refused(client, other["token"], BOB, "left", 1500)
    assert "bad_outcome" in refused(client, other["token"], ALICE, "sideways", 1500)
    assert "bad_rater" in refused(client, other["token"], "x", "left", 1500)
    assert vote_count(store) == before
    # The refused battle is still open for its own rater.
    client.predict(other["token"], ALICE, "tie", 1500, api_name="/vote")
    assert vote_count(store) == before + 1


def test_rate_limit_is_polite(tmp_path):
    settings = load_settings(env={}, workspace=str(tmp_path / "ws"), rate_limit_per_minute=2)
    store = Store(settings)
    build_fixture(store, n_prompts=3, seeds=2)
    with running_app(store) as url:
        client = Client(url, verbose=False)
        bob = issued_rater_id(client)
        for _ in range(2):
            b = client.predict(bob, api_name="/battle")
            client.predict(b["token"], bob, "left", 1500, api_name="/vote")
        b = client.predict(bob, api_name="/battle")
        message = refused(client, b["token"], bob, "left", 1500)
    assert "rate_limited" in message and "please take a short break" in message
    assert vote_count(store) == 2
    store.close()
