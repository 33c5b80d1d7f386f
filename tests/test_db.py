"""Migrations, SQLite pragmas and the refusal of newer or read-only workspaces."""

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from arena.storage import db
from arena.storage.migrate import SchemaError, current_revision, head_revision, upgrade_to_head
from arena.storage.store import Store


def test_empty_database_migrates_to_head_and_matches_the_models(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    assert diff == [], f"migrations and models differ: {diff}"


def test_upgrade_is_idempotent(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade_to_head(engine)
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()


def test_sqlite_runs_in_wal_with_full_sync_and_busy_timeout(store):
    with store.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == db.SQLITE_BUSY_TIMEOUT_MS
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_sqlite_writers_of_one_process_queue_in_python_not_in_sqlite(store):
    """A second writer waits on the store's lock, so it never meets SQLite's busy sleeps."""
    events: list[str] = []

    def second_writer():
        with store.write_session() as s:
            events.append("second starts")
            s.add(db.Rater(external_id="second", kind="browser"))

    with store.write_session() as s:
        s.add(db.Rater(external_id="first", kind="browser"))
        s.flush()  # holds SQLite's write lock from here to the commit
        thread = threading.Thread(target=second_writer)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive()  # waiting for the first transaction, not failing
        events.append("first commits")
    thread.join(10)
    assert events == ["first commits", "second starts"]
    with store.session() as s:
        assert s.query(db.Rater).count() == 2


def test_a_workspace_from_a_newer_schema_is_refused(store, settings):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num='9999_future'"))
    store.close()
    with pytest.raises(SchemaError, match=r"9999_future.*newer version"):
        Store(settings)


def test_a_read_only_workspace_is_refused():
    """Run as an unprivileged user (via setpriv when the tests run as root: root ignores
    permissions), so that the refusal is really exercised in CI."""
    import shutil
    import sys

    from tests.unprivileged import make_read_only, run_unprivileged, shared_tmpdir

    root = shared_tmpdir()
    ws = root / "ro"
    Store.open(ws).close()
    make_read_only(ws)
    code = (
        "import sys\nfrom arena.storage.store import Store, StoreError\n"
        "try:\n    Store.open(sys.argv[1])\nexcept StoreError as exc:\n    print(exc)\n"
        "else:\n    sys.exit('opened a read-only workspace')\n"
    )
    try:
        done = run_unprivileged(
            [sys.executable, "-c", code, str(ws)], env={"PYTHONDONTWRITEBYTECODE": "1"}
        )
        assert done.returncode == 0, done.stderr
        assert f"workspace {ws} is read-only" in done.stdout
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(0o755)
        shutil.rmtree(root)
