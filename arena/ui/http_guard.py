"""HTTP guards in front of the whole server (raters' app, Admin app, Review app).

:class:`RequestGuard` is a pure ASGI middleware that, before any route runs:

* refuses a request body larger than the ``max_request_bytes`` setting with
  413 -- from its ``Content-Length`` before one byte of the body is read, and
  for a body streamed without a length (chunked) as soon as the bytes received
  pass the limit. Nothing the arena's pages or its API send comes near it
  (a vote or a leaderboard filter is a few hundred bytes); without it a 30 MB
  JSON body was parsed in full and left ~57 MB of memory behind per request;
* refuses Gradio's file-upload routes (403): the arena takes no files from the
  web (images are imported with the CLI), and Gradio's ``/gradio_api/upload``
  stores any file of any size, without a login on the raters' app;
* hides the API schema routes (404): ``/openapi.json``, ``/docs``, ``/redoc``
  and ``/gradio_api/openapi.json``, on ``/``, ``/admin`` and ``/review``. Kept:
  ``/config`` and ``/gradio_api/info``, which the page and ``gradio_client``
  need (``/gradio_api/info`` lists only ``/battle`` and ``/vote``);
* throttles logins (``POST /login`` of the raters' app with ``--auth-file``,
  ``POST /admin/login``, ``POST /review/login``): after ``admin_login_attempts``
  failed logins from one address group (an IPv4 address, an IPv6 /64) within
  ``admin_lockout_seconds``, every login from it -- a correct one too -- is
  answered 429 until the oldest of those failures leaves the window. Attempts
  of one address run one at a time, so parallel guesses cannot overshoot the
  limit; successful logins are not counted. The counters are the ``limits``
  library's moving windows in this process's memory (N server processes allow
  N times the attempts).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
import weakref

from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.exceptions import HTTPException

from arena.voting.admission import address_group

# Paths are matched after collapsing repeated slashes ("//openapi.json" is "/openapi.json").
REFUSED = re.compile(
    r"^(?:/admin|/review)?(?:/gradio_api)?/"
    r"(?:upload|upload_progress|process_recording|run-history)(?:/.*)?$"
)
HIDDEN = re.compile(r"^(?:/admin|/review)?(?:/gradio_api)?/(?:openapi\.json|docs|redoc)(?:/.*)?$")
LOGIN = re.compile(r"^(?P<app>/admin|/review)?/login/?$")
LOGIN_FAILURES = frozenset({400, 401, 403, 422})  # Gradio: 400 "Incorrect credentials"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit.

    An ``HTTPException``, so the route's own exception handling (FastAPI re-raises
    these from body parsing) answers 413 rather than 400 or 500.
    """

    def __init__(self, limit: int):
        super().__init__(413, _too_large(limit))


def _too_large(limit: int) -> str:
    return (
        f"request body over {limit} bytes (setting max_request_bytes); "
        "the arena's pages and API send far less."
    )


async def _respond(send, status: int, text: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": text}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if status == 413:
        raw.append((b"connection", b"close"))  # the rest of the body is never read
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Size cap, refused and hidden routes, login throttling (see the module doc)."""

    def __init__(self, app, settings):
        self.app = app
        self.max_body_bytes = max(1, int(settings.max_request_bytes))
        self.login_limit = RateLimitItemPerSecond(
            max(1, settings.admin_login_attempts), max(1, settings.admin_lockout_seconds)
        )
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self._login_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = re.sub(r"/{2,}", "/", scope.get("path", ""))
        if REFUSED.match(path):
            await _respond(send, 403, "file uploads are turned off on this server.")
            return
        if HIDDEN.match(path):
            await _respond(send, 404, "Not Found")
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body_bytes:
            await _respond(send, 413, _too_large(self.max_body_bytes))
            return
        receive = self._counted(receive)
        started = False

        async def tracked_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            login = LOGIN.match(path) if scope.get("method") == "POST" else None
            if login:
                host = (scope.get("client") or [None])[0]
                key = f"{login.group('app') or '/'} {address_group(host)}"
                await self._login(key, scope, receive, tracked_send)
            else:
                await self.app(scope, receive, tracked_send)
        except BodyTooLarge:
            if not started:
                await _respond(send, 413, _too_large(self.max_body_bytes))

    def _counted(self, receive):
        limit, received = self.max_body_bytes, 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        return counted

    async def _login(self, key: str, scope, receive, send) -> None:
        lock = self._login_locks.get(key)
        if lock is None:
            lock = self._login_locks[key] = asyncio.Lock()
        async with lock:  # one attempt per address at a time: no overshoot by parallel guesses
            if not self.limiter.test(self.login_limit, key):
                reset, _ = self.limiter.get_window_stats(self.login_limit, key)
                wait = max(1, math.ceil(reset - time.time()))
                await _respond(
                    send,
                    429,
                    f"too many failed logins from your address: try again in {wait} s.",
                    {"Retry-After": str(wait)},
                )
                return
            status = 0

            async def watched(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await self.app(scope, receive, watched)
            finally:
                if status in LOGIN_FAILURES:
                    self.limiter.hit(self.login_limit, key)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
