"""Load: the running server (its own process) with 50 concurrent gradio_client raters.

Every acknowledged vote is a row, no battle has two votes, and no row exists that
was not acknowledged. The issue's 50 raters x 200 battles each (10,000 votes), the
clients in 4 processes as in ``benchmarks/load.py`` (which prints the same figures for
SQLite and PostgreSQL at 1, 20 and 50 raters).
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from tests.arena_process import ServerProcess, build_workspace, run_rater_processes

RATERS, BATTLES = 50, 200


def vote_rows(db_path) -> list[tuple[int, str, str]]:
    con = sqlite3.connect(db_path)
    try:
        return con.execute(
            "SELECT votes.id, battles.token, votes.outcome FROM votes "
            "JOIN battles ON battles.id = votes.battle_id"
        ).fetchall()
    finally:
        con.close()


@pytest.mark.slow
def test_fifty_concurrent_raters_lose_and_duplicate_nothing(tmp_path):
    ws = tmp_path / "ws"
    build_workspace(ws)
    with ServerProcess(ws) as server:
        log, wall, _client_cpu = run_rater_processes([server.url], RATERS, BATTLES, procs=4)
    assert not log.errors, log.errors[:5]
    assert not log.refusals, log.refusals[:5]
    acked = log.acked
    assert len(acked) == RATERS * BATTLES

    rows = vote_rows(ws / "arena.db")
    assert len(rows) == len(acked)  # nothing lost, nothing extra
    assert len({token for _id, token, _o in rows}) == len(rows)  # one vote per battle
    stored = {token: (vote_id, outcome) for vote_id, token, outcome in rows}
    assert stored == acked  # the same ids and outcomes the raters were told

    latency = np.array(log.vote_latency_s)
    print(
        f"\n{RATERS} raters x {BATTLES} battles: {len(acked) / wall:.0f} votes/s "
        f"(battle + vote round trips), vote p50 {np.percentile(latency, 50) * 1000:.0f} ms, "
        f"p95 {np.percentile(latency, 95) * 1000:.0f} ms"
    )
