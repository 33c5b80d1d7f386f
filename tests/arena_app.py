"""Start the real arena app in this process on a free port (tests and benchmarks)."""

from __future__ import annotations

import json
import os
import secrets
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


def queue_messages(http, fn_index: int, data: list, trigger_id=None) -> list[dict]:
    """Call a page event the way the browser does (queue/join, then the data stream):
    every message up to its end; ``[{"msg": "refused", "status": ...}]`` when the join
    is refused."""
    session = secrets.token_hex(8)
    body = {
        "data": data,
        "fn_index": fn_index,
        "session_hash": session,
        "event_data": None,
        "trigger_id": trigger_id,
    }
    joined = http.post("gradio_api/queue/join", json=body)
    if joined.status_code != 200:
        return [{"msg": "refused", "status": joined.status_code}]
    messages = []
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                msg = json.loads(line[5:])
                messages.append(msg)
                if msg.get("msg") in ("process_completed", "close_stream"):
                    break
    return messages


def queue_call(http, fn_index: int, data: list) -> list:
    """One page event that must succeed: its output data."""
    messages = queue_messages(http, fn_index, data)
    done = [m for m in messages if m.get("msg") == "process_completed"]
    assert done and done[-1].get("success"), messages[-1:]
    return done[-1]["output"]["data"]


def event_of(config: dict, label: str, n_outputs: int) -> tuple[int, dict]:
    """(fn index, dependency) of the event that reads the component labelled ``label``
    and has ``n_outputs`` outputs, in an app's ``/config``."""
    labels = {c["id"]: c.get("props", {}).get("label") for c in config["components"]}
    wanted = next(i for i, name in labels.items() if name == label)
    for k, dep in enumerate(config["dependencies"]):
        if wanted in dep["inputs"] and len(dep["outputs"]) == n_outputs:
            return dep.get("id", k), dep
    raise AssertionError(f"no event reads {label!r} with {n_outputs} outputs")
