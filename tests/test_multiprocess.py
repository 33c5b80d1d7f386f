"""Two `arena serve` processes on one workspace and database (docs/deployment.md).

Battles and votes live in the database, so a battle served by one process can be
voted on through the other, every acknowledged vote is stored once, and the
refusals (replay, another rater's battle) hold across processes. Run on SQLite
(one file shared by two processes, WAL) and on PostgreSQL.
"""

from __future__ import annotations

import pytest

from tests.arena_process import (
    ServerProcess,
    build_workspace,
    connect,
    issued_rater_id,
    run_rater_processes,
    stored_vote_rows,
)

RATERS, BATTLES = 6, 15


@pytest.mark.slow
def test_two_processes_share_battles_and_votes(tmp_path, db_url):
    from gradio_client.exceptions import AppError

    ws = tmp_path / "ws"
    build_workspace(ws, db_url=db_url)
    with ServerProcess(ws, db_url=db_url) as one, ServerProcess(ws, db_url=db_url) as two:
        a, b = connect(one.url), connect(two.url)
        rid = issued_rater_id(b)  # issued by process two, accepted by both (shared key)
        battle = a.predict(rid, api_name="/battle")  # served by process one
        receipt = b.predict(battle["token"], rid, "left", 4000, api_name="/vote")  # voted on two
        assert receipt["stored"] is True
        with pytest.raises(AppError, match="already"):  # a replay through process one
            a.predict(battle["token"], rid, "right", 4000, api_name="/vote")
        other = b.predict(issued_rater_id(a), api_name="/battle")
        with pytest.raises(AppError, match="another rater"):  # another rater's battle
            a.predict(other["token"], rid, "left", 4000, api_name="/vote")

        log, _wall, _cpu = run_rater_processes(
            [one.url, two.url], RATERS, BATTLES, procs=2, first_k=1
        )
    assert not log.errors and not log.refusals, (log.errors + log.refusals)[:3]
    assert len(log.acked) == RATERS * BATTLES
    expected = dict(log.acked, **{battle["token"]: (receipt["vote_id"], "left")})
    rows = stored_vote_rows(ws, db_url)
    assert len({token for token, _id, _o in rows}) == len(rows)  # one vote per battle
    assert {t: (v, o) for t, v, o in rows} == expected  # nothing lost or extra, ids agree
