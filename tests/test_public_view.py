"""What a rater can see with the reveal off (arena.reports.public_view; docs/threat-model.md,
"What a rater can see"): no view offered to raters isolates one vote.

The real app is driven over HTTP the way its page drives it: every event of the
raters' app outside the Vote tab is called through Gradio's queue by index (page-load
values and Refresh buttons alike), before and after one's own vote. Votes are written
as the battle path stores them (a battle row, then its vote), so these tests do not
depend on the Vote tab.
"""

from __future__ import annotations

import itertools
import json
import secrets
from datetime import datetime, timedelta

import httpx
import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select

from arena.config import load_settings
from arena.reports.public_view import PublicViews, current_release, release_keys
from arena.serve import demo_reveal
from arena.storage import db
from arena.storage.store import Store
from arena.ui.leaderboard_tab import public_board_outputs
from tests.arena_app import queue_call, running_app
from tests.arena_fixtures import MODEL_NAMES, build_fixture

SECRET = "public-views-admin-secret"
STEP = 5
T0 = datetime(2025, 3, 1, 12, 0, 0)
FILTER_LABELS = {"Prompt category", "Prompt set", "Raters", "From (UTC date)", "Compare model"}


# -- writing votes ---------------------------------------------------------------------------
class Votes:
    """Battles and votes on random pairs of a fixture workspace, stored like the battle path."""

    def __init__(self, store: Store, fx, seed: int = 0):
        self.store, self.rng = store, np.random.default_rng(seed)
        self.images: dict[tuple[str, int], list[int]] = {}
        for iid, (model, pid) in fx.images.items():
            self.images.setdefault((model, pid), []).append(iid)
        self.prompts = sorted(fx.prompt_ids)
        self.clock = T0

    def cast(
        self, rater: str, n: int = 1, *, group: str | None = None, when: datetime | None = None
    ) -> list[tuple[int, str, str]]:
        """``n`` votes "left" by ``rater`` (a web rater when ``group`` is given): (vote id,
        left model, right model) each."""
        out = []
        with self.store.session() as s:
            rid = self.store.rater_id(rater, session=s)
            if group is not None:
                s.get(db.Rater, rid).client_group = group
            for _ in range(n):
                pid = int(self.rng.choice(self.prompts))
                left, right = (str(m) for m in self.rng.choice(MODEL_NAMES, 2, replace=False))
                self.clock += timedelta(minutes=1)
                at = when or self.clock
                battle = db.Battle(
                    token=secrets.token_hex(24),
                    prompt_id=pid,
                    left_image_id=self.images[(left, pid)][0],
                    right_image_id=self.images[(right, pid)][0],
                    rater_id=rid,
                    policy="uniform",
                    served_at=at - timedelta(seconds=3),
                )
                s.add(battle)
                s.flush()
                vote = db.Vote(
                    battle_id=battle.id,
                    rater_id=rid,
                    outcome="left",
                    decision_ms=3000,
                    created_at=at,
                )
                s.add(vote)
                s.flush()
                out.append((vote.id, left, right))
        return out


# -- the page's events, called as the page calls them -------------------------------------------
def tab_of_components(config: dict) -> dict[int, str]:
    """Component id -> label of the tab it is in ("" outside any tab)."""
    comps = {c["id"]: c for c in config["components"]}
    where: dict[int, str] = {}

    def walk(node, tab):
        comp = comps.get(node["id"], {})
        if comp.get("type") == "tabitem":
            tab = comp["props"]["label"]
        where[node["id"]] = tab
        for child in node.get("children", []):
            walk(child, tab)

    walk(config["layout"], "")
    return where


def labels(config: dict) -> set[str]:
    return {str(c.get("props", {}).get("label")) for c in config["components"]}


