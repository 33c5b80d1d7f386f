"""The `build_app(store)` factory.

Each tab is a module of ``arena.ui`` with a ``TITLE`` and a ``render(store)``
function that lays out its components inside the current ``gr.Tab`` and wires
its events to plain Python. Tabs stay independent: adding one is one line in
``TABS``. A tab module may also define ``enabled(settings)`` (shown or not,
given ``store.settings``), ``CSS`` (a string) and ``routes(store)`` (Starlette
routes); ``launch_kwargs`` gathers them for ``Blocks.launch`` (Gradio 6 takes
css and routes at launch). A ``render`` that returns ``(fn, inputs, outputs)``
gets that refresh run whenever its tab is opened (:func:`refresh_on_open`), so a
vote cast in the Vote tab shows on the Leaderboard without pressing Refresh.

Settings have one owner, the store: every tab and service reads
``store.settings``; to run the app with other settings, open the store with them.
"""

from __future__ import annotations

import importlib
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr

from arena.storage.store import Store

# The only events that programmatic clients may call (see arena.ui.vote_tab).
PUBLIC_API = ("rater", "battle", "vote")

TABS = (
    "arena.ui.vote_tab",
    "arena.ui.workspace_tab",
    "arena.ui.leaderboard_tab",
    "arena.ui.agreement_tab",
)


def build_app(store: Store, tabs: tuple[str, ...] | None = None) -> gr.Blocks:
    """The app with every tab of ``TABS`` (or only ``tabs``, e.g. a vote-only kiosk)."""
    with gr.Blocks(title="Text-to-image arena") as app:
        gr.Markdown("# Text-to-image arena")
        for name in TABS if tabs is None else tabs:
            module = importlib.import_module(name)
            if getattr(module, "enabled", lambda _s: True)(store.settings):
                with gr.Tab(module.TITLE) as tab:
                    refresh = module.render(store)
                refresh_on_open(tab, refresh)
    hide_internal_events(app)
    return app


def refresh_on_open(tab: gr.Tab, refresh: tuple | None) -> None:
    """Run a tab's refresh ``(fn, inputs, outputs)`` each time the tab is selected.

    The report services are cached on the data's signature, so opening a tab recomputes
    only when votes, exclusions or scores changed since; otherwise it redraws.
    """
    if refresh is not None:
        fn, inputs, outputs = refresh
        tab.select(fn, inputs, outputs, api_visibility="private", show_progress="minimal")


def hide_internal_events(app: gr.Blocks) -> None:
    """Make every event private except PUBLIC_API (callable values add public load events)."""
    for fn in app.fns.values():
        if fn.api_name not in PUBLIC_API:
            fn.api_visibility = "private"


def launch_kwargs(store: Store) -> dict:
    """``css`` and ``app_kwargs`` (extra routes, e.g. the /img/<sha>.png image route)."""
    from arena.ui.images import image_routes

    css, routes = [], list(image_routes(store))
    for name in TABS:
        module = importlib.import_module(name)
        css.append(getattr(module, "CSS", ""))
        routes += list(getattr(module, "routes", lambda _store: [])(store))
    return {"css": "\n".join(c for c in css if c), "app_kwargs": {"routes": routes}}
