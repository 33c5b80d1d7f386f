"""Opening a tab shows what changed since the page loaded (arena.ui.app.refresh_on_open):
a vote cast in the Vote tab is counted on the Leaderboard and the Workspace tab as soon as
the tab is opened, without pressing Refresh or reloading the page. In headless chromium."""

from __future__ import annotations

import pytest

from arena.config import load_settings
from arena.storage.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import build_fixture
from tests.browser import chromium

pytestmark = pytest.mark.browser
OPEN = "#arena-battle .arena-battle.arena-open"


def test_a_vote_shows_when_the_leaderboard_tab_is_opened(tmp_path):
    from playwright.sync_api import expect

    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        reveal_models=True,  # the live board (with it off raters see released snapshots)
        probation_votes=1,  # the first vote of a new rater counts at once
        bootstrap_rounds=0,
        min_decision_ms=200,
    )
    store = Store(settings)
    build_fixture(store, n_prompts=2, seeds=1, size=64)
    try:
        with running_app(store) as url, chromium() as browser:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector(OPEN, timeout=30_000)
            tab = page.get_by_role("tab", name="Leaderboard")
            tab.click()
            panel = page.get_by_role("tabpanel")  # the selected tab only
            expect(panel.get_by_text("No votes yet for all votes.")).to_be_visible()

            page.get_by_role("tab", name="Vote").click()
            page.wait_for_selector(OPEN)
            page.wait_for_timeout(300)  # a considered decision, not a flagged fast one
            page.click("#vote-left")
            page.wait_for_selector("#arena-battle .arena-revealed")  # stored

            tab.click()  # no Refresh, no reload: opening the tab recomputes
            expect(panel.get_by_text("1 votes (all votes)", exact=False)).to_be_visible(
                timeout=15_000
            )
            # one vote: the winner never lost and the loser never won, so both are listed
            # without a rating (the board itself, not a stale "No votes yet")
            expect(panel.locator("#lb-table")).to_contain_text("never won or never lost")
            page.get_by_role("tab", name="Workspace").click()
            expect(page.get_by_role("tabpanel").get_by_text("1 votes", exact=False)).to_be_visible(
                timeout=15_000
            )
            page.close()
    finally:
        store.close()
