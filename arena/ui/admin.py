"""The Admin app: rater quality, exclusions and groups, models, prompt sets, the Review tab
(gallery, blind review, failure flags), exports, and the live Leaderboard (filters, Compare)
and Agreement tabs.

It is a separate Gradio app mounted at ``/admin`` behind a login (user
``admin``, password the ``admin_secret`` setting), so nothing of it is in the
raters' page or in the public API; with no secret set it is not mounted at all.
Every handler is a short call into plain Python (arena.voting.exclusion, the store).
"""

from __future__ import annotations

import hmac

import gradio as gr
import pandas as pd

from arena.config import Settings
from arena.storage.store import Store, StoreError
from arena.ui import agreement_tab, export_panel, leaderboard_tab, review_tab
from arena.ui.app import refresh_on_open
from arena.ui.review_app import mount_behind_login
from arena.voting.exclusion import quality_report, refresh_exclusions

ADMIN_USER = "admin"
RATER_COLUMNS = [
    "rater_id",
    "external_id",
    "kind",
    "rater_group",
    "votes",
    "gold_votes",
    "gold_accuracy",
    "shared",
    "agreement",
    "left_rate",
    "median_decision_ms",
    "fast_fraction",
    "targeted_model",
    "targeted_picks",
    "targeted_battles",
    "targeted_expected",
    "targeted_p",
    "targeted_p_adj",
    "targeted_unit",
    "flag_reasons",
    "excluded",
    "excluded_reason",
]


def admin_auth(settings: Settings):
    """A constant-time check of the admin login against the admin_secret setting."""
    secret = settings.admin_secret

    def check(username: str, password: str) -> bool:
        return hmac.compare_digest(username, ADMIN_USER) and hmac.compare_digest(
            password.encode(), secret.encode()
        )

    return check


def raters_table(store: Store) -> pd.DataFrame:
    report = quality_report(store)
    for column in RATER_COLUMNS:
        if column not in report:
            report[column] = None
    # p-values keep their digits (a rounded 2e-9 would read 0); the rest to 3 decimals
    keep = ("targeted_p", "targeted_p_adj")
    return report[RATER_COLUMNS].round({c: 3 for c in RATER_COLUMNS if c not in keep})


def prompt_sets_table(store: Store) -> pd.DataFrame:
    """Every prompt set: prompts, categories, and whether it is held out."""
    return store.prompt_sets_frame()


def set_exclusion(store: Store, rater_id: float | None, excluded: bool, reason: str) -> str:
    if rater_id is None:
        return "Enter a rater id from the table."
    try:
        store.set_rater_exclusion(int(rater_id), excluded, reason.strip())
    except StoreError as exc:
        return str(exc)
    verb = "excluded" if excluded else "included again"
    return f"Rater {int(rater_id)} {verb}; the automatic policy will not change this rater."


def set_group(store: Store, rater_id: float | None, group: str | None) -> str:
    """An admin puts a rater in a group (``expert``, ``crowd``, ...); empty: in none."""
    if rater_id is None:
        return "Enter a rater id from the table."
    try:
        stored = store.set_rater_group(int(rater_id), group)
    except StoreError as exc:
        return str(exc)
    if stored is None:
        return f"Rater {int(rater_id)} is in no group now."
    return f"Rater {int(rater_id)} is in group {stored!r} now."


def set_model_active(store: Store, name: str, active: bool) -> str:
    try:
        store.set_model_active(name.strip(), active)
    except StoreError as exc:
        return str(exc)
    return f"Model {name.strip()!r} {'is served again' if active else 'is no longer served'}."


def apply_exclusion_rules(store: Store) -> str:
    changed = refresh_exclusions(store)
    return (
        f"Exclusion rules applied: {changed['excluded']} rater(s) excluded, "
        f"{changed['included']} included again."
    )


