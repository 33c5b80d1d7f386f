"""Rater kinds (human, simulated, judge) and rater groups (issue 21, item 1): the
schema and its migration, the store's verbs, the login file, the Admin app, the
filters of every report, and that no browser can choose its own kind or group."""

import pandas as pd
import pytest
from alembic import command
from sqlalchemy import inspect, text

from arena.storage import db
from arena.storage.migrate import alembic_config, current_revision, upgrade_to_head
from arena.storage.store import StoreError


def _migrate(engine, revision, down=False):
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        (command.downgrade if down else command.upgrade)(config, revision)


def _rater_columns(engine):
    return {c["name"] for c in inspect(engine).get_columns("raters")}


def test_0004_adds_the_group_keeps_the_raters_and_downgrades(db_url, tmp_path):
    engine = db.make_engine(db_url or f"sqlite:///{tmp_path / 'old.db'}")
    _migrate(engine, "0003")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO raters (id, external_id, kind, excluded, excluded_reason, "
                "exclusion_manual, created_at) VALUES (1, 'sim-00', 'simulated', false, '', "
                "false, '2026-01-01 00:00:00')"
            )
        )
    assert "rater_group" not in _rater_columns(engine)
    upgrade_to_head(engine)
    assert "rater_group" in _rater_columns(engine)
    with engine.begin() as conn:
        assert conn.execute(text("SELECT kind, rater_group FROM raters")).all() == [
            ("simulated", None)
        ]
        conn.execute(text("UPDATE raters SET rater_group = 'expert'"))
    _migrate(engine, "0003", down=True)
    assert current_revision(engine) == "0003"
    assert "rater_group" not in _rater_columns(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT external_id, kind FROM raters")).all() == [
            ("sim-00", "simulated")
        ]
    upgrade_to_head(engine)  # and up again
    assert "rater_group" in _rater_columns(engine)
    engine.dispose()


def test_0004_downgrade_refuses_a_database_holding_judges(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade_to_head(engine)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO raters (id, external_id, kind, excluded, excluded_reason, "
                "exclusion_manual, created_at) VALUES (1, 'judge:vlm', 'judge', false, '', "
                "false, '2026-01-01 00:00:00')"
            )
        )
    with pytest.raises(RuntimeError, match="kind 'judge'"):
        _migrate(engine, "0003", down=True)
    assert "rater_group" in _rater_columns(engine)
    engine.dispose()


def test_kinds_and_groups_round_trip_through_the_store(db_store):
    judge = db_store.rater_id("judge:tiny-vlm", kind="judge", group="vlm")
    expert = db_store.rater_id("login:ada", kind="human", login="ada", group=" expert ")
    crowd = db_store.rater_id("v1browser0001", kind="human")
    frame = db_store.raters_frame().set_index("rater_id")
    assert frame.loc[judge, "kind"] == "judge" and frame.loc[judge, "rater_group"] == "vlm"
    assert frame.loc[expert, "rater_group"] == "expert"
    assert pd.isna(frame.loc[crowd, "rater_group"])
    # first sight decides: asking again with another group changes nothing
    assert db_store.rater_id("login:ada", group="crowd") == expert
    assert db_store.raters_frame().set_index("rater_id").loc[expert, "rater_group"] == "expert"
    assert db_store.set_rater_group(crowd, "crowd") == "crowd"
    assert db_store.set_rater_group(expert, "") is None
    frame = db_store.raters_frame().set_index("rater_id")
    assert frame.loc[crowd, "rater_group"] == "crowd"
    assert pd.isna(frame.loc[expert, "rater_group"])
    with pytest.raises(StoreError, match="rater group"):
        db_store.set_rater_group(crowd, "<script>")
    with pytest.raises(StoreError, match="rater group"):
        db_store.rater_id("v1browser0002", group="x" * 41)
    with pytest.raises(StoreError, match="unknown rater id"):
        db_store.set_rater_group(999, "crowd")
    with pytest.raises(StoreError, match="rater kind"):
        db_store.rater_id("v1browser0003", kind="robot")


def test_login_groups_update_the_raters_that_logged_in(store):
    ada = store.rater_id("login:ada", login="ada", client_group="g1")
    bob = store.rater_id("login:bob", login="bob", client_group="g1", group="expert")
    assert store.set_login_groups({"ada": "expert", "bob": None, "carol": "crowd"}) == 1
    frame = store.raters_frame().set_index("rater_id")
    assert frame.loc[ada, "rater_group"] == "expert"
    assert frame.loc[bob, "rater_group"] == "expert"  # no group in the file: kept
    assert store.find_rater("login:carol") is None  # never creates a rater
    with pytest.raises(StoreError, match="rater group"):
        store.set_login_groups({"ada": "two words"})
