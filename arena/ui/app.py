"""The `build_app(store, settings)` factory.

Each tab is a module of ``arena.ui`` with a ``TITLE`` and a
``render(store, settings)`` function that lays out its components inside the
current ``gr.Tab`` and wires its events to plain Python. Tabs stay independent:
adding one is one line in ``TABS``.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from arena.config import Settings
from arena.store import Store

TABS = (
    "arena.ui.status_tab",
    "arena.ui.leaderboard_tab",
)


def build_app(store: Store, settings: Settings | None = None) -> gr.Blocks:
    settings = settings or store.settings
    with gr.Blocks(title="Text-to-image arena") as app:
        gr.Markdown("# Text-to-image arena")
        for name in TABS:
            module = importlib.import_module(name)
            if getattr(module, "enabled", lambda _s: True)(settings):
                with gr.Tab(module.TITLE):
                    module.render(store, settings)
    return app
