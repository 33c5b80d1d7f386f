"""Start the web app on a workspace (used by `python app.py` and `arena serve`)."""

from __future__ import annotations

import os

from arena.config import Settings
from arena.store import Store


def serve(settings: Settings, build_demo_if_empty: bool = False, block: bool = True):
    """Open the workspace, build the demo into it when empty (if asked), launch the app."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    store = Store(settings)
    if build_demo_if_empty and store.status()["images"] == 0:
        from arena.demo import build_demo

        print(f"workspace {store.workspace} is empty: building the offline demo ...")
        build_demo(store, seed=settings.seed)
    from arena.ui import build_app

    app = build_app(store, settings)
    app.queue(default_concurrency_limit=16)
    print(f"arena on http://{settings.host}:{settings.port} (workspace {store.workspace})")
    return app.launch(
        server_name=settings.host,
        server_port=settings.port,
        prevent_thread_lock=not block,
        quiet=True,
        allowed_paths=[str(store.images.root)],
    )
