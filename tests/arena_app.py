"""Start the real arena app in this process on a free port (tests and benchmarks)."""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running_app(store, tabs=None, auth=None, login_groups=None, reviewers=None):
    """Yield the base URL of the app, launched exactly as `arena serve` launches it.

    The app reads ``store.settings``; a test that needs other settings opens its store
    with them (``Store(settings)``, ``store.with_settings(...)``).
    """
    from arena.serve import launch_app

    port = free_port()
    app = launch_app(
        store,
        host="127.0.0.1",
        port=port,
        block=False,
        auth=auth,
        tabs=tabs,
        login_groups=login_groups,
        reviewers=reviewers,
    )
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.close()


@contextmanager
def served_fixture(workspace, **settings):
    """The small fixture arena (4 prompts, 2 seeds) served as `arena serve` serves it.

    Yields ``(store, client, url, alice, bob)``: a gradio client and two rater ids the
    server issued to it.
    """
    from gradio_client import Client

    from arena.config import load_settings
    from arena.storage.store import Store
    from tests.arena_fixtures import build_fixture
    from tests.arena_process import issued_rater_id

    store = Store(load_settings(env={}, workspace=str(workspace), **settings))
    try:
        build_fixture(store, n_prompts=4, seeds=2)
        with running_app(store) as url:
            client = Client(url, verbose=False)
            yield store, client, url, issued_rater_id(client), issued_rater_id(client)
    finally:
        store.close()
