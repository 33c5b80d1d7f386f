"""Start the web app on a workspace (used by `python app.py` and `arena serve`)."""

from __future__ import annotations

import os

from arena.config import Settings
from arena.store import Store

QUEUE_CONCURRENCY = 32  # events run at once; SQLite serialises the writes themselves


def serve(
    settings: Settings,
    build_demo_if_empty: bool = False,
    block: bool = True,
    auth: list[tuple[str, str]] | None = None,
    store: Store | None = None,
):
    """Open the workspace, build the demo into it when empty (if asked), launch the app.

    With ``block=False`` the server runs in a background thread and the Gradio
    ``Blocks`` is returned (``app.close()`` stops it); tests and benchmarks use this.
    ``auth`` (a list of (user, password)) turns on Gradio's login; the login name
    then becomes part of the rater identity.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    store = store or Store(settings)
    if build_demo_if_empty and store.status()["images"] == 0:
        from arena.demo import build_demo

        print(f"workspace {store.workspace} is empty: building the offline demo ...")
        build_demo(store, seed=settings.seed)
    print(f"arena on http://{settings.host}:{settings.port} (workspace {store.workspace})")
    return launch_app(store, settings, block=block, auth=auth)


def launch_app(store: Store, settings: Settings, *, block: bool, auth=None, tabs=None):
    """Build the app and launch it with its routes (``/img/<sha>.png``) and css."""
    from arena.ui import build_app
    from arena.ui.app import launch_kwargs

    app = build_app(store, settings, tabs=tabs)
    app.queue(default_concurrency_limit=QUEUE_CONCURRENCY)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        prevent_thread_lock=not block,
        quiet=True,
        auth=auth,
        footer_links=["api"],
        **launch_kwargs(store),
    )
    return app
