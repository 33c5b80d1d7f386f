"""Start the web app on a workspace (used by `python app.py` and `arena serve`).

The server is built here rather than by ``Blocks.launch`` so that one process
serves its apps on one port: the raters' app at ``/`` (with the
``/img/<sha>.png`` route), the Admin app at ``/admin`` behind its own login
(only when ``admin_secret`` is set), the Review app at ``/review`` behind the reviewer
logins (only when ``reviewers`` are given), and nothing else.

Settings: the store's (``store.settings``) are the only ones every part of the
server reads. A launch may override the listen address only (``host``,
``port``) and pass the rater logins (``auth``); anything else is chosen when the
store is opened (``ARENA_*`` variables, ``Store(settings)``).

Shutdown: the server is uvicorn's. On SIGTERM or SIGINT (``block=True``, main
thread) it stops accepting connections, lets every request already in flight
-- a vote waiting on the database included -- run to its response for up to
``SHUTDOWN_GRACE_S`` seconds, then runs the apps' shutdown and exits 0. A vote
is acknowledged only in its response, which is sent after ``record_vote`` has
committed, so a vote the server could not finish was never acknowledged.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import threading
import time
from collections import Counter

from arena.config import Settings
from arena.storage.store import Store

QUEUE_CONCURRENCY = 32  # events run at once; SQLite serialises the writes themselves
SHUTDOWN_GRACE_S = 30  # longest wait for in-flight requests after SIGTERM


def serve(
    store: Store,
    *,
    host: str | None = None,
    port: int | None = None,
    build_demo_if_empty: bool = False,
    block: bool = True,
    auth: list[tuple[str, str]] | None = None,
    login_groups: dict[str, str] | None = None,
    reviewers: list[tuple[str, str]] | None = None,
):
    """Build the demo into the store when empty (if asked), launch the app on it.

    ``host`` and ``port`` (default: the store's settings) are the only settings a
    launch overrides. With ``block=False`` the server runs in a background thread and
    a handle is returned (``handle.close()`` stops it); tests and benchmarks use this.
    ``auth`` (a list of (user, password)) turns on Gradio's login; the login name
    then becomes part of the rater identity. ``login_groups`` (login -> rater group,
    from the login file's ``user:password:group`` lines) puts the logins' raters in
    their groups: those that already voted now, new ones when they first vote.
    ``reviewers`` (a list of (user, password)) mounts the Review app at ``/review``.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if build_demo_if_empty and store.status()["images"] == 0:
        from arena.demo.build import build_demo

        print(f"workspace {store.workspace} is empty: building the offline demo ...")
        build_demo(store, seed=store.settings.seed)
    if build_demo_if_empty and demo_reveal(store):
        print(
            "offline demo: model names are revealed after each vote (ARENA_REVEAL_MODELS=0 hides)"
        )
        store = store.with_settings(reveal_models=True)  # reopened: settings never change
    if login_groups:
        changed = store.set_login_groups(login_groups)
        counts = Counter(login_groups.values())
        print(
            "rater groups from the login file: "
            + ", ".join(f"{group} ({n} logins)" for group, n in sorted(counts.items()))
            + f"; {changed} existing rater(s) moved"
        )
    host, port = listen_address(store, host, port)
    admin = " (admin at /admin)" if store.settings.admin_secret else ""
    admin += f" (review at /review, {len(reviewers)} reviewer(s))" if reviewers else ""
    print(f"arena on http://{host}:{port} (workspace {store.workspace}){admin}")
    sys.stdout.flush()
    return launch_app(
        store,
        host=host,
        port=port,
        block=block,
        auth=auth,
        login_groups=login_groups,
        reviewers=reviewers,
    )


def listen_address(store: Store, host: str | None, port: int | None) -> tuple[str, int]:
    """The launch's host and port, else the store's ``host`` and ``port`` settings."""
    host = store.settings.host if host is None else host
    return host, int(store.settings.port if port is None else port)


def demo_reveal(store: Store) -> bool:
    """The offline demo reveals the models after each vote; nothing else does by default.

    True when the workspace holds only the demo's procedural models (kind ``demo``; the
    ``reference`` set aside) and ``reveal_models`` was left at its default: the demo has
    nothing to keep blind and shows the whole arena, the reveal and the live, filtered
    views. Once any other model is imported the default (off) holds again.
    """
    settings = store.settings
    if settings.reveal_models or "reveal_models" in settings.explicit:
        return False
    kinds = {m["kind"] for m in store.status()["per_model"]} - {"reference"}
    return kinds == {"demo"}


# Gradio routes that call an event by its api_name (the page itself calls events by index
# through the queue; gradio_client too). Only PUBLIC_API names may be called this way.
NAMED_CALL = re.compile(r"^/(?:gradio_api/)?(?:call|run|api)/([^/]+)")


class PublicApiOnly:
    """ASGI wrapper refusing (404) named calls of every event but the public API.

    Gradio's ``api_visibility="private"`` only hides an event from the API page and
    the client libraries; ``POST /gradio_api/call/<name>`` still runs it. Events must
    stay callable through the queue (that is how the page works) -- they act only on
    server-side session state, so a direct call cannot cast or forge a vote
    (tests/test_tampering.py) -- but no name-addressed route reaches them.
    """

    def __init__(self, app, public: tuple[str, ...]):
        self.app, self.public = app, set(public)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            match = NAMED_CALL.match(scope.get("path", ""))
            if match and match.group(1) not in self.public:
                from starlette.responses import PlainTextResponse

                response = PlainTextResponse(
                    "not a public endpoint; the API is /rater, /battle and /vote", status_code=404
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def quiet_queue_analytics() -> None:
    """Stop Gradio's queue from summarising its event log after every event.

    By default (``GRADIO_ANALYTICS_CACHE_FREQUENCY=1``) the queue builds a pandas
    DataFrame of its last ``GRADIO_ANALYTICS_MAX_EVENTS`` (10,000) events and
    groups it after *each* event, for the monitoring dashboard, which this app
    does not enable: several ms of CPU per battle and per vote, growing with the
    log. Read when the queue is created; values set in the environment win.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", str(10**9))
    os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")


def build_server_app(
    store: Store, *, host=None, port=None, auth=None, tabs=None, login_groups=None, reviewers=None
):
    """The ASGI app: image routes, the Admin app at /admin (if a secret is set), the Review
    app at /review (if ``reviewers`` are given), the arena at /.

    ``login_groups`` (login -> rater group) is what new logins' raters are created in."""
    from fastapi import FastAPI
    from gradio import mount_gradio_app

    from arena.ui import build_app
    from arena.ui.admin import mount_admin
    from arena.ui.app import PUBLIC_API, launch_kwargs
    from arena.ui.http_guard import RequestGuard
    from arena.ui.review_app import mount_review
    from arena.voting.admission import Admission

    settings = store.settings
    host, port = listen_address(store, host, port)
    Admission.of(store).login_groups = dict(login_groups or {})
    blocks = build_app(store, tabs=tabs)
    quiet_queue_analytics()
    blocks.queue(default_concurrency_limit=QUEUE_CONCURRENCY)
    extra = launch_kwargs(store)
    app = FastAPI(
        routes=extra["app_kwargs"]["routes"], docs_url=None, redoc_url=None, openapi_url=None
    )
    app.add_middleware(RequestGuard, settings=settings)  # size cap, uploads, schema, logins
    mount_admin(app, store)  # before "/": Starlette tries mounts in order
    mount_review(app, store, reviewers)
    mount_gradio_app(
        app,
        blocks,
        path="/",
        server_name=host,
        server_port=port,
        auth=auth,
        css=extra["css"],
        footer_links=["api"],
    )
    return PublicApiOnly(app, PUBLIC_API), blocks


def trusted_proxies(settings: Settings) -> list[str]:
    """The ``trusted_proxies`` setting as a list of addresses (or networks)."""
    return [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]


def _gradio_apps(app) -> list:
    """The Gradio sub-apps mounted on the server app (the arena, the Admin app)."""
    inner = app.app if isinstance(app, PublicApiOnly) else app
    return [r.app for r in inner.routes if hasattr(getattr(r, "app", None), "stop_event")]


def _server_class(uvicorn):
    class ArenaServer(uvicorn.Server):
        """uvicorn's server that, on SIGTERM/SIGINT, also ends Gradio's heartbeat streams.

        A page or API client keeps a heartbeat stream open for as long as it is
        connected; uvicorn would wait for it (the whole grace) like for a request in
        flight. Ending the heartbeats (Gradio's own ``stop_event``) leaves only the
        requests that are really in flight -- votes among them -- to be waited for.
        """

        def __init__(self, config, gradio_apps):
            super().__init__(config)
            self.gradio_apps = gradio_apps

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            for gradio_app in self.gradio_apps:
                gradio_app.stop_event.set()

    return ArenaServer


class RunningServer:
    """A server running in a background thread (``block=False``); ``close()`` stops it."""

    def __init__(self, server, thread: threading.Thread, blocks, exclusion=None):
        self.server, self.thread, self.blocks, self.exclusion = server, thread, blocks, exclusion

    def close(self, grace_s: float = 3) -> None:
        """Stop; open streams (a client's heartbeat) are cut after ``grace_s`` seconds."""
        self.server.config.timeout_graceful_shutdown = grace_s
        for gradio_app in self.server.gradio_apps:  # end heartbeats at once
            gradio_app.stop_event.set()
        self.server.should_exit = True
        self.thread.join(grace_s + 30)
        if self.exclusion is not None:
            self.exclusion.stop()


def launch_app(
    store: Store,
    *,
    block: bool,
    host=None,
    port=None,
    auth=None,
    tabs=None,
    login_groups=None,
    reviewers=None,
):
    """Build the server app and run it (blocking, or in a thread with ``block=False``)."""
    import uvicorn

    settings = store.settings
    host, port = listen_address(store, host, port)
    app, blocks = build_server_app(
        store,
        host=host,
        port=port,
        auth=auth,
        tabs=tabs,
        login_groups=login_groups,
        reviewers=reviewers,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        ws="none",
        # X-Forwarded-For is believed only from the configured proxies (uvicorn's own
        # default would trust 127.0.0.1, i.e. any local client could pick its address).
        proxy_headers=bool(trusted_proxies(settings)),
        forwarded_allow_ips=trusted_proxies(settings) or None,
    )
    server = _server_class(uvicorn)(config, _gradio_apps(app))
    from arena.voting.exclusion import ExclusionRefresher

    exclusion = ExclusionRefresher(store).start()
    if block:
        _exit_zero_on_sigterm()
        server.run()  # uvicorn handles SIGTERM/SIGINT: graceful shutdown, see module doc
        exclusion.stop()
        print("arena: stopped (in-flight requests finished)", flush=True)
        return blocks
    thread = threading.Thread(target=server.run, name="arena-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the arena server did not start on {host}:{port}")
        time.sleep(0.02)
    return RunningServer(server, thread, blocks, exclusion)


def _exit_zero_on_sigterm() -> None:
    """SIGTERM outside ``server.run`` (uvicorn re-raises it after its graceful stop): exit 0."""

    def stop(signum, frame):
        print("arena: stopped on SIGTERM", flush=True)
        raise SystemExit(0)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
