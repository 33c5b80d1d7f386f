"""The reviewers' image route: ``<app>/review-image/<handle>`` behind the app's own login.

The raters' image route (:mod:`arena.ui.images`) serves a battle's two renditions to the
address it served the battle to, and nothing else; it is not widened for the gallery. The
gallery's images go through this route instead, mounted in front of the Admin app (and the
Review app) only: a request without that app's login session gets 401, whatever the
handle. What comes back is the display rendition (the same size for every model, as the
raters see it) or, with ``?full=1``, the stored original (PNG, metadata stripped on
import), with one fixed set of headers -- no ETag, no Last-Modified, no file name.

A handle is the image id under a keyed 64-bit permutation (a four-round Feistel network
with HMAC-SHA256 rounds, keyed by a server secret in the database): stable, so a page can
be reloaded, readable by every server process, and opaque, so that ids -- which follow the
order in which models were imported -- do not tell a blind reviewer which model made an
image.

The blind review has a route of its own, ``<app>/review-blind/<handle>``, under another
key: its handles never equal the ones the browse views show beside a model's name, and
its "full size" is a large rendition (one box for every model, letterboxed like the
display rendition), never the original, whose native size and aspect can name the model.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from arena.storage.renditions import MEDIA_TYPE, Renditions

ROUTE = "review-image"
BLIND_ROUTE = "review-blind"
#: The blind review's full-size view: every image scaled into this box (the display
#: renditions' pipeline), so size and aspect say nothing of the model.
BLIND_FULL_SIZE = "1024x1024"
HANDLE = re.compile(r"^[0-9a-f]{16}$")
ROUNDS = 4
MAX_ID = 1 << 40  # a decoded handle above this is no image id: refused before any read
HEADERS = {"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"}


class ImageHandles:
    """Image id <-> handle under one key (:meth:`of`: the store's, one per store and
    view: the browse views' or the blind review's)."""

    def __init__(self, key: bytes, route: str = ROUTE):
        self.key = key
        self.route = route

    @classmethod
    def of(cls, store, blind: bool = False) -> ImageHandles:
        name, route = (
            ("review_blind_handles", BLIND_ROUTE) if blind else ("review_image_handles", ROUTE)
        )
        return store.shared(
            (cls, route), lambda: cls(bytes.fromhex(store.server_secret(name)), route)
        )

    def _round(self, k: int, half: int) -> int:
        digest = hmac.new(self.key, bytes([k]) + half.to_bytes(4, "big"), hashlib.sha256)
        return int.from_bytes(digest.digest()[:4], "big")

    def seal(self, image_id: int) -> str:
        value = int(image_id)
        if not 0 <= value < MAX_ID:
            raise ValueError(f"image id {image_id!r}: expected 0 <= id < 2**40.")
        left, right = value >> 32, value & 0xFFFFFFFF
        for k in range(ROUNDS):
            left, right = right, left ^ self._round(k, right)
        return f"{(left << 32) | right:016x}"

    def open(self, handle: str) -> int | None:
        """The image id of a handle, None for anything that is not one."""
        if not isinstance(handle, str) or not HANDLE.match(handle):
            return None
        value = int(handle, 16)
        left, right = value >> 32, value & 0xFFFFFFFF
        for k in reversed(range(ROUNDS)):
            left, right = right ^ self._round(k, left), left
        image_id = (left << 32) | right
        return image_id if image_id < MAX_ID else None

    def url(self, image_id: int, full: bool = False) -> str:
        """The image's URL relative to the app's page (``/admin/``, ``/review/``)."""
        return f"{self.route}/{self.seal(image_id)}" + ("?full=1" if full else "")


def session_user(gradio_app, request: Request) -> str | None:
    """The user logged in to ``gradio_app`` with this request's session cookie, else None.

    Gradio's own check (its ``/user`` route): a login sets the cookie
    ``access-token-<cookie_id>`` (and an ``-unsecure-`` twin for plain HTTP) to a token it
    keeps in ``tokens``.
    """
    if gradio_app is None:
        return None
    cookie_id = gradio_app.cookie_id
    token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
        f"access-token-unsecure-{cookie_id}"
    )
    return gradio_app.tokens.get(token) if token else None


def review_image_routes(store, path: str, user_of: Callable[[Request], str | None]) -> list:
    """The browse views' and the blind review's image routes of the app at ``path``."""
    return [
        review_image_route(store, path, user_of),
        review_image_route(store, path, user_of, blind=True),
    ]


def review_image_route(
    store, path: str, user_of: Callable[[Request], str | None], blind: bool = False
) -> Route:
    """The route ``<path>/review-image/<handle>`` (``blind``: ``<path>/review-blind/...``,
    which serves renditions only); ``user_of(request)`` says who is logged in to the app
    at ``path`` (None: nobody, 401)."""
    handles = ImageHandles.of(store, blind=blind)
    renditions = store.images.renditions
    large = Renditions.for_size(store.workspace, BLIND_FULL_SIZE) if blind else None

    def read(image_id: int, full: bool) -> bytes | None:
        sha = store.image_sha256(image_id)
        if sha is None:
            return None
        original = store.images.path_for(sha)
        if full and large is None:
            return original.read_bytes() if original.is_file() else None
        box = large if full else renditions
        if not box.exists(sha) and not original.is_file():
            return None
        return box.ensure(sha, store.images).read_bytes()

    async def image(request: Request):
        if user_of(request) is None:
            return PlainTextResponse("log in first", status_code=401)
        image_id = handles.open(request.path_params["handle"])
        full = request.query_params.get("full") == "1"
        data = None if image_id is None else await run_in_threadpool(read, image_id, full)
        if data is None:
            return PlainTextResponse("no such image", status_code=404)
        original = full and not blind
        return Response(data, media_type="image/png" if original else MEDIA_TYPE, headers=HEADERS)

    route = f"{path.rstrip('/')}/{handles.route}/{{handle}}"
    return Route(route, image, methods=["GET", "HEAD"])
