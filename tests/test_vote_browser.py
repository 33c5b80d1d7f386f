"""The Vote tab in headless chromium: vote by click and by key, the vote row, the reveal,
the next (preloaded) battle, the session counter, skip, and the phone layout."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from arena.config import load_settings
from arena.storage import db
from arena.storage.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import MODEL_NAMES, build_fixture
from tests.browser import ARTIFACTS, chromium

pytestmark = pytest.mark.browser
OPEN = "#arena-battle .arena-battle.arena-open"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    ws = tmp_path_factory.mktemp("browser") / "ws"
    settings = load_settings(env={}, workspace=str(ws), min_decision_ms=300, reveal_models=True)
    store = Store(settings)
    build_fixture(store, n_prompts=4, seeds=2, size=256)
    with running_app(store) as url, chromium() as browser:
        yield store, url, browser
    store.close()


def shown(page) -> tuple[str, list[str]]:
    battle = page.locator(OPEN)
    seq = battle.get_attribute("data-seq")
    srcs = page.locator(f"{OPEN} .arena-frame img").evaluate_all("els => els.map(e => e.src)")
    return seq, [s.rsplit("/", 1)[1] for s in srcs]


def preloaded(page) -> list[str]:
    srcs = page.locator("#arena-battle .arena-preload img").evaluate_all(
        "els => els.map(e => e.src)"
    )
    return [s.rsplit("/", 1)[1] for s in srcs]


def wait_images(page) -> None:
    page.wait_for_function(
        "() => { const imgs = document.querySelectorAll("
        f"'{OPEN} .arena-frame img'); return imgs.length === 2 && "
        "[...imgs].every(i => i.complete && i.naturalWidth > 0) && window.arenaShownAt !== null; }"
    )


def last_vote(store):
    with store.session() as s:
        row = s.execute(
            select(db.Vote, db.Battle).join(db.Battle).order_by(db.Vote.id.desc()).limit(1)
        ).first()
        if row is None:
            return None
        vote, battle = row
        # the page's URLs are the battle's handles
        return vote.outcome, vote.decision_ms, battle.left_handle, battle.right_handle, vote.id


def vote_count(store) -> int:
    with store.session() as s:
        return len(s.scalars(select(db.Vote.id)).all())


def test_vote_by_click_and_key(site):
    store, url, browser = site
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url)
    page.wait_for_selector(OPEN, timeout=30_000)
    wait_images(page)
    assert "Keys" not in page.title()
    status = page.locator("#arena-status")
    assert "Votes this session: 0" in status.inner_text()
    assert "←" in page.locator("#vote-left").inner_text()
    seq0, (left0, right0) = shown(page)
    next0 = preloaded(page)
    assert len(next0) == 2 and set(next0) != {left0, right0}
    page.wait_for_timeout(400)  # a considered (not "fast") decision
    page.screenshot(path=str(ARTIFACTS / "vote_page.png"), full_page=True)

    # 1. Vote with a click: stored, revealed, then the preloaded battle appears.
    page.click("#vote-left")
    page.wait_for_selector("#arena-battle .arena-revealed .arena-model")
    names = page.locator("#arena-battle .arena-model").all_inner_texts()
    assert len(names) == 2 and set(names) <= set(MODEL_NAMES) and names[0] != names[1]
    assert "your pick" in page.locator("#arena-battle .arena-winner").inner_text()
    page.screenshot(path=str(ARTIFACTS / "vote_reveal.png"), full_page=True)
    outcome, decision_ms, left, right, _ = last_vote(store)
    assert (outcome, left, right) == ("left", left0, right0)
    assert decision_ms >= 300  # measured in the browser, bounded by the server's clock
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('{OPEN}'); "
        f"return b && b.dataset.seq !== '{seq0}'; }}"
    )
    wait_images(page)
    seq1, pair1 = shown(page)
    assert pair1 == next0  # the next battle is the one that was preloaded
    assert "Votes this session: 1" in status.inner_text()

    # 2. Vote with a key press (→ = right is better).
    page.wait_for_timeout(350)
    page.keyboard.press("ArrowRight")
    page.wait_for_selector("#arena-battle .arena-revealed")
    page.wait_for_function(f"() => document.querySelector('{OPEN}')?.dataset.seq > '{seq1}'")
    outcome, _ms, left, right, _ = last_vote(store)
    assert (outcome, [left, right]) == ("right", pair1)
    assert "Votes this session: 2" in status.inner_text()

    # 3. Skip (S) stores nothing and shows another battle; ↓ votes "both bad".
    wait_images(page)
    seq2, _ = shown(page)
    count = vote_count(store)
    page.keyboard.press("s")
    page.wait_for_function(
        f"() => {{ const b = document.querySelector('{OPEN}'); "
        f"return b && b.dataset.seq !== '{seq2}'; }}"
    )
    assert vote_count(store) == count
    wait_images(page)
    page.keyboard.press("ArrowDown")
    page.wait_for_selector("#arena-battle .arena-revealed")
    assert last_vote(store)[0] == "both_bad"
    page.wait_for_selector(OPEN)
    page.screenshot(path=str(ARTIFACTS / "vote_next.png"), full_page=True)

    # The rater id persists in local storage: a reload is the same rater.
    with store.session() as s:
        raters_before = len(s.scalars(select(db.Rater.id)).all())
    page.reload()
    page.wait_for_selector(OPEN, timeout=30_000)
    with store.session() as s:
        assert len(s.scalars(select(db.Rater.id)).all()) == raters_before
    page.close()


def test_phone_layout_stacks_images(site):
    _store, url, browser = site
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page.goto(url)
    page.wait_for_selector(OPEN, timeout=30_000)
    wait_images(page)
    frames = page.locator(f"{OPEN} .arena-frame")
    a, b = frames.nth(0).bounding_box(), frames.nth(1).bounding_box()
    assert b["y"] >= a["y"] + a["height"] - 1  # stacked, not side by side
    assert abs(a["width"] - b["width"]) < 1 and abs(a["height"] - b["height"]) < 1
    assert a["width"] <= 390
    # The vote buttons stay reachable: on screen (sticky) without scrolling.
    box = page.locator("#vote-left").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 844
    page.screenshot(path=str(ARTIFACTS / "vote_phone.png"), full_page=False)
    page.close()
