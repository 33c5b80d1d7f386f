"""Tampering: forged, replayed, expired and cross-rater tokens, out-of-range values, the
internal events, the Admin app's login, and a prompt and model names carrying HTML/JS
rendered on every page of the real browser without executing."""

from __future__ import annotations

import secrets
import threading
import time
import urllib.error
import urllib.request

import httpx
import numpy as np
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from sqlalchemy import func, select

from arena.config import load_settings
from arena.storage import db
from arena.storage.store import PromptRow, Store
from arena.voting.battles import record_vote, serve_battle
from arena.voting.matchmaking import Matchmaker
from tests.arena_app import queue_messages, running_app, served_fixture
from tests.arena_fixtures import _picture, build_fixture
from tests.browser import chromium

# Rater ids are issued by the server (/rater); the module's app issues these two.
ALICE = BOB = ""
SECRET = "correct horse battery staple"


def counts(store) -> tuple[int, int]:
    with store.session() as s:
        return s.scalar(select(func.count(db.Vote.id))), s.scalar(select(func.count(db.Rater.id)))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    global ALICE, BOB
    ws = tmp_path_factory.mktemp("tamper") / "ws"
    with served_fixture(ws, battle_ttl_seconds=2, admin_secret=SECRET) as served_app:
        store, client, url, ALICE, BOB = served_app
        yield store, client, url


def refused(client, *args) -> str:
    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/vote")
    return str(info.value)


def test_public_api_is_battle_and_vote_only_with_admin_mounted(served):
    _store, client, url = served
    api = client.view_api(return_format="dict", print_info=False)
    assert set(api["named_endpoints"]) == {"/rater", "/battle", "/vote"}
    assert not api["unnamed_endpoints"]
    # The Admin app is there, behind its login: nothing of it without the secret.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url + "admin/config")
    assert info.value.code == 401
    page = urllib.request.urlopen(url + "admin/").read().decode()
    assert "Raters" not in page and "exclusion" not in page.lower()
    with httpx.Client(base_url=url) as http:
        bad = http.post("admin/login", data={"username": "admin", "password": "guess"})
        assert bad.status_code == 400
        good = http.post("admin/login", data={"username": "admin", "password": SECRET})
        assert good.status_code == 200
        assert http.get("admin/config").status_code == 200


def test_forged_replayed_cross_rater_and_expired_tokens(served):
    store, client, _url = served
    battle = client.predict(ALICE, api_name="/battle")
    before = counts(store)
    assert "unknown_token" in refused(client, secrets.token_urlsafe(24), ALICE, "left", 3000)
    assert "unknown_token" in refused(client, "../../etc/passwd", ALICE, "left", 3000)
    assert "unknown_token" in refused(client, battle["token"] + "x", ALICE, "left", 3000)
    assert "wrong_rater" in refused(client, battle["token"], BOB, "left", 3000)
    assert counts(store) == before  # refusals create no vote (nor the unknown rater BOB)
    client.predict(battle["token"], ALICE, "right", 3000, api_name="/vote")
    assert "already_voted" in refused(client, battle["token"], ALICE, "left", 3000)
    assert counts(store)[0] == before[0] + 1
    old = client.predict(ALICE, api_name="/battle")
    time.sleep(2.5)  # battle_ttl_seconds=2
    assert "expired" in refused(client, old["token"], ALICE, "left", 3000)
    assert counts(store)[0] == before[0] + 1


@pytest.mark.parametrize(
    "outcome, decision_ms, reason",
    [
        ("LEFT", 3000, "bad_outcome"),
        ("left ", 3000, "bad_outcome"),
        ("", 3000, "bad_outcome"),
        ("left; DROP TABLE votes", 3000, "bad_outcome"),
        ("left", -1, "bad_decision_ms"),
        ("left", float("nan"), "bad_decision_ms"),
    ],
)
def test_out_of_range_values_are_refused(served, outcome, decision_ms, reason):
    store, client, _url = served
    battle = client.predict(ALICE, api_name="/battle")
    before = counts(store)
    try:
        message = refused(client, battle["token"], ALICE, outcome, decision_ms)
    except ValueError:  # NaN cannot even be sent as JSON by the client
        assert decision_ms != decision_ms
        return
    assert reason in message
    assert counts(store) == before


