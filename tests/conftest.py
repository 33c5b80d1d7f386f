"""Shared fixtures: real SQLite workspaces in tmp folders, never mocks."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from arena.config import load_settings
from arena.store import Store


@pytest.fixture
def settings(tmp_path):
    return load_settings(env={}, workspace=str(tmp_path / "ws"))


@pytest.fixture
def store(settings):
    s = Store(settings)
    yield s
    s.close()