def build_admin_app(store: Store) -> gr.Blocks:
    with gr.Blocks(title="Arena admin") as app:
        gr.Markdown("# Arena admin")
        with gr.Tab("Raters"):
            gr.Markdown(
                "Quality signals per rater: gold accuracy, agreement with the majority of the "
                "others on shared pairs, side preference, decision times, and targeted voting "
                "(the model a rater, or its address group, picks more often than the "
                "Bradley-Terry fit of everyone else predicts: picks vs expected in its battles "
                "with that model, p, and p corrected over models and raters). Flagged raters "
                "are excluded from the leaderboard by the exclusion rules; an admin decision "
                "overrides them. A rater's group (expert, crowd, any name) lets the "
                "leaderboards, agreement views and exports be filtered by group; logins get "
                "theirs from the login file (`user:password:group`)."
            )
            raters = gr.Dataframe(lambda: raters_table(store), interactive=False)
            with gr.Row():
                rater_id = gr.Number(label="Rater id", precision=0)
                reason = gr.Textbox(label="Reason (for exclusions)")
                group = gr.Textbox(label="Group (e.g. expert, crowd; empty: none)")
            with gr.Row():
                exclude = gr.Button("Exclude rater")
                include = gr.Button("Include rater")
                set_rater_group = gr.Button("Set group")
                apply_rules = gr.Button("Apply the exclusion rules now", variant="primary")
            message = gr.Markdown()
            exclude.click(
                lambda r, why: set_exclusion(store, r, True, why),
                [rater_id, reason],
                message,
                api_visibility="private",
            ).then(lambda: raters_table(store), None, raters, api_visibility="private")
            include.click(
                lambda r: set_exclusion(store, r, False, ""),
                rater_id,
                message,
                api_visibility="private",
            ).then(lambda: raters_table(store), None, raters, api_visibility="private")
            set_rater_group.click(
                lambda r, g: set_group(store, r, g),
                [rater_id, group],
                message,
                api_visibility="private",
            ).then(lambda: raters_table(store), None, raters, api_visibility="private")
            apply_rules.click(
                lambda: apply_exclusion_rules(store), None, message, api_visibility="private"
            ).then(lambda: raters_table(store), None, raters, api_visibility="private")
        with gr.Tab("Models and prompts"):
            models = gr.Dataframe(lambda: store.models_frame(), interactive=False, label="Models")
            with gr.Row():
                model_name = gr.Textbox(label="Model name")
                stop = gr.Button("Stop serving")
                resume = gr.Button("Serve again")
            model_message = gr.Markdown()
            stop.click(
                lambda n: set_model_active(store, n, False),
                model_name,
                model_message,
                api_visibility="private",
            ).then(lambda: store.models_frame(), None, models, api_visibility="private")
            resume.click(
                lambda n: set_model_active(store, n, True),
                model_name,
                model_message,
                api_visibility="private",
            ).then(lambda: store.models_frame(), None, models, api_visibility="private")
            gr.Dataframe(lambda: prompt_sets_table(store), interactive=False, label="Prompt sets")
            gr.Markdown(
                "Import prompts and images with `arena import-prompts` and "
                "`arena import-images` (see docs/importing.md)."
            )
        with gr.Tab(review_tab.TITLE) as tab:  # the gallery: images tied to their models
            refresh = review_tab.render(store, held_out=True)
        refresh_on_open(tab, refresh)
        with gr.Tab(export_panel.TITLE):
            export_panel.render(store)
        # The live, filtered views: raters get them only with the reveal on
        # (arena.reports.public_view).
        with gr.Tab(leaderboard_tab.TITLE) as tab:
            refresh = leaderboard_tab.render(store, full=True)
        refresh_on_open(tab, refresh)
        with gr.Tab(agreement_tab.TITLE) as tab:
            refresh = agreement_tab.render(
                store, groups=True, failures=True, analyses=True, held_out=True
            )
        refresh_on_open(tab, refresh)
    return app


def mount_admin(fastapi_app, store: Store, path: str = "/admin"):
    """Mount the Admin app on ``fastapi_app`` behind its login; no secret, no Admin app.

    The gallery's image route (:mod:`arena.ui.review_images`) goes in front of it, at
    ``<path>/review-image/<handle>``, and answers only requests logged in to it."""
    if not store.settings.admin_secret:
        return fastapi_app
    return mount_behind_login(
        fastapi_app,
        store,
        build_admin_app(store),
        path,
        admin_auth(store.settings),
        "Arena admin: log in as 'admin' with the admin secret (ARENA_ADMIN_SECRET).",
    )
