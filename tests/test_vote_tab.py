"""Vote tab handlers without a browser: reveal setting, rate-limit note.

That the UI never imports torch is checked in tests/test_import_rules.py.
"""

from __future__ import annotations

import numpy as np

from arena.voting.admission import Admission
from arena.voting.matchmaking import Matchmaker, UniformPolicy
from tests.arena_fixtures import MODEL_NAMES, build_fixture


def handlers_for(store, **overrides):
    from arena.ui.vote_tab import VoteHandlers

    store = store.with_settings(**overrides)  # the handlers read the store's settings
    mm = Matchmaker(store, UniformPolicy(), np.random.default_rng(0))
    return VoteHandlers(store, mm, Admission(store))


def test_reveal_off_keeps_names_hidden_after_the_vote(store):
    build_fixture(store, n_prompts=3, seeds=2)
    h = handlers_for(store, reveal_models=False)
    browser_id, session, page, status = h.start("", None)
    assert h.admission.is_issued(browser_id) and "arena-open" in page
    session, page, status = h.vote("tie", 1500, session)
    assert "Vote saved" in page and not any(n in page for n in MODEL_NAMES)
    assert "Votes this session: <b>1</b>" in status
    assert len(store.votes_frame(include_excluded=True)) == 1
    # A second click while the reveal is showing is ignored (no double vote).
    h.vote("left", 1500, session)
    assert len(store.votes_frame(include_excluded=True)) == 1
    session, page, status = h.advance(session)
    assert "arena-open" in page


def test_reveal_on_names_the_models(store):
    build_fixture(store, n_prompts=3, seeds=2)
    h = handlers_for(store, reveal_models=True)
    _, session, _, _ = h.start("tampered id with spaces", None)
    _, page, _ = h.vote("left", 1500, session)
    assert sum(n in page for n in MODEL_NAMES) == 2 and "your pick" in page


def test_rate_limit_keeps_the_battle_and_says_why(store):
    build_fixture(store, n_prompts=3, seeds=2)
    h = handlers_for(store, rate_limit_per_minute=1)
    _, session, _, _ = h.start("rater-rate-0001", None)
    session, _, _ = h.vote("left", 1500, session)
    session, _, _ = h.advance(session)
    current = session["current"]
    session2, _, status = h.vote("left", 1500, session)
    assert session2["current"] == current and "short break" in status
    assert len(store.votes_frame(include_excluded=True)) == 1
