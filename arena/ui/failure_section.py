"""Failure rates on the Admin app's Leaderboard and Agreement tabs (and the Review tab).

Numbers come from :class:`arena.reports.failures.FailureService` (reviewers' flags under
the tab's category and prompt-set filters, cached on the flags, not the votes); this
module only lays them out. The raters' app never shows them, reveal on or off: flags are
the reviewers' view of images tied to their models.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from arena.reports import failures as fl
from arena.reports.frames import ReportError
from arena.ui.filter_row import FIELDS, PROMPT_FIELDS, filters_of, named


def scope(filters) -> str:
    """The images failure rates are over, in words (they follow the prompt filters only)."""
    return "the images of " + (", ".join(filters.prompt_parts()) or "every prompt")


def rates_outputs(store, *prompt_values, **given):
    """(note, per-model table, per-mode table) of the failure rates under the filter
    row's prompt filters (:data:`arena.ui.filter_row.PROMPT_FIELDS`)."""
    try:
        filters = filters_of(**named(prompt_values, given, PROMPT_FIELDS))
        result = fl.FailureService.of(store).get(filters)
    except ReportError as exc:
        return f"**Cannot show failure rates:** {exc}", pd.DataFrame(), pd.DataFrame()
    note = f"{fl.RATES_NOTE} ({result.flags} flag row(s) on {scope(filters)}.)"
    return note, fl.summary_display(result.rates), fl.modes_display(result.rates)


def leaderboard_components() -> list:
    """Under the Admin app's leaderboard: a heading note and the per-model failure rates."""
    note = gr.Markdown()
    table = gr.Dataframe(
        interactive=False, label="Failure rates (reviewers' flags)", wrap=True, elem_id="lb-fail"
    )
    return [note, table]


def leaderboard_outputs(store, *prompt_values, **given) -> tuple:
    note, summary, _modes = rates_outputs(store, *prompt_values, **given)
    return f"### Failure rates\n{note}", summary


def agreement_components() -> list:
    """The Agreement tab's section: failure rate against the human rating."""
    gr.Markdown(
        "### Failure flags vs human rating\nDo the models the raters prefer fail less? "
        "Spearman ρ and Kendall τ-b across the models between each failure rate (reviewers' "
        "flags, Review tab) and the human Bradley-Terry rating under the filters above; "
        "negative: the preferred models fail less. p: permutation p-value across the models."
    )
    note = gr.Markdown()
    table = gr.Dataframe(interactive=False, label="Failure rate vs human rating", wrap=True)
    plot = gr.Plot(label="Any-failure rate vs human rating")
    return [note, table, plot]


def agreement_outputs(store, service, *values, **given) -> tuple:
    """(note, correlation table, figure) for the Agreement tab's values (the filter row,
    then the slice protocol, so that the tab's own cached report is read again)."""
    empty = (pd.DataFrame(), None)
    v = named(values, given, (*FIELDS, "slice_protocol"))
    try:
        filters = filters_of(**{k: v[k] for k in FIELDS})
        rates = fl.FailureService.of(store).get(filters)
        report = service.get(filters, v["slice_protocol"] or "ties_half").report
    except (ReportError, ValueError) as exc:
        return (f"**Cannot compare failure rates:** {exc}", *empty)
    if rates.flags == 0:
        return ("No image reviewed yet (tab Review).", *empty)
    correlation = fl.correlation_with(rates.rates, report.models, store.settings.seed)
    note = (
        f"{rates.flags} flag row(s) on {scope(filters)}; ratings from the votes of "
        f"{filters.describe()} ({len(report.models)} model(s))."
    )
    return (
        note,
        fl.correlation_display(correlation),
        fl.rate_vs_rating_figure(rates.rates, report.models),
    )