def tabs(config: dict) -> list[str]:
    return [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"]


def view_events(config: dict) -> list[tuple[int, dict]]:
    """The events whose outputs are all outside the Vote tab: everything a rater can look
    at besides the battle itself (page-load values, Refresh buttons, filters, Compare)."""
    where = tab_of_components(config)
    return [
        (dep.get("id", i), dep)
        for i, dep in enumerate(config["dependencies"])
        if dep["outputs"] and all(where.get(o) not in ("Vote", "") for o in dep["outputs"])
    ]


def capture(http: httpx.Client, config: dict) -> dict[int, str]:
    """What every view event returns now (inputs: the components' initial values)."""
    values = {c["id"]: c.get("props", {}).get("value") for c in config["components"]}
    return {
        fn: json.dumps(queue_call(http, fn, [values.get(i) for i in dep["inputs"]]), sort_keys=True)
        for fn, dep in view_events(config)
    }


# -- the release rule (pure) -------------------------------------------------------------------
def released_sets(raters: list[int], web: set[int], probation: int, step: int, naive=False):
    """Replay votes by these raters one at a time; the released vote ids after each."""
    out = []
    for t in range(1, len(raters) + 1):
        frame = pd.DataFrame({"vote_id": np.arange(1, t + 1), "rater_id": raters[:t]})
        per_rater = frame["rater_id"].value_counts()
        # Store.votes_frame: web raters count once they have cast `probation` votes
        counted = frame[
            ~frame["rater_id"].isin(web) | (frame["rater_id"].map(per_rater) >= probation)
        ]
        keys = (
            counted["vote_id"].to_numpy(float)
            if naive
            else release_keys(counted, frame, probation, web)
        )
        release = current_release(keys, step)
        ids = counted["vote_id"][keys <= release.last_key] if release.number else []
        out.append(frozenset(int(i) for i in ids))
    return out


def test_releases_grow_by_at_least_the_step_even_when_probation_ends():
    # Two scripted raters (ids 0, 1) and web raters on probation (3 votes) who keep joining.
    rng = np.random.default_rng(3)
    raters = [
        int(rng.integers(0, 2)) if rng.random() < 0.3 else int(rng.integers(2, 3 + t // 15))
        for t in range(400)
    ]
    web = set(range(2, max(raters) + 1))
    sets = released_sets(raters, web, probation=3, step=STEP)
    changes = 0
    for before, after in itertools.pairwise(sets):
        assert before <= after, "a released vote disappeared"
        if after != before:
            changes += 1
            assert len(after - before) >= STEP, sorted(after - before)
    assert changes >= 20 and len(sets[-1]) >= 300
    assert all(len(s) == 0 for s in sets[: STEP - 1])  # nothing before the first step
    # The probation case matters: counting by vote id alone lets a rater whose probation
    # ends add fewer than STEP older votes between two releases.
    naive = released_sets(raters, web, probation=3, step=STEP, naive=True)
    assert any(not (a <= b) or 0 < len(b - a) < STEP for a, b in itertools.pairwise(naive))


def test_release_steps_over_equal_keys():
    keys = np.array([1, 2, 9, 9, 9, 9, 9, 10, 11, np.inf])  # 9: a rater's probation ended
    release = current_release(keys, step=3)
    assert (release.number, release.last_key, release.votes) == (1, 9, 7)
    release = current_release(np.append(keys, [12, 13]), step=3)
    assert (release.number, release.last_key, release.votes) == (2, 12, 10)
    assert current_release(np.array([1.0, 2.0]), step=3).number == 0


@pytest.fixture
def fixture_store(tmp_path):
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        public_view_min_votes=STEP,
        bootstrap_rounds=20,
        min_votes_ranked=1,
    )
    store = Store(settings)
    fx = build_fixture(store, n_prompts=4, seeds=1)
    yield store, Votes(store, fx)
    store.close()


def test_no_board_before_the_first_release_then_one_per_step(fixture_store):
    store, votes = fixture_store
    views = PublicViews(store)
    votes.cast("sim-1", STEP - 1)
    summary, table, ratings, heatmap = public_board_outputs(views)
    assert f"appears once **{STEP}** votes are in" in summary
    assert table.empty and ratings is None and heatmap is None
    votes.cast("sim-1", 1)
    summary, table, *_ = public_board_outputs(views)
    assert summary.startswith(f"**{STEP}** votes") and not table.empty


def test_two_processes_on_one_database_show_the_same_release(fixture_store):
    store, votes = fixture_store
    other = Store(store.settings)  # a second server process on the same database
    try:
        early = PublicViews(other)
        votes.cast("sim-1", 2 * STEP + 2)
        votes.cast("web-1", 4, group="g1")  # in probation (10 votes): not counted yet
        assert early.release() == PublicViews(store).release() == PublicViews(other).release()
        release, board = early.board()
        _, fresh = PublicViews(store).board()
        assert (release.number, release.votes) == (2, 2 * STEP)
        pd.testing.assert_frame_equal(board.frame, fresh.frame)
    finally:
        other.close()


# -- the real app ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def blind_site(tmp_path_factory):
    """Reveal off (the default), releases every STEP votes, the Admin app mounted."""
    settings = load_settings(
        env={},
        workspace=str(tmp_path_factory.mktemp("public") / "ws"),
        public_view_min_votes=STEP,
        bootstrap_rounds=20,
        min_votes_ranked=1,
        admin_secret=SECRET,
    )
    assert settings.reveal_models is False
    store = Store(settings)
    votes = Votes(store, build_fixture(store, n_prompts=4, seeds=1))
    votes.cast("simulated-rater", 10)
    votes.cast("web-rater", 10, group="g-attacker")  # past probation: its votes count
    with running_app(store) as url:
        yield store, votes, url
    store.close()


def test_with_the_reveal_off_no_view_isolates_ones_own_vote(blind_site):
    _store, votes, url = blind_site
    with httpx.Client(base_url=url, timeout=60) as http:
        config = http.get("config").json()
        assert tabs(config) == ["Vote", "Workspace", "Leaderboard"]  # no Agreement tab
        assert not labels(config) & FILTER_LABELS, "a filter or Compare is on the raters' app"
        assert not [c for c in config["components"] if c["type"] in ("file", "downloadbutton")]
        events = view_events(config)
        assert len(events) >= 6 and all(not dep["inputs"] for _, dep in events), (
            "a view of the raters' app takes an input (a filter)"
        )
        baseline = capture(http, config)
        assert any("**20** votes" in v for v in baseline.values())
        # One's own vote, then every view again: nothing moved. Up to STEP - 1 votes later
        # (the rater's or anyone's) still nothing.
        for k in range(STEP - 1):
            votes.cast("web-rater", 1, group="g-attacker")
            assert capture(http, config) == baseline, f"a view changed after vote {k + 1}"
        # The STEP-th new vote releases the next snapshot: now the views change, together.
        votes.cast("someone-else", 1)
        after = capture(http, config)
        changed = [fn for fn in after if after[fn] != baseline[fn]]
        assert any(f"**{20 + STEP}** votes" in v for v in after.values())
        assert len(changed) >= 3  # the summary, the table, the workspace count (and plots)
        # The page's events are all there is: no index beyond them runs anything.
        body = {"data": [], "fn_index": len(config["dependencies"]), "session_hash": "x"}
        joined = http.post("gradio_api/queue/join", json=body)
        assert joined.status_code >= 400 or "error" in joined.text.lower()


@pytest.mark.browser
def test_the_blind_leaderboard_in_a_browser(blind_site):
    """The page as a rater sees it: the released board and its plots, no filter, no
    Compare, no Agreement tab."""
    from playwright.sync_api import expect

    from tests.browser import chromium

    _store, _votes, url = blind_site
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        page.goto(url)
        page.get_by_role("tab", name="Leaderboard").click()
        expect(page.get_by_text(f"released in steps of {STEP} votes")).to_be_visible(timeout=60_000)
        expect(page.locator(f'text="{MODEL_NAMES[0]}" >> visible=true').first).to_be_visible()
        for plot in ("#lb-ratings-plot", "#lb-heatmap"):
            expect(page.locator(f"{plot} img").first).to_be_visible()
        assert page.get_by_role("tab", name="Agreement").count() == 0
        for label in sorted(FILTER_LABELS):
            assert page.get_by_label(label).count() == 0, label
        assert page.get_by_role("button", name="Compare").count() == 0


def test_the_filtered_views_are_behind_the_admin_login(blind_site):
    """The attack of issue 16 -- Compare with a date window around one's own vote -- works
    in the Admin app (so the harness can see it) and only behind its login."""
    _store, votes, url = blind_site
    when = datetime(2030, 1, 1, 12, 0, 0)
    [(_, left, right)] = votes.cast("web-rater", 1, group="g-attacker", when=when)
    with httpx.Client(base_url=url + "admin/", timeout=60) as http:
        assert http.get("config").status_code == 401
        assert http.post("login", data={"username": "admin", "password": SECRET}).is_success
        config = http.get("config").json()
        assert {"Leaderboard", "Agreement", "Exports"} <= set(tabs(config))
        assert labels(config) >= FILTER_LABELS
        comps = {c["id"]: c["props"].get("label") for c in config["components"]}
        [(fn, dep)] = [
            (d.get("id", i), d)
            for i, d in enumerate(config["dependencies"])
            if comps.get(d["inputs"][0] if d["inputs"] else None) == "Compare model"
        ]
        window = {
            "Compare model": left,
            "with model": right,
            "From (UTC date)": "2030-01-01T11:59",
            "Until (inclusive)": "2030-01-01T12:01",
        }
        # the other inputs (filters, the rating method row) as the page sends them
        values = {c["id"]: c["props"].get("value") for c in config["components"]}
        data = [window.get(comps[i], values.get(i)) for i in dep["inputs"]]
        [text] = queue_call(http, fn, data)
    assert f"**{left}**" in text and f"**{right}**" in text and "1 votes between them" in text


def test_with_the_reveal_on_the_raters_get_the_live_tabs(tmp_path):
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        reveal_models=True,
        public_view_min_votes=STEP,
        bootstrap_rounds=20,
        min_votes_ranked=1,
    )
    store = Store(settings)
    votes = Votes(store, build_fixture(store, n_prompts=4, seeds=1))
    votes.cast("simulated-rater", 10)
    try:
        with running_app(store) as url, httpx.Client(base_url=url, timeout=60) as http:
            config = http.get("config").json()
            assert tabs(config) == ["Vote", "Workspace", "Leaderboard", "Agreement"]
            assert labels(config) >= FILTER_LABELS
            before = capture(http, config)
            votes.cast("web-rater", 1)
            after = capture(http, config)
            # Live views: one vote shows (the capture sees what the blind app must hide).
            assert before != after
            assert any("**11** votes" in v for v in after.values())
    finally:
        store.close()


# -- the offline demo reveals -------------------------------------------------------------------
def test_the_demo_workspace_reveals_unless_told_otherwise(store):
    assert demo_reveal(store) is False  # empty
    store.add_model("demo-real", "reference")
    store.add_model("faithful", "demo")
    assert demo_reveal(store) is True
    told = load_settings(env={"ARENA_REVEAL_MODELS": "0"}, workspace=str(store.workspace))
    assert "reveal_models" in told.explicit and "port" not in told.explicit
    hidden = Store(told)
    try:
        assert demo_reveal(hidden) is False  # ARENA_REVEAL_MODELS=0 is a choice, not a default
    finally:
        hidden.close()
    store.add_model("my-real-model", "import")
    assert demo_reveal(store) is False


def test_serve_turns_the_reveal_on_for_the_demo_only(store):
    from arena.serve import serve
    from tests.arena_app import free_port

    store.add_model("faithful", "demo")
    with store.session() as s:  # not empty: serve builds nothing
        s.add(db.Image(sha256="0" * 64, model_id=1, width=8, height=8))
    for demo, expected in ((True, True), (False, False)):
        port = free_port()
        handle = serve(store, host="127.0.0.1", port=port, build_demo_if_empty=demo, block=False)
        try:
            assert ("Agreement" in tabs(handle.blocks.get_config_file())) is expected
        finally:
            handle.close()
    with store.session() as s:
        assert s.scalar(select(db.Image.id)) is not None
