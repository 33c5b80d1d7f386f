"""Schema upgrades through Alembic: `arena init` and app start call `upgrade_to_head`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class SchemaError(RuntimeError):
    """The database schema cannot be used by this version of the arena."""


def alembic_config(engine: Engine | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(engine: Engine) -> None:
    """Bring the database to the newest schema; refuse a database from a newer arena."""
    script = ScriptDirectory.from_config(alembic_config())
    current = current_revision(engine)
    if current is not None and not _known(script, current):
        raise SchemaError(
            f"database {engine.url!r} has schema revision {current!r}, which this version of "
            f"the arena does not know (newest known: {script.get_current_head()!r}). It was "
            "written by a newer version: upgrade the arena (pip install -U t2i-arena) instead "
            "of downgrading the database."
        )
    if current == script.get_current_head():
        return
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _known(script: ScriptDirectory, revision: str) -> bool:
    try:
        return script.get_revision(revision) is not None
    except Exception:
        return False
