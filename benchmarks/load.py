"""Votes/s and vote latency of the running app under concurrent raters, SQLite and PostgreSQL.

The server runs as deployed (`python -m arena.cli serve`, its own process) on a small
real workspace (4 models x 25 prompts x 2 seeds, 600 image pairs per rater). Raters
are gradio_client clients, one per rater, in several client processes (threads in one
process would measure the client's GIL): each does battle -> vote -> battle ...
Afterwards the votes in the database are compared with the acknowledged ones.

    .venv/bin/python benchmarks/load.py                          # 1, 20, 50 raters x 200
    .venv/bin/python benchmarks/load.py --battles 10 --backends sqlite
    .venv/bin/python benchmarks/load.py --server-procs 2 --raters 20   # two app processes

Prints per back end and concurrency: votes acknowledged, votes/s (a vote and the next
battle are one rater step), vote latency p50/p95/p99, the CPU time per battle+vote of
the server process (its capacity per core is 1000 / that) and of the rater client
processes (on the same cores here), and stored == acknowledged.
With ``--server-procs N`` the app runs as N ``arena serve`` processes on one workspace and
database (a deployment that outgrows one event loop, docs/deployment.md); rater k talks
to process k mod N, as behind a sticky proxy, and the server CPU is summed over them.
PostgreSQL is a private server started from Debian's binaries (tests/pg_server.py) or
$ARENA_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import numpy as np

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.arena_process import (
    ServerProcess,
    build_workspace,
    run_rater_processes,
    stored_vote_rows,
)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), for CPU cost per vote."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_backend(
    name: str, db_url: str, levels: list[int], battles: int, procs: int, server_procs: int = 1
) -> None:
    root = Path(tempfile.mkdtemp(prefix=f"arena-load-{name}-"))
    build_workspace(root / "ws", db_url=db_url)
    acked_all: dict = {}
    with ExitStack() as stack:
        servers = [
            stack.enter_context(ServerProcess(root / "ws", db_url=db_url))
            for _ in range(server_procs)
        ]
        urls = [server.url for server in servers]
        for i, raters in enumerate(levels):
            cpu0 = sum(cpu_seconds(server.proc.pid) for server in servers)
            log, wall, client_cpu = run_rater_processes(
                urls, raters, battles, procs=procs, first_k=10_000 * (i + 1)
            )
            server_cpu = sum(cpu_seconds(server.proc.pid) for server in servers) - cpu0
            cpu_ms = server_cpu * 1000 / max(1, len(log.acked))
            client_ms = client_cpu * 1000 / max(1, len(log.acked))
            acked_all.update(log.acked)
            lat = np.array(log.vote_latency_s) * 1000
            p50, p95, p99 = np.percentile(lat, [50, 95, 99]) if len(lat) else (np.nan,) * 3
            print(
                f"{name:<10} {server_procs} server proc(s) {raters:>4} raters x {battles}: "
                f"{len(log.acked):>6} votes in {wall:6.1f} s = {len(log.acked) / wall:6.1f} "
                f"votes/s; vote latency p50 {p50:6.0f} ms  p95 {p95:6.0f} ms  p99 {p99:6.0f} ms; "
                f"refusals {len(log.refusals)}, errors {len(log.errors)}; CPU per battle+vote: "
                f"server {cpu_ms:.1f} ms, clients {client_ms:.1f} ms",
                flush=True,
            )
    stored = {t: (v, o) for t, v, o in stored_vote_rows(root / "ws", db_url)}
    same = stored == acked_all
    print(f"{name:<10} stored votes {len(stored)} == acknowledged {len(acked_all)}: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--raters", default="1,20,50", help="concurrency levels")
    parser.add_argument("--battles", type=int, default=200, help="battles per rater")
    parser.add_argument("--client-procs", type=int, default=4)
    parser.add_argument(
        "--server-procs",
        type=int,
        default=1,
        help="`arena serve` processes on the same workspace and database; rater k always "
        "talks to process k mod N (what a sticky proxy does)",
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.raters.split(",")]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    with ExitStack() as stack:
        for backend in args.backends.split(","):
            if backend == "sqlite":
                bench_backend(
                    "sqlite", "", levels, args.battles, args.client_procs, args.server_procs
                )
            elif backend == "postgres":
                from tests.pg_server import fresh_database, postgres_server

                server_url = stack.enter_context(postgres_server())
                url = fresh_database(server_url)
                bench_backend(
                    "postgres", url, levels, args.battles, args.client_procs, args.server_procs
                )
            else:
                parser.error(f"unknown back end {backend!r} (sqlite, postgres)")


if __name__ == "__main__":
    main()
