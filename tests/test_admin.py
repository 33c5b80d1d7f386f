"""The Admin app is behind a login and reachable only with the admin secret."""

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from arena.ui.admin import admin_auth, mount_admin, raters_table


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def admin_server(store):
    store = store.with_settings(admin_secret="s3cret-admin")
    store.add_model("visible-model", "import")
    app = mount_admin(FastAPI(), store)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(100):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/admin"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_admin_app_needs_the_secret(admin_server):
    with httpx.Client(timeout=10) as http:
        assert http.get(f"{admin_server}/config").status_code == 401
        assert http.get(f"{admin_server}/gradio_api/info").status_code == 401
        bad = http.post(f"{admin_server}/login", data={"username": "admin", "password": "wrong"})
        assert bad.status_code >= 400
        good = http.post(
            f"{admin_server}/login", data={"username": "admin", "password": "s3cret-admin"}
        )
        assert good.status_code < 400
        config = http.get(f"{admin_server}/config")
        assert config.status_code == 200 and "Arena admin" in config.text


def test_no_secret_means_no_admin_app(store):
    app = mount_admin(FastAPI(), store.with_settings(admin_secret=""))
    assert not any(getattr(r, "path", "").startswith("/admin") for r in app.routes)


def test_auth_check_is_exact(store):
    check = admin_auth(store.settings.replace(admin_secret="pw"))
    assert check("admin", "pw")
    assert not check("admin", "pw ") and not check("root", "pw") and not check("admin", "")


def test_tables_render_on_an_empty_and_a_filled_workspace(store):
    assert raters_table(store).empty
    store.add_model("m1", "import")
    store.set_model_active("m1", False)
    table = store.models_frame()
    assert table.loc[0, "model"] == "m1" and not bool(table.loc[0, "active"])


def _refreshed_on_open(app) -> set[str]:
    """Titles of the tabs whose select event (opening the tab) runs a handler."""
    import gradio as gr

    tabs = {block._id: block.label for block in app.blocks.values() if isinstance(block, gr.Tab)}
    return {
        tabs[target[0]]
        for fn in app.fns.values()
        for target in fn.targets
        if target[1] == "select" and target[0] in tabs
    }


def test_report_tabs_recompute_when_opened(store):
    """Leaderboard and Agreement (Admin app), and Workspace (raters' app) refresh on open;
    tests/test_tab_refresh_browser.py checks that a vote then shows in a real browser."""
    from arena.ui.admin import build_admin_app
    from arena.ui.app import build_app

    assert {"Leaderboard", "Agreement"} <= _refreshed_on_open(build_admin_app(store))
    raters_app = build_app(store.with_settings(reveal_models=True))
    assert {"Workspace", "Leaderboard", "Agreement"} <= _refreshed_on_open(raters_app)
    blind = build_app(store)  # reveal off: the released snapshot, refreshed all the same
    assert {"Workspace", "Leaderboard"} <= _refreshed_on_open(blind)
