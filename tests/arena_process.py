"""The arena server as a separate process (`python -m arena.cli serve`), and rater clients.

Used by the load, crash and tampering tests and by benchmarks/load.py: the server
runs exactly as deployed (its own interpreter, uvicorn, signal handling), so that
``kill -9`` and SIGTERM hit a real server and nothing is shared with the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Raters in these tests vote as fast as the server lets them, all from 127.0.0.1.
FAST_RATERS = {
    "ARENA_RATE_LIMIT_PER_MINUTE": "1000000",
    "ARENA_DAILY_VOTE_CAP": "1000000",
    "ARENA_BATTLES_PER_MINUTE": "1000000",
    "ARENA_ADDRESS_BATTLES_PER_MINUTE": "1000000",
    "ARENA_ADDRESS_VOTES_PER_MINUTE": "1000000",
    "ARENA_RATER_IDS_PER_ADDRESS_PER_HOUR": "1000000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``arena serve`` on a workspace (and optionally a database URL) on a free port."""

    def __init__(self, workspace: Path, db_url: str = "", env: dict | None = None, log=None):
        self.workspace, self.db_url = Path(workspace), db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.extra_env = dict(env or {})
        self.log_path = Path(log or self.workspace.parent / f"server-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> ServerProcess:
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
        env.update(ARENA_WORKSPACE=str(self.workspace), ARENA_DB_URL=self.db_url, **FAST_RATERS)
        env.update(self.extra_env)
        cmd = [sys.executable, "-m", "arena.cli", "serve", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port)]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}): {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "config", timeout=5) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout} s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, then wait for the graceful exit; returns the exit status."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.kill()
        self._log.close()


@dataclass
class RaterLog:
    """What one client saw: acknowledged votes (token -> (vote_id, outcome)), latencies."""

    acked: dict[str, tuple[int, str]] = field(default_factory=dict)
    vote_latency_s: list[float] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def issued_rater_id(client) -> str:
    """A rater id issued by the server (``/rater``): the only ids ``/battle`` accepts."""
    return client.predict(api_name="/rater")["rater_id"]


def connect(url: str, timeout: float = 120):
    """A gradio_client ``Client`` for one rater, with its own ready TLS context.

    ``gradio_client`` makes two new ``httpx`` clients per call (the queue join and
    its event stream); given ``ssl_verify=True`` each one loads the certifi CA bundle
    again, ~60 ms of CPU per call -- more than the server spends on the call. An
    ``ssl.SSLContext`` (still verifying certificates) is used as it is, so the bundle
    is loaded once per client.
    """
    import ssl

    from gradio_client import Client

    return Client(
        url,
        verbose=False,
        ssl_verify=ssl.create_default_context(),
        httpx_kwargs={"timeout": timeout},
    )


def run_rater(client, k: int, battles: int, stop: threading.Event, log: RaterLog) -> None:
    """Battle, then vote, ``battles`` times through gradio_client; stops on ``stop``."""
    from gradio_client.exceptions import AppError

    from arena.stats.pairs import OUTCOMES as outcomes

    rid = issued_rater_id(client)
    for i in range(battles):
        if stop.is_set():
            return
        try:
            battle = client.predict(rid, api_name="/battle")
            outcome = outcomes[(k + i) % 4]
            t0 = time.perf_counter()
            receipt = client.predict(battle["token"], rid, outcome, 5000, api_name="/vote")
            log.vote_latency_s.append(time.perf_counter() - t0)
        except AppError as exc:
            log.refusals.append(str(exc))
            continue
        except Exception as exc:  # connection lost: this vote is not acknowledged
            log.errors.append(repr(exc))
            return
        assert receipt["stored"] is True
        log.acked[battle["token"]] = (receipt["vote_id"], outcome)


def _rater_process(urls: list[str], ks: list[int], battles: int, out) -> None:
    """One client process: a gradio_client and a thread per rater in ``ks``.

    Rater ``k`` always talks to ``urls[k % len(urls)]``: with several server
    processes that is what a sticky proxy does (a session stays on its process).
    """
    clients = [connect(urls[k % len(urls)]) for k in ks]
    logs = [RaterLog() for _ in ks]
    stop = threading.Event()
    threads = [
        threading.Thread(target=run_rater, args=(c, k, battles, stop, log))
        for c, k, log in zip(clients, ks, logs, strict=True)
    ]
    out.put("ready")
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((merge_logs(logs), time.process_time() - cpu0))


def merge_logs(logs: list[RaterLog]) -> RaterLog:
    merged = RaterLog()
    for log in logs:
        merged.acked.update(log.acked)
        merged.vote_latency_s += log.vote_latency_s
        merged.refusals += log.refusals
        merged.errors += log.errors
    return merged


def run_rater_processes(
    urls: list[str], raters: int, battles: int, procs: int = 4, first_k: int = 0
) -> tuple[RaterLog, float, float]:
    """``raters`` concurrent raters spread over ``procs`` client processes.

    Threads in one process would measure the client's GIL rather than the server.
    Every client connects before the clock starts. Returns (merged log, wall
    seconds, CPU seconds of the client processes).
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    groups = [list(range(first_k + p, first_k + raters, procs)) for p in range(procs)]
    workers = [
        ctx.Process(target=_rater_process, args=(urls, g, battles, out)) for g in groups if g
    ]
    for w in workers:
        w.start()
    for _ in workers:
        assert out.get(timeout=600) == "ready"
    t0 = time.perf_counter()
    results = [out.get(timeout=3600) for _ in workers]
    wall = time.perf_counter() - t0
    for w in workers:
        w.join()
    return merge_logs([log for log, _ in results]), wall, sum(cpu for _, cpu in results)


def stored_vote_rows(workspace: Path, db_url: str = "") -> list[tuple[str, int, str]]:
    """Every stored vote as (battle token, vote id, outcome), read from the database."""
    from sqlalchemy import select

    from arena.config import load_settings
    from arena.storage import db
    from arena.storage.store import Store

    store = Store(load_settings(env={}, workspace=str(workspace), db_url=db_url))
    try:
        with store.session() as s:
            query = select(db.Battle.token, db.Vote.id, db.Vote.outcome).join(
                db.Vote, db.Vote.battle_id == db.Battle.id
            )
            return [tuple(row) for row in s.execute(query).all()]
    finally:
        store.close()


def build_workspace(workspace: Path, db_url: str = "", n_prompts: int = 25) -> None:
    """A small real workspace (4 models x n_prompts x 2 seeds) for load and crash runs."""
    from arena.config import load_settings
    from arena.storage.store import Store
    from tests.arena_fixtures import build_fixture

    settings = load_settings(env={}, workspace=str(workspace), db_url=db_url)
    store = Store(settings)
    names = ("zephyrquokka-v3", "marmalade-basilisk-xl", "tundrafinch-turbo", "ochre-lynx-2")
    build_fixture(store, model_names=names, n_prompts=n_prompts, seeds=2, size=32)
    store.close()
