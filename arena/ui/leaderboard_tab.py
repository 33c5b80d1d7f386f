"""The Leaderboard tab: ratings with intervals, win rates, metric means, and filters.

Numbers come from :class:`arena.reports.leaderboard.LeaderboardService` (cached until
votes, rater exclusions or scores change); this module only formats them and
draws two matplotlib figures (no pyplot, so no GUI backend and thread-safe).
"""

from __future__ import annotations

import math

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from arena.reports.frames import ReportError
from arena.reports.leaderboard import (
    METHOD_COLUMNS,
    LeaderboardService,
    metric_names,
    separation,
)
from arena.reports.methods import BoardOptions
from arena.ui import board_methods as methods
from arena.ui.cells import number
from arena.ui.filter_row import (
    FIELDS,
    PROMPT_FIELDS,
    change_triggers,
    filter_row,
    filters_of,
    named,
)

TITLE = "Leaderboard"
HEATMAP_MAX_MODELS = 40  # beyond this the heatmap shows the top models only
ANNOTATE_MAX_MODELS = 14


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The board as strings for reading: rank, model, rating ± interval, Elo, votes, rates;
    with style control the uncontrolled rating, with flip counts the votes to flip."""
    if frame.empty:
        return pd.DataFrame(columns=["Rank", "Model", "Rating", "95% CI", "Elo", "Votes"])
    metric_cols = metric_names(frame)
    out = pd.DataFrame(
        {
            "Rank": [
                "no rating (never won or never lost)"
                if not i
                else ("provisional" if p else number(r, 0))
                for p, i, r in zip(
                    frame["provisional"], frame["identified"], frame["rank"], strict=True
                )
            ],
            "Model": frame["model"],
            "Rating": [number(x, 0) for x in frame["rating"]],
            "95% CI": [
                f"+{number(hi - r, 0)} / -{number(r - lo, 0)}"
                for r, lo, hi in zip(
                    frame["rating"], frame["ci_lower"], frame["ci_upper"], strict=True
                )
            ],
            "Elo": [number(x, 0) for x in frame["elo"]],
            "Votes": frame["votes"].astype(int),
            "Win rate": [f"{number(100 * x, 1)}%" for x in frame["win_rate"]],
            "Both bad": [f"{number(100 * x, 1)}%" for x in frame["both_bad_rate"]],
        }
    )
    if "uncontrolled" in frame:
        out.insert(4, "Uncontrolled", [number(x, 0) for x in frame["uncontrolled"]])
    if "votes_to_flip" in frame:
        out["Votes to flip"] = [_count(x) for x in frame["votes_to_flip"]]
    for m in metric_cols:
        out[m] = [_metric_num(x) for x in frame[m]]
    return out


def model_counts(frame, settings) -> str:
    """How many models are ranked, provisional and without a rating (a board's summary)."""
    ranked = int((~frame["provisional"] & frame["identified"]).sum())
    return (
        f"**{ranked}** ranked models · {int(frame['provisional'].sum())} provisional (fewer "
        f"than {settings.min_votes_ranked} votes).{unidentified_note(frame)}"
    )


def unidentified_note(frame: pd.DataFrame) -> str:
    """A sentence naming the models the votes give no rating (never won or never lost)."""
    models = frame.loc[~frame["identified"].astype(bool), "model"].tolist()
    if not models:
        return ""
    return (
        f" No rating for {', '.join(models)}: never won or never lost against the others, "
        "so the votes do not determine a finite rating (it is not ranked)."
    )


def _count(value) -> str:
    """A whole number with thousands separators, "–" when there is none."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{int(value):,}"


def _metric_num(value) -> str:
    """3 decimals, or 4 significant digits where that would hide the value (FID ~ 1e4,
    KID ~ 1e-4)."""
    text = number(value, 3)
    if text == "–" or 1e-2 <= abs(value) < 1e5 or value == 0:
        return text
    return f"{value:.4g}"


def ratings_figure(frame: pd.DataFrame, options: BoardOptions | None = None) -> Figure:
    """Horizontal interval plot, best model on top; provisional models in grey. The title
    names the interval (and style control) of ``options`` (default: plain, bootstrap)."""
    options = options or BoardOptions()
    n = len(frame)
    fig = Figure(figsize=(7.0, min(0.32 * n + 1.4, 14.0)), layout="constrained")
    ax = fig.add_subplot()
    y = np.arange(n)[::-1]
    prov = frame["provisional"].to_numpy(bool)
    rating = frame["rating"].to_numpy(float)
    # Percentiles of identical bootstrap ratings (one vote in the window) can land a
    # rounding error on the wrong side of the rating; errorbar refuses negative lengths.
    err = np.vstack(
        [rating - frame["ci_lower"].to_numpy(float), frame["ci_upper"].to_numpy(float) - rating]
    )
    err = np.nan_to_num(err, nan=0.0).clip(min=0.0)
    for mask, color, label in ((~prov, "tab:blue", "ranked"), (prov, "0.6", "provisional")):
        if mask.any():
            ax.errorbar(
                rating[mask],
                y[mask],
                xerr=err[:, mask],
                fmt="o",
                color=color,
                ecolor=color,
                capsize=3,
                label=label,
            )
    ax.set_yticks(y, frame["model"].tolist())
    style = "\ncontrolled for style" if options.style else ""
    ax.set_title(f"Bradley-Terry ratings (Elo scale), 95% {options.ci} intervals{style}")
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("rating (400 points = 10:1 odds)")
    ax.grid(axis="x", alpha=0.3)
    if prov.any():
        ax.legend(loc="lower right", fontsize="small")
    return fig


def heatmap_figure(frame: pd.DataFrame, ratings) -> Figure:
    """Observed win rate of the row model against the column model (ties as half)."""
    order = [ratings.names.index(m) for m in frame["model"]][:HEATMAP_MAX_MODELS]
    matrix = ratings.observed[np.ix_(order, order)]
    names = [ratings.names[i] for i in order]
    n = len(names)
    side = min(max(4.0, 0.38 * n + 2.0), 14.0)
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap="RdBu", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), names, rotation=60, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_title("Observed win rate of row model vs column model")
    if n <= ANNOTATE_MAX_MODELS:
        battles = ratings.counts.battles[np.ix_(order, order)]
        for i in range(n):
            for j in range(n):
                if battles[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        f"{matrix[i, j]:.2f}",
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if abs(matrix[i, j] - 0.5) > 0.3 else "black",
                    )
    fig.colorbar(image, ax=ax, shrink=0.8, label="win rate")
    return fig


#: The rating method row's values, after the filter row's (:mod:`arena.ui.board_methods`).
METHOD_FIELDS = ("ties", "ci", "style", "reweight")


def _board(service: LeaderboardService, *values, flips: bool = True, **given):
    """(summary markdown, leaderboard result or None) for the filter row's values, then
    the rating method row's (:func:`arena.ui.board_methods.options_of`; empty: the
    defaults), positionally or by name. ``flips=False``: no votes-to-flip counts (the
    raters' app: they would show where a few votes swap a rank)."""
    v = named(values, given, FIELDS + METHOD_FIELDS)
    try:
        filters = filters_of(**{k: v[k] for k in FIELDS})
        options = methods.options_of(v["ties"], v["ci"], v["style"], bool(v["reweight"]), flips)
        result = service.get(filters, options=options)
    except ReportError as exc:  # a filter's, an option's or the fit's (LeaderboardError)
        return f"**Cannot show the leaderboard:** {exc}", None
    frame = result.frame
    if frame.empty:
        return f"No votes yet for {filters.describe()}.", None
    method, *others = result.notes  # a board with votes has its method sentence first
    summary = (
        f"**{result.votes_used}** votes ({filters.describe()}) · "
        f"{model_counts(frame, service.settings)} {method} {RANK_NOTE}"
    )
    for note in others:
        summary += "\n\n" + (f"**⚠ {note}**" if note.startswith("Warning") else note)
    for extra in (result.model_level_note, result.paired_note):  # the metric columns' notes
        summary += f"\n\n{extra}" if extra else ""
    return summary, result


def _drawn(summary: str, result):
    """(summary, table, ratings figure, heatmap figure) of a :func:`_board` answer."""
    if result is None:
        return summary, display_table(pd.DataFrame()), None, None
    return (
        summary,
        display_table(result.frame),
        ratings_figure(result.frame, result.options),
        heatmap_figure(result.frame, result.ratings),
    )


def board_outputs(service: LeaderboardService, *values, **given):
    """(summary markdown, table, ratings figure, heatmap figure) for the filter row's and
    the rating method row's values (:func:`_board`)."""
    return _drawn(*_board(service, *values, **given))


def tab_outputs(service: LeaderboardService, *values, flips: bool = True, **given):
    """The full tab's six outputs: :func:`board_outputs`, then the style coefficients and
    the votes that hold each rank (hidden when empty), from one board."""
    summary, result = _board(service, *values, flips=flips, **given)
    style, flips = methods.method_tables(result)
    label = methods.flips_label(result.options if result is not None else None)
    return (*_drawn(summary, result), methods.shown(style), methods.shown(flips, label=label))


def _initial(service: LeaderboardService, part: int, flips: bool = True):
    """One output of the unfiltered board, for a component's value on page load (parts
    4 and 5: the style and flip tables)."""

    def value():
        summary, result = _board(service, flips=flips)
        if part == 0:
            return summary
        if part >= 4:
            return methods.method_tables(result)[part - 4]
        if result is None:
            return display_table(pd.DataFrame()) if part == 1 else None
        if part == 1:
            return display_table(result.frame)
        if part == 2:
            return ratings_figure(result.frame, result.options)
        return heatmap_figure(result.frame, result.ratings)

    return value


#: How the rank and the Elo column are read (the method itself is in the board's notes).
RANK_NOTE = (
    "Rank = upper bound (1 + models whose interval lies wholly above). Elo is the online "
    "rating in vote order."
)


def ratings_note(settings) -> str:
    """How the released snapshot's numbers are made (plain BT, ties split, bootstrap)."""
    return f"Ratings: {BoardOptions().describe(settings.bootstrap_rounds)} {RANK_NOTE}"


def compare_text(service, a, b, *values, flips: bool = True) -> str:
    """The comparison of two models under the current filters and rating method (the
    values of :func:`board_outputs` after the service), for the page."""
    if not a or not b:
        return "Pick two models."
    summary, result = _board(service, *values, flips=flips)
    if result is None or result.ratings is None:
        return summary
    try:
        sep = separation(result.ratings, a, b)
    except ValueError as exc:  # LeaderboardError among them
        return str(exc)
    interval = (
        f" (95% {result.options.ci} interval {sep['lower']:+.0f} to {sep['upper']:+.0f})"
        if np.isfinite(sep["lower"])
        else ""
    )
    more = sep["more_votes"]
    verdict = (
        "their interval already excludes a tie"
        if more == 0
        else "they are tied: no number of votes separates a dead heat"
        if not np.isfinite(more)
        else f"about **{int(more):,}** more votes between them would separate them at 95%"
    )
    return (
        f"**{a}** − **{b}**: {sep['difference']:+.0f} Elo{interval}, "
        f"{sep['votes_between']:,} votes between them; {verdict}."
    )


def public_board_outputs(views, parts: tuple[int, ...] = (0, 1, 2, 3)) -> tuple:
    """(summary, table, ratings figure, heatmap figure) of the released snapshot
    (:mod:`arena.reports.public_view`): what raters see with the reveal off. ``parts`` picks
    some of them (a page load draws each figure once)."""
    release, result = views.board()
    step = release.step
    if result is None or result.frame.empty:
        refusal = (
            f"The leaderboard appears once **{step}** votes are in. It is released in steps "
            f"of {step} votes, so that no view of it can be traced to a single vote."
        )
        return tuple((refusal, display_table(pd.DataFrame()), None, None)[k] for k in parts)
    # The fit's extras stay with the operators: how few votes swap a rank would tell a
    # rater bent on moving one where to aim.
    frame = result.frame.drop(columns=list(METHOD_COLUMNS), errors="ignore")

    def part(k: int):
        if k == 1:
            return display_table(frame)
        if k == 2:
            return ratings_figure(frame)
        if k == 3:
            return heatmap_figure(frame, result.ratings)
        summary = (
            f"**{release.votes}** votes · {model_counts(frame, views.settings)} The board is "
            f"released in steps of {step} votes and is the same for every rater between two "
            f"releases; the model names stay hidden in the Vote tab, and filters, Compare and "
            f"the Agreement analysis are for the arena's operators. {ratings_note(views.settings)}"
        )
        if result.model_level_note:
            summary += "\n\n" + result.model_level_note
        return summary

    return tuple(part(k) for k in parts)


def board_components(initial):
    """The board's four outputs (summary, table, ratings plot, heatmap); ``initial(k)``
    gives the value of the k-th."""
    summary = gr.Markdown(initial(0))
    table = gr.Dataframe(
        initial(1), interactive=False, label="Leaderboard", wrap=True, elem_id="lb-table"
    )
    with gr.Row():
        ratings_plot = gr.Plot(
            initial(2),
            label="Ratings with 95% intervals",
            show_label=False,
            elem_id="lb-ratings-plot",
        )
        heatmap = gr.Plot(
            initial(3), label="Win-rate matrix", show_label=False, elem_id="lb-heatmap"
        )
    return summary, table, ratings_plot, heatmap


def render_public(store):
    """The whole-arena board over the released snapshot: no filter, no Compare; returns
    its refresh (fn, inputs, outputs) for when the tab is opened."""
    from arena.reports.public_view import public_views

    views = public_views(store)

    def initial(k: int):
        return lambda: public_board_outputs(views, (k,))[0]

    summary, table, ratings_plot, heatmap = board_components(initial)
    refresh = gr.Button("Refresh", size="sm")
    outputs = [summary, table, ratings_plot, heatmap]

    def update():
        return public_board_outputs(views)

    refresh.click(update, outputs=outputs, api_visibility="private")
    return update, [], outputs


def render(store, full: bool | None = None):
    """The tab; ``full`` (default: the reveal is on) adds the filters and Compare, and
    ``full=True`` (the Admin app) the rating method row. Returns its refresh (fn, inputs,
    outputs) for when the tab is opened.

    With the reveal off the raters' app gets :func:`render_public` (a released snapshot,
    see :mod:`arena.reports.public_view`; no filter, no method: nothing a visitor picks
    runs a fit). With the reveal on raters get the filters but not the method row: a style
    bootstrap on a million votes is a minute of CPU, not something a visitor may start.
    """
    from arena.reports.style import available_features

    if not (store.settings.reveal_models if full is None else full):
        return render_public(store)
    service = LeaderboardService.of(store)
    options = service.options()
    filters, refresh = filter_row(options, held_out=bool(full))
    if full:  # the Admin app: an operator picks the method
        ties, ci, style, reweight = methods.method_row(available_features(store.scores_frame()))
    else:  # raters (reveal on) get the default method: no visitor starts a costly fit
        ties, ci, style, reweight = (gr.State(None) for _ in range(4))

    # Callable values are evaluated on every page load (with no filter); the service
    # cache makes the six calls one computation, and each draws only its own part.
    def initial(k: int):
        return _initial(service, k, flips=bool(full))

    summary, table, ratings_plot, heatmap = board_components(initial)
    style_table, flips_table = methods.method_components(lambda k: initial(4 + k))
    inputs = [*filters, ties, ci, style, reweight]
    outputs = [summary, table, ratings_plot, heatmap, style_table, flips_table]
    if full:  # the Admin app: reviewers' failure rates (never on the raters' app)
        from arena.ui import failure_section

        outputs += failure_section.leaderboard_components()

    with gr.Row():
        names = store.model_names()
        model_a = gr.Dropdown(names, label="Compare model", allow_custom_value=True)
        model_b = gr.Dropdown(names, label="with model", allow_custom_value=True)
        compare = gr.Button("Compare", size="sm")
    comparison = gr.Markdown()
    compare.click(
        lambda a, b, *values: compare_text(service, a, b, *values, flips=bool(full)),
        [model_a, model_b, *inputs],
        comparison,
        api_visibility="private",
    )

    def update(*values):
        shown = tab_outputs(service, *values, flips=bool(full))
        if full:
            prompts = values[: len(PROMPT_FIELDS)]
            shown = (*shown, *failure_section.leaderboard_outputs(store, *prompts))
        return shown

    gr.on(
        triggers=[
            *change_triggers(filters),
            *((ties.change, ci.change, style.change, reweight.change) if full else ()),
            refresh.click,
        ],
        fn=update,
        inputs=inputs,
        outputs=outputs,
        api_visibility="private",
    )
    return update, inputs, outputs
