"""The image route: ``/img/<sha256>.png`` serves a stored image by content hash only.

Gradio's own file route (``/gradio_api/file=<absolute path>``) would put the
workspace path into the page, and workspace folders are often named after the
model being evaluated. This route's URL holds nothing but the pixel hash, and
the file it returns is the metadata-free PNG the image store wrote on ingest.
"""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse
from starlette.routing import Route

from arena.battles import IMAGE_ROUTE

NAME = re.compile(r"^([0-9a-f]{64})\.png$")
CACHE = "public, max-age=31536000, immutable"  # content-addressed: never changes


def image_routes(store) -> list[Route]:
    """Starlette routes to put in front of the Gradio app (``app_kwargs={"routes": ...}``)."""

    async def image(request: Request):
        match = NAME.match(request.path_params["name"])
        if not match:
            return PlainTextResponse("not an image name", status_code=404)
        path = store.images.path_for(match.group(1))
        if not path.is_file():
            return PlainTextResponse("no such image", status_code=404)
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": CACHE})

    return [Route(f"/{IMAGE_ROUTE}/{{name}}", image, methods=["GET", "HEAD"])]