def test_internal_events_cannot_cast_or_forge_votes(served):
    """Every non-API event, called directly with forged payloads (a valid token of a battle
    served to ALICE in the state slot), stores no vote: session state lives on the server."""
    store, client, url = served
    battle = client.predict(ALICE, api_name="/battle")
    config = httpx.get(url + "config").json()
    hidden = [
        (i, dep)
        for i, dep in enumerate(config["dependencies"])
        if dep.get("api_name") not in ("rater", "battle", "vote")
    ]
    assert hidden
    forged_state = {"rater": ALICE, "current": battle, "token": battle["token"]}
    before = counts(store)[0]
    with httpx.Client(base_url=url, timeout=30) as http:
        for i, dep in hidden:
            n = len(dep.get("inputs", []))
            for payload in ([None] * n, [forged_state] * n, [1000] + [forged_state] * (n - 1)):
                queue_messages(http, dep.get("id", i), payload[:n])
            # and by name: no name-addressed route reaches a hidden event
            if dep.get("api_name"):
                for route in ("gradio_api/call/", "gradio_api/run/", "call/"):
                    r = http.post(route + dep["api_name"], json={"data": [None] * n})
                    assert r.status_code == 404, (route, dep["api_name"], r.text)
        assert http.post("gradio_api/call/battle", json={"data": [BOB]}).status_code == 200
    with pytest.raises(Exception):  # noqa: B017 - any refusal by the client is fine
        client.predict(ALICE, api_name="/start")
    assert counts(store)[0] == before
    with store.session() as s:  # ALICE's battle is untouched: still without a vote
        bid = s.scalar(select(db.Battle.id).where(db.Battle.token == battle["token"]))
        assert s.scalar(select(db.Vote.id).where(db.Vote.battle_id == bid)) is None


def test_authenticated_rater_is_keyed_by_login(tmp_path):
    settings = load_settings(env={}, workspace=str(tmp_path / "ws"))
    store = Store(settings)
    build_fixture(store, n_prompts=2, seeds=1)
    with running_app(store, auth=[("ann", "pw-ann-1")]) as url:
        with pytest.raises(Exception):  # noqa: B017 - no login, no app
            Client(url, verbose=False)
        client = Client(url, verbose=False, auth=("ann", "pw-ann-1"))
        battle = client.predict(ALICE, api_name="/battle")
        client.predict(battle["token"], ALICE, "left", 3000, api_name="/vote")
    with store.session() as s:
        rater = s.scalar(select(db.Rater).join(db.Vote, db.Vote.rater_id == db.Rater.id))
        # A login is the rater, whatever rater id it sends (ALICE was issued by another app).
        assert (rater.login, rater.external_id) == ("ann", "login:ann")
    store.close()


# -- HTML/JS injection through a prompt and model names, in the real browser ---------------
XSS_MODELS = (
    '<img src=x onerror="window.__xss=1;alert(1)">',
    "<script>window.__xss=2;alert(2)</script>",
    "模型-ñ-🙂 \u202eRTL",
)
XSS_PROMPT = (
    '<script>window.__xss=3;alert(3)</script><img src=y onerror="window.__xss=4"> '
    "<b>bold?</b> **md** [link](javascript:window.__xss=5) 🦊 café"
)


@pytest.fixture(scope="module")
def xss_site(tmp_path_factory):
    ws = tmp_path_factory.mktemp("xss") / "ws"
    settings = load_settings(
        env={},
        workspace=str(ws),
        admin_secret=SECRET,
        min_votes_ranked=1,
        bootstrap_rounds=50,
        reveal_models=True,  # every tab, and the names in the Vote tab after a vote
    )
    store = Store(settings)
    store.add_prompts([PromptRow(XSS_PROMPT, "p0", tags=XSS_PROMPT[:40])], "xss")
    pid = store.prompt_ids("xss")[("xss", "p0")]
    rng = np.random.default_rng(1)
    for name in XSS_MODELS:
        mid = store.add_model(name, "import", source=name)
        for seed in range(2):
            store.add_image(mid, pid, store.images.put_image(_picture(rng, 64, "m")), seed=seed)
    matchmaker = Matchmaker.for_store(store)
    for k in range(12):
        view = serve_battle(store, f"xss-voter-{k:06d}", matchmaker)
        record_vote(
            store,
            view.token,
            f"xss-voter-{k:06d}",
            ("left", "right", "tie")[k % 3],
            4000,
            matchmaker=matchmaker,
        )
    with running_app(store) as url, chromium() as browser:
        yield store, url, browser
    store.close()


