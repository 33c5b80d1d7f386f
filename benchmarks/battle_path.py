"""The battle path at scale: serve_battle + record_vote latency, and end-to-end votes/s.

Workspace: 20 models x 2,000 prompts x 4 seeds = 160,000 image rows and 1,000,000
votes (each with its battle), inserted in bulk. Image rows carry hashes without
files: this measures the database and matchmaking path, not PNG serving.

    .venv/bin/python benchmarks/battle_path.py            # full size (a few minutes)
    .venv/bin/python benchmarks/battle_path.py --votes 100000 --duration 10   # quicker

Prints: build time, matchmaker index build, server-side p50/p99 of serve_battle and
record_vote, and end to end through the app running as `arena serve` in its own process, with N
concurrent gradio_client raters (threads in a few client processes; battle -> vote ->
battle ...): votes/s, p95 vote-to-next-battle, and whether the
votes in the database equal the votes acknowledged.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from arena.config import load_settings
from arena.stats.pairs import OUTCOMES as VOTE_OUTCOMES
from arena.storage.store import Store
from arena.voting.battles import record_vote, serve_battle
from arena.voting.matchmaking import Matchmaker
from benchmarks.load import cpu_seconds

OUTCOMES = np.array(VOTE_OUTCOMES)
GROUP = "0" * 32  # an address group's hash, stored with each battle as the web app does


def fake_sha(*parts) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def build_workspace(store: Store, models: int, prompts: int, seeds: int, votes: int, rng):
    """Bulk insert through one sqlite3 connection (one transaction per table)."""
    db_path = store.url.removeprefix("sqlite:///")
    now = datetime.utcnow().replace(microsecond=0)
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA synchronous=OFF")  # bulk load only; the server uses FULL
    ts = now.isoformat(sep=" ")
    with con:
        con.executemany(
            "INSERT INTO models (name, kind, source, params, description, active, created_at) "
            "VALUES (?, 'import', ?, '{}', '', 1, ?)",
            [(f"bench-model-{m:02d}", f"/bench/{m}", ts) for m in range(models)],
        )
        con.executemany(
            "INSERT INTO prompts (prompt_set, external_id, text, tags, category, created_at) "
            "VALUES ('bench', ?, ?, '', ?, ?)",
            [(f"p{p}", f"benchmark prompt {p}", f"c{p % 10}", ts) for p in range(prompts)],
        )
    model_ids = [r[0] for r in con.execute("SELECT id FROM models ORDER BY id")]
    prompt_ids = [r[0] for r in con.execute("SELECT id FROM prompts ORDER BY id")]
    rows = (
        (fake_sha(m, p, s), m, p, s, 512, 512, "", "{}", f"{m}/{p}_{s}.png", ts)
        for m in model_ids
        for p in prompt_ids
        for s in range(seeds)
    )
    with con:
        con.executemany(
            "INSERT INTO images (sha256, model_id, prompt_id, seed, width, height, "
            "settings_hash, params, source_name, created_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
    n_raters = 2000
    with con:
        con.executemany(
            "INSERT INTO raters (external_id, kind, excluded, excluded_reason, "
            "exclusion_manual, created_at) VALUES (?, 'simulated', 0, '', 0, ?)",
            [(f"bench-sim-{r:05d}", ts) for r in range(n_raters)],
        )
    rater_ids = np.array([r[0] for r in con.execute("SELECT id FROM raters ORDER BY id")])
    first_image = con.execute("SELECT min(id) FROM images").fetchone()[0]
    per_model = len(prompt_ids) * seeds
    chunk = 200_000
    for start in range(0, votes, chunk):
        n = min(chunk, votes - start)
        a = rng.integers(0, models, n)
        b = (a + rng.integers(1, models, n)) % models
        p = rng.integers(0, len(prompt_ids), n)
        left = first_image + a * per_model + p * seeds + rng.integers(0, seeds, n)
        right = first_image + b * per_model + p * seeds + rng.integers(0, seeds, n)
        raters = rater_ids[rng.integers(0, n_raters, n)]
        served = [
            (now - timedelta(days=30) + timedelta(seconds=int(x))).isoformat(sep=" ")
            for x in rng.integers(0, 29 * 86400, n)
        ]
        outcome = OUTCOMES[rng.integers(0, 4, n)]
        decision = rng.integers(800, 9000, n)
        with con:
            con.executemany(
                "INSERT INTO battles (id, token, prompt_id, left_image_id, right_image_id, "
                "rater_id, policy, kind, served_at) VALUES (?,?,?,?,?,?,'uniform','normal',?)",
                (
                    (
                        start + k + 1,
                        f"bench{start + k:010d}xxxxxxxxxxxxxxxxxx",
                        prompt_ids[p[k]],
                        int(left[k]),
                        int(right[k]),
                        int(raters[k]),
                        served[k],
                    )
                    for k in range(n)
                ),
            )
            con.executemany(
                "INSERT INTO votes (battle_id, rater_id, outcome, decision_ms, created_at) "
                "VALUES (?,?,?,?,?)",
                (
                    (start + k + 1, int(raters[k]), str(outcome[k]), int(decision[k]), served[k])
                    for k in range(n)
                ),
            )
    con.execute("PRAGMA synchronous=FULL")
    con.close()


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def server_side(store: Store, n: int) -> dict:
    t = time.perf_counter()
    mm = Matchmaker.for_store(store)
    mm.index()
    index_s = time.perf_counter() - t
    serve_t, vote_t = [], []
    for k in range(n):
        rater = f"bench-server-{k % 50:04d}"
        t0 = time.perf_counter()
        view = serve_battle(store, rater, mm, client_group=GROUP)
        t1 = time.perf_counter()
        record_vote(store, view.token, rater, "left", 1500, matchmaker=mm)
        t2 = time.perf_counter()
        serve_t.append(t1 - t0)
        vote_t.append(t2 - t1)
    return {
        "index_build_s": index_s,
        "serve_p50_ms": pct(serve_t, 50),
        "serve_p99_ms": pct(serve_t, 99),
        "vote_p50_ms": pct(vote_t, 50),
        "vote_p99_ms": pct(vote_t, 99),
        "n": n,
    }


def _client_process(url: str, ids: list[int], duration: float, start_at: float, out) -> None:
    """One process of raters (threads): battle -> vote -> battle ... until the deadline."""
    from tests.arena_process import connect, issued_rater_id

    acked, gaps, errors = 0, [], []
    lock = threading.Lock()
    cpu_at_start = []

    def rater(k: int) -> None:
        nonlocal acked
        client = connect(url)
        rid = issued_rater_id(client)
        battle = client.predict(rid, api_name="/battle")
        time.sleep(max(0.0, start_at - time.time()))
        with lock:
            if not cpu_at_start:
                cpu_at_start.append(time.process_time())
        while time.time() < start_at + duration:
            t0 = time.perf_counter()
            try:
                client.predict(battle["token"], rid, "left", 1500, api_name="/vote")
            except Exception as exc:  # a refused vote is not acknowledged
                with lock:
                    errors.append(str(exc)[:200])
            else:
                with lock:
                    acked += 1
            battle = client.predict(rid, api_name="/battle")
            with lock:
                gaps.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=rater, args=(k,)) for k in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = time.process_time() - (cpu_at_start[0] if cpu_at_start else 0.0)
    out.put((acked, gaps, errors, cpu))


def start_server(workspace: Path, settings) -> tuple:
    """`arena serve` in its own process (its own GIL, as in production)."""
    import subprocess
    import urllib.request

    from tests.arena_process import FAST_RATERS

    env = dict(
        os.environ,
        **FAST_RATERS,  # every benchmark rater votes from 127.0.0.1, far faster than a person
        ARENA_MATCHMAKING_POLICY=settings.matchmaking_policy,
        GRADIO_ANALYTICS_ENABLED="False",
    )
    cmd = [
        sys.executable,
        "-m",
        "arena.cli",
        "-w",
        str(workspace),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(settings.port),
    ]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(cmd, env=env, cwd=root, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{settings.port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url + "config", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start within 180 s")


def end_to_end(store: Store, settings, raters: int, duration: float, procs: int) -> dict:
    import multiprocessing as mp

    from gradio_client import Client

    t_start = time.perf_counter()
    proc, url = start_server(store.workspace, settings)  # builds the matchmaker index
    startup_s = time.perf_counter() - t_start
    try:
        warm = Client(url, verbose=False)
        warm.predict(warm.predict(api_name="/rater")["rater_id"], api_name="/battle")
        with sqlite3.connect(store.url.removeprefix("sqlite:///")) as con:
            last_vote = con.execute("SELECT coalesce(max(id), 0) FROM votes").fetchone()[0]
        ctx = mp.get_context("spawn")
        out = ctx.Queue()
        start_at = time.time() + 15  # every client connected and holding a battle
        groups = [list(range(raters))[k::procs] for k in range(procs)]
        workers = [
            ctx.Process(target=_client_process, args=(url, g, duration, start_at, out))
            for g in groups
        ]
        for w in workers:
            w.start()
        time.sleep(max(0.0, start_at - time.time()))
        server_cpu0 = cpu_seconds(proc.pid)
        results = [out.get(timeout=duration + 300) for _ in workers]
        server_cpu = cpu_seconds(proc.pid) - server_cpu0
        for w in workers:
            w.join()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    acked = sum(r[0] for r in results)
    gaps = [g for r in results for g in r[1]]
    errors = [e for r in results for e in r[2]]
    client_cpu = sum(r[3] for r in results)
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as con:
        in_db = con.execute("SELECT count(*) FROM votes WHERE id > ?", (last_vote,)).fetchone()[0]
    return {
        "raters": raters,
        "seconds": duration,
        "acknowledged": acked,
        "in_db": in_db,
        "votes_per_s": acked / duration,
        "p50_vote_to_next_ms": pct(gaps, 50),
        "p95_vote_to_next_ms": pct(gaps, 95),
        "errors": len(errors),
        "first_error": errors[0] if errors else "",
        "server_cpu_ms_per_vote": server_cpu * 1000 / max(1, acked),
        "client_cpu_ms_per_vote": client_cpu * 1000 / max(1, acked),
        "startup_s": startup_s,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--prompts", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--votes", type=int, default=1_000_000)
    ap.add_argument("--server-battles", type=int, default=2000)
    ap.add_argument("--raters", type=int, default=20)
    ap.add_argument("--duration", type=float, default=30.0, help="end-to-end seconds")
    ap.add_argument("--client-procs", type=int, default=4, help="processes the raters run in")
    ap.add_argument("--workspace", default=None, help="reuse/keep this workspace folder")
    ap.add_argument("--policy", default="balanced")
    args = ap.parse_args(argv)

    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="battle-bench-")) / "ws"
    from tests.arena_app import free_port

    settings = load_settings(
        env={},
        workspace=str(workspace),
        host="127.0.0.1",
        port=free_port(),
        matchmaking_policy=args.policy,
        rate_limit_per_minute=1_000_000,  # one benchmark rater votes far faster than a person
        daily_vote_cap=1_000_000,
    )
    store = Store(settings)
    if store.status()["images"] == 0:
        t = time.perf_counter()
        build_workspace(
            store, args.models, args.prompts, args.seeds, args.votes, np.random.default_rng(0)
        )
        print(f"built workspace in {time.perf_counter() - t:.1f} s: {workspace}")
    st = store.status()
    print(
        f"models {st['models']}  prompts {st['prompts']}  images {st['images']}  "
        f"battles {st['battles']}  votes {st['votes']}"
    )
    s = server_side(store, args.server_battles)
    print(
        f"server side ({s['n']} battles, SQLite, policy {args.policy}): matchmaker index "
        f"{s['index_build_s']:.2f} s; serve_battle p50 {s['serve_p50_ms']:.2f} ms "
        f"p99 {s['serve_p99_ms']:.2f} ms; record_vote p50 {s['vote_p50_ms']:.2f} ms "
        f"p99 {s['vote_p99_ms']:.2f} ms"
    )
    if args.duration > 0:
        e = end_to_end(store, settings, args.raters, args.duration, args.client_procs)
        print(
            f"end to end ({e['raters']} gradio_client raters, {e['seconds']:.0f} s): "
            f"{e['votes_per_s']:.1f} votes/s; vote-to-next-battle p50 "
            f"{e['p50_vote_to_next_ms']:.0f} ms p95 {e['p95_vote_to_next_ms']:.0f} ms; "
            f"acknowledged {e['acknowledged']} == in database {e['in_db']}: "
            f"{e['acknowledged'] == e['in_db']}; refused {e['errors']} {e['first_error']}"
        )
        print(
            f"  CPU per vote (battle + vote): server {e['server_cpu_ms_per_vote']:.1f} ms, "
            f"rater clients {e['client_cpu_ms_per_vote']:.1f} ms (both on this machine's "
            f"{os.cpu_count()} cores); server start-up incl. matchmaker index "
            f"{e['startup_s']:.1f} s"
        )
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
