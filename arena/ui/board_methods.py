"""The Leaderboard tab's "Rating method" row and the two tables it adds under the board.

The row's values (tie handling, interval, style features, reweighting) become a
:class:`arena.reports.methods.BoardOptions`, which the tab passes to the service with the
filters; the service caches per options, so switching back is a redraw. Only the full tab
(Admin app, or the raters' app with the reveal on) has the row: the released snapshot
that raters see with the reveal off runs no fit a page visitor chooses.
"""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from arena.reports.methods import REWEIGHT_FLOOR, BoardOptions

#: (label, value) of the Ties radio.
TIES_CHOICES = [
    ("Half a win each way (split)", "split"),
    ("Left out (drop)", "drop"),
    ("Modelled: Davidson's ν (davidson)", "davidson"),
]
#: (label, value) of the Intervals radio.
CI_CHOICES = [("Bootstrap (percentile)", "bootstrap"), ("Sandwich (closed form)", "sandwich")]
STYLE_COLUMNS = ["Feature", "Elo per SD", "95% interval", "SD of the difference"]
FLIP_COLUMNS = ["Position", "Higher", "Lower", "Votes to flip", "Share of votes", "Method"]


def options_of(ties=None, ci=None, style=None, reweight=False, flips=True) -> BoardOptions:
    """The :class:`BoardOptions` of the row's values (empty: the defaults); raises
    :class:`arena.reports.methods.LeaderboardError` for a combination the fit refuses.
    Features are sorted, so the order they were ticked in makes no second cache entry."""
    return BoardOptions(
        ties=ties or "split",
        ci=ci or "bootstrap",
        style=tuple(sorted(set(style or ()))),
        reweight=float(REWEIGHT_FLOOR) if reweight else None,
        flips=bool(flips),
    )


def _signed(value) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.1f}"


def style_display(table: pd.DataFrame) -> pd.DataFrame:
    """Style coefficients for reading (``LeaderboardResult.style``): Elo points per SD of
    each feature's left-minus-right difference, with its interval."""
    if table is None or table.empty:
        return pd.DataFrame(columns=STYLE_COLUMNS)
    return pd.DataFrame(
        {
            "Feature": table["feature"],
            "Elo per SD": [_signed(v) for v in table["elo_per_sd"]],
            "95% interval": [
                f"{_signed(lo)} to {_signed(hi)}"
                for lo, hi in zip(table["ci_lower"], table["ci_upper"], strict=True)
            ],
            "SD of the difference": ["–" if pd.isna(v) else f"{v:.3g}" for v in table["sd"]],
        },
        columns=STYLE_COLUMNS,
    )


def flips_display(table: pd.DataFrame) -> pd.DataFrame:
    """The votes that hold each rank (``LeaderboardResult.flips``) for reading."""
    if table is None or table.empty:
        return pd.DataFrame(columns=FLIP_COLUMNS)
    return pd.DataFrame(
        {
            "Position": table["position"],
            "Higher": table["upper"],
            "Lower": table["lower"],
            "Votes to flip": ["–" if pd.isna(v) else f"{int(v):,}" for v in table["votes_to_flip"]],
            "Share of votes": ["–" if pd.isna(v) else f"{100 * v:.2g}%" for v in table["share"]],
            "Method": table["method"],
        },
        columns=FLIP_COLUMNS,
    )


def method_tables(result) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(style coefficients, votes that hold each rank) of a ``LeaderboardResult`` (or
    None), as display tables; empty when the option is off or there is no board."""
    if result is None or result.frame.empty:
        return style_display(None), flips_display(None)
    return style_display(result.style), flips_display(result.flips)


def method_row(features: list[str]):
    """The "Rating method" widgets: Ties, Intervals, Control for style, Reweight pairs."""
    with gr.Accordion("Rating method", open=True):
        with gr.Row():
            ties = gr.Radio(TIES_CHOICES, value="split", label="Ties and both-bad votes")
            ci = gr.Radio(CI_CHOICES, value="bootstrap", label="Intervals")
            reweight = gr.Checkbox(
                False,
                label=f"Reweight pairs (1/max(votes of the pair, {REWEIGHT_FLOOR}))",
            )
        style = gr.CheckboxGroup(features, value=[], label="Control for style (none checked: off)")
    return ties, ci, style, reweight


FLIPS_LABEL = "Votes that hold each rank (fewest removed votes that swap the order)"


def flips_label(options: BoardOptions | None) -> str:
    """The flip table's label; the counts are always of the plain fit's order (no style
    control, no reweighting, Davidson's ties split), so a board made otherwise says so."""
    if options is None or options.plain_order:
        return FLIPS_LABEL
    return FLIPS_LABEL + ": counted on the plain Bradley-Terry order, " + PLAIN_FIT


#: What "the plain fit" is, for the sentences that say the flip counts use it.
PLAIN_FIT = (
    "without style control or reweighting (Davidson: ties split); its order can differ from "
    "this one"
)


def method_components(initial):
    """The two tables under the board; ``initial(k)`` gives the value of the k-th."""
    style = gr.Dataframe(
        initial(0),
        interactive=False,
        label="Style coefficients (Elo points per SD of the left-minus-right difference)",
        visible=False,  # style control is off on page load
        elem_id="lb-style",
    )
    flips = gr.Dataframe(initial(1), interactive=False, label=FLIPS_LABEL, elem_id="lb-flips")
    return style, flips


def shown(table: pd.DataFrame, **changes):
    """An update that shows ``table`` (and sets ``changes``), or hides it when empty."""
    return gr.update(value=table, visible=not table.empty, **changes)
