"""Shared fixtures: real SQLite workspaces in tmp folders, never mocks."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from arena.config import load_settings
from arena.storage.store import Store


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={}, workspace=str(tmp_path / "ws"))


@pytest.fixture
def store(settings):
    s = Store(settings)
    yield s
    s.close()


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL server for this test session (started from Debian's binaries).

    Skips where PostgreSQL is not installed, except in CI (CI=true), where it fails:
    CI must run the database tests on both back ends.
    """
    from tests.pg_server import PostgresUnavailable, postgres_server

    try:
        with postgres_server() as url:
            yield url
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request) -> str:
    """A fresh database of each back end: "" (the workspace's SQLite file) or a PostgreSQL URL."""
    if request.param == "sqlite":
        return ""
    from tests.pg_server import fresh_database

    return fresh_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def db_store(db_url, tmp_path):
    """A Store on a fresh database of each back end (SQLite file; PostgreSQL database)."""
    settings = load_settings(env={}, workspace=str(tmp_path / "ws"), db_url=db_url)
    s = Store(settings)
    yield s
    s.close()
