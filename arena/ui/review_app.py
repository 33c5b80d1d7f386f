"""The Review app: the gallery and failure flags for reviewers who are not admins.

``arena serve --reviewer-file FILE`` (one ``user:password`` per line) mounts it at
``/review`` behind those logins: one tab, Review (:mod:`arena.ui.review_tab`), whose
verdicts are attributed to the reviewer's login name. A reviewer sees images with their
models (that is what a gallery is for) but nothing of the Admin app: no raters, no
exclusions, no exports. Like the Admin app it is a separate Gradio app, so nothing of it
is in the raters' page or API, and its images go through the login-checked route of
:mod:`arena.ui.review_images`, mounted in front of it.
"""

from __future__ import annotations

import hmac

import gradio as gr

from arena.storage.store import Store
from arena.ui import review_tab
from arena.ui.review_images import review_image_routes, session_user

REVIEW_PATH = "/review"


def reviewer_auth(logins: list[tuple[str, str]]):
    """A constant-time check of a reviewer login against the reviewer file's pairs."""
    known = {user: password.encode() for user, password in logins}

    def check(username: str, password: str) -> bool:
        expected = known.get(username)
        candidate = password.encode()
        if expected is None:  # compare anyway, so an unknown name takes as long
            hmac.compare_digest(candidate, candidate)
            return False
        return hmac.compare_digest(candidate, expected)

    return check


def build_review_app(store: Store) -> gr.Blocks:
    with gr.Blocks(title="Arena review") as app:
        gr.Markdown("# Arena review")
        with gr.Tab(review_tab.TITLE):
            fn, inputs, outputs = review_tab.render(store)
        app.load(fn, inputs, outputs, api_visibility="private", show_progress="minimal")
    return app


def gradio_app_at(fastapi_app, path: str):
    """The Gradio app mounted at ``path`` (its login sessions live there)."""
    for route in fastapi_app.routes:
        if getattr(route, "path", None) == path and hasattr(getattr(route, "app", None), "tokens"):
            return route.app
    raise RuntimeError(f"no Gradio app is mounted at {path}.")


def mount_behind_login(fastapi_app, store: Store, blocks: gr.Blocks, path: str, auth, message):
    """Mount ``blocks`` at ``path`` behind ``auth``, with the gallery's image route
    ``<path>/review-image/<handle>`` (and the blind review's ``<path>/review-blind/...``)
    in front of it answering only its logged-in users."""
    mounted: dict[str, object] = {}
    fastapi_app.router.routes.extend(
        review_image_routes(store, path, lambda request: session_user(mounted.get("app"), request))
    )
    fastapi_app = gr.mount_gradio_app(
        fastapi_app,
        blocks,
        path=path,
        auth=auth,
        auth_message=message,
        footer_links=[],
        css=review_tab.CSS,
    )
    mounted["app"] = gradio_app_at(fastapi_app, path)
    return fastapi_app


def mount_review(fastapi_app, store: Store, reviewers: list[tuple[str, str]] | None):
    """Mount the Review app at /review behind the reviewer logins; none, no Review app."""
    if not reviewers:
        return fastapi_app
    return mount_behind_login(
        fastapi_app,
        store,
        build_review_app(store),
        REVIEW_PATH,
        reviewer_auth(reviewers),
        "Arena review: log in with your reviewer name and password (arena serve --reviewer-file).",
    )
