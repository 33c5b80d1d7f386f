"""The Workspace tab: what the workspace holds (models, prompts, images, votes, scores)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from arena.storage.store import Store

TITLE = "Workspace"


def status_summary(store: Store) -> str:
    """Counts of the workspace; with the reveal off the vote count is the leaderboard's
    released one (arena.reports.public_view), so it does not move with each vote."""
    status = store.status()
    votes = f"**{status['votes']}** votes"
    if not store.settings.reveal_models:
        from arena.reports.public_view import public_views

        release = public_views(store).release()
        votes = f"**{release.votes}** votes on the leaderboard (released every {release.step})"
    return (
        f"**{status['models']}** models · **{status['prompts']}** prompts · "
        f"**{status['images']}** images · {votes} · **{status['scores']}** scores"
    )


def images_per_model(store: Store) -> pd.DataFrame:
    return pd.DataFrame(store.status()["per_model"], columns=["model", "kind", "images"])


def render(store: Store):
    """The tab; returns its refresh (fn, inputs, outputs) for when it is opened."""
    # Callable values are evaluated on every page load.
    summary = gr.Markdown(lambda: status_summary(store))
    table = gr.Dataframe(
        lambda: images_per_model(store), interactive=False, label="Images per model"
    )
    refresh = gr.Button("Refresh", size="sm")

    def update():
        return status_summary(store), images_per_model(store)

    refresh.click(update, outputs=[summary, table], api_visibility="private")
    return update, [], [summary, table]
