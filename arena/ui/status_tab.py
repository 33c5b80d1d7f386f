"""The Workspace tab: what the workspace holds (models, prompts, images, votes, scores)."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from arena.store import Store

TITLE = "Workspace"


def status_summary(store: Store) -> str:
    status = store.status()
    return (
        f"**{status['models']}** models · **{status['prompts']}** prompts · "
        f"**{status['images']}** images · **{status['votes']}** votes · "
        f"**{status['scores']}** scores"
    )


def images_per_model(store: Store) -> pd.DataFrame:
    return pd.DataFrame(store.status()["per_model"], columns=["model", "kind", "images"])


def render(store: Store, settings) -> None:
    # Callable values are evaluated on every page load.
    summary = gr.Markdown(lambda: status_summary(store))
    table = gr.Dataframe(
        lambda: images_per_model(store), interactive=False, label="Images per model"
    )
    refresh = gr.Button("Refresh", size="sm")
    refresh.click(
        lambda: (status_summary(store), images_per_model(store)),
        outputs=[summary, table],
        api_visibility="private",
    )
