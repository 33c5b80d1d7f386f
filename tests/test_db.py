"""Migrations, SQLite pragmas and the refusal of newer or read-only workspaces."""

import os

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from arena import db
from arena.migrate import SchemaError, current_revision, head_revision, upgrade_to_head
from arena.store import Store, StoreError


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


def test_a_workspace_from_a_newer_schema_is_refused(store, settings):
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num='9999_future'"))
    store.close()
    with pytest.raises(SchemaError, match=r"9999_future.*newer version"):
        Store(settings)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_read_only_workspace_is_refused(tmp_path):
    ws = tmp_path / "ro"
    ws.mkdir()
    ws.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="read-only"):
            Store.open(ws)
    finally:
        ws.chmod(0o755)
