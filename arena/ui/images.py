"""The image route: ``/img/<handle>`` serves the display rendition behind a battle's handle.

A handle is random and belongs to one side of one battle (``arena.voting.battles``): the
same image in two battles has two unrelated URLs, so URLs teach nothing across
battles. A handle works while its battle is open (``battle_ttl_seconds`` after it
was served) and only from the address group it was served to. What comes back is
the same for every image except the pixels: the display rendition
(``arena.storage.renditions``, one size, one encoder, no metadata) with one fixed set of
headers -- no ETag, no Last-Modified, no file name -- and a 404 with one fixed
body for every handle that does not work, whatever the reason.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from arena.storage.renditions import MEDIA_TYPE
from arena.voting.admission import Admission
from arena.voting.battles import IMAGE_ROUTE, handle_image

HANDLE = re.compile(r"^[A-Za-z0-9_-]{24}$")
# One set of headers for every image: private (the URL is one rater's), kept for as long
# as the page may show it again (preload, reveal), never revalidated.
HEADERS = {"Cache-Control": "private, max-age=3600, immutable", "X-Content-Type-Options": "nosniff"}


def resolve(store, handle: str, group: str) -> str | None:
    """The pixel hash behind a live handle served to ``group``, else None."""
    if not HANDLE.match(handle):
        return None
    return handle_image(store, handle, group)


def image_routes(store) -> list[Route]:
    """Starlette routes to put in front of the Gradio app (``app_kwargs={"routes": ...}``)."""
    admission = Admission.of(store)
    renditions = store.images.renditions

    def read(handle: str, group: str) -> bytes | None:
        sha = resolve(store, handle, group)
        if sha is None:
            return None
        return renditions.ensure(sha, store.images).read_bytes()

    async def image(request: Request):
        data = await run_in_threadpool(
            read, request.path_params["handle"], admission.group(request)
        )
        if data is None:
            return PlainTextResponse("no such image", status_code=404)
        return Response(data, media_type=MEDIA_TYPE, headers=HEADERS)

    return [Route(f"/{IMAGE_ROUTE}/{{handle}}", image, methods=["GET", "HEAD"])]