def _assert_inert(page, dialogs, where: str) -> None:
    page.wait_for_timeout(700)
    assert page.evaluate("() => window.__xss") is None, f"script ran on {where}"
    assert not dialogs, f"dialog opened on {where}: {dialogs}"


@pytest.mark.slow
def test_prompt_and_model_names_never_execute(xss_site):
    _store, url, browser = xss_site
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(url)
    page.wait_for_selector("#arena-battle .arena-prompt p")
    assert page.locator("#arena-battle .arena-prompt p").inner_text().startswith("<script>")
    _assert_inert(page, dialogs, "Vote")
    page.click("#vote-left")  # reveal: the model names are rendered now
    page.wait_for_selector("#arena-battle .arena-model")
    names = page.locator("#arena-battle .arena-model").all_inner_texts()
    assert set(names) <= set(XSS_MODELS) and names
    _assert_inert(page, dialogs, "Vote reveal")
    for tab in ("Workspace", "Leaderboard", "Agreement"):
        button = page.get_by_role("tab", name=tab)
        if button.count():
            button.click()
            page.wait_for_timeout(1500)
            _assert_inert(page, dialogs, tab)
    text = page.locator("body").inner_text()
    assert "onerror" in text  # the names are shown, as text
    page.goto(url + "admin/")
    page.fill("input[type=text]", "admin")
    page.fill("input[type=password]", SECRET)
    page.keyboard.press("Enter")
    page.wait_for_timeout(2500)
    tabs = page.get_by_role("tab").all()
    assert len(tabs) >= 2, "the admin login did not succeed"
    seen_names = False
    for tab in tabs:
        tab.click()
        page.wait_for_timeout(800)
        _assert_inert(page, dialogs, f"Admin {tab.inner_text()}")
        seen_names |= "onerror" in page.locator("body").inner_text()
    assert seen_names  # the Admin app showed the model names, as text
    # The harness can see an injection: the same payload as markup does run.
    page.evaluate(
        "p => { const d = document.createElement('div'); document.body.append(d); "
        "d.innerHTML = p; }",
        XSS_MODELS[0],
    )
    page.wait_for_timeout(700)
    assert page.evaluate("() => window.__xss") == 1 and dialogs
    page.close()


def test_bad_import_under_load_does_not_block_voting(tmp_path):
    """An import of a folder of corrupt files runs (in its own process, as from the CLI)
    while raters vote: votes keep succeeding with bounded latency."""
    import subprocess
    import sys

    from tests.arena_process import RaterLog, ServerProcess, build_workspace, connect, run_rater

    ws = tmp_path / "ws"
    build_workspace(ws, n_prompts=10)
    bad = tmp_path / "bad"
    bad.mkdir()
    for k in range(300):
        (bad / f"p{k % 10}_{k}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + secrets.token_bytes(4000))
    with ServerProcess(ws) as server:
        clients = [connect(server.url) for _ in range(4)]
        logs = [RaterLog() for _ in range(4)]
        stop = threading.Event()
        threads = [
            threading.Thread(target=run_rater, args=(clients[k], k, 10_000, stop, logs[k]))
            for k in range(4)
        ]
        for t in threads:
            t.start()
        t0 = time.monotonic()
        imp = subprocess.run(
            [
                sys.executable,
                "-m",
                "arena.cli",
                "-w",
                str(ws),
                "import-images",
                str(bad),
                "--model",
                "corrupt-model",
                "--workers",
                "2",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        during = sum(len(log.acked) for log in logs)
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join(60)
    elapsed = time.monotonic() - t0
    assert imp.returncode in (0, 2), imp.stderr
    assert (
        "corrupt" in (imp.stdout + imp.stderr).lower()
        or "not an image" in (imp.stdout + imp.stderr).lower()
    )
    assert not [e for log in logs for e in log.errors]
    assert during >= 4, f"only {during} votes in {elapsed:.1f} s while importing"
    latency = np.array([x for log in logs for x in log.vote_latency_s])
    assert np.percentile(latency, 95) < 5.0  # bounded (2-core sandbox shared with the import)
