"""Migrations, SQLite pragmas and the refusal of newer or read-only workspaces."""

import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

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


def _at_revision_0002_with_scores(url: str):
    """A database at revision 0002 holding scores and model-level numbers of several
    metrics, inserted with the SQL of that revision (no direction column yet)."""
    from alembic import command

    from arena.storage.migrate import alembic_config

    engine = db.make_engine(url)
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    now = "2026-01-01 00:00:00"
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO models (id, name, kind, source, params, description, active, "
                "created_at) VALUES (1, 'm', 'import', '', '{}', '', true, :now)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO images (id, sha256, model_id, width, height, settings_hash, params, "
                "source_name, created_at) VALUES (1, 'ab', 1, 8, 8, '', '{}', '', :now)"
            ),
            {"now": now},
        )
        for k, metric in enumerate(("anomaly", "clip", "a-plugin-metric"), start=1):
            conn.execute(
                text(
                    "INSERT INTO scores (id, image_id, metric, version, value, created_at) "
                    "VALUES (:id, 1, :metric, '1', 0.5, :now)"
                ),
                {"id": k, "metric": metric, "now": now},
            )
        for k, metric in enumerate(("fid", "as", "diversity", "a-plugin-metric"), start=1):
            conn.execute(
                text(
                    "INSERT INTO model_metrics (id, model_id, metric, reference, value, n, "
                    "computed_at) VALUES (:id, 1, :metric, 'real', 1.0, 5, :now)"
                ),
                {"id": k, "metric": metric, "now": now},
            )
    return engine


def test_upgrade_backfills_the_metric_direction_of_existing_rows(db_url, tmp_path):
    """0003 adds a non-null higher_is_better beside scores and model-level numbers and
    fills it from the registry's directions of that time; unknown names are higher-is-better."""
    engine = _at_revision_0002_with_scores(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    upgrade_to_head(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        scores = dict(conn.execute(text("SELECT metric, higher_is_better FROM scores")).all())
        levels = dict(
            conn.execute(text("SELECT metric, higher_is_better FROM model_metrics")).all()
        )
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    assert {m: bool(v) for m, v in scores.items()} == {
        "anomaly": False,
        "clip": True,
        "a-plugin-metric": True,
    }
    assert {m: bool(v) for m, v in levels.items()} == {
        "fid": False,
        "as": False,
        "diversity": True,
        "a-plugin-metric": True,
    }
    assert diff == [], f"migrations and models differ: {diff}"
    with pytest.raises(IntegrityError, match=r"(?i)null"), engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO scores (image_id, metric, version, value, created_at) "
                "VALUES (1, 'clip', '2', 0.5, '2026-01-01 00:00:00')"
            )
        )
    engine.dispose()


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
