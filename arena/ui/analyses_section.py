"""The Agreement tab's analyses section (Admin app): the common set, tag accuracy by the
number and position of prompt tags, seeds and spread, metric × metric agreement.

Numbers come from :class:`arena.reports.analyses.AnalysesService` (the tab's filters,
cached until the data change; the statistics are pure functions in ``arena/stats``);
figures from :mod:`arena.reports.analysis_plots`. This module only formats them. Like the
rater-group section it is mounted in the Admin app only: it is the evaluator's tool, and
the raters' app carries nothing it does not need.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from arena.reports import analysis_plots
from arena.reports.analyses import AnalysesService
from arena.reports.analyses_page import seeds_warning
from arena.stats.seeds import MIN_SEEDS
from arena.ui.cells import missing, number
from arena.ui.filter_row import filters_of

INTRO = (
    "### Paired comparison, tags, seeds, metric × metric\n"
    "What evaluators used to compute by hand, under the filters above: the common set the "
    "metric means are paired on, tag accuracy against the number and the position of the "
    "prompt's tags, each model's mean per seed with the spread across seeds, and how alike "
    "the metrics rank the images and the models."
)


def common_display(table: pd.DataFrame) -> pd.DataFrame:
    """Per model: its usable images, those kept in the common set, left out, broken, and
    the cells where it has no image."""
    columns = ["Model", "Images", "Kept", "Left out", "Broken", "Missing cells"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "Model": table["model"],
            "Images": table["images"],
            "Kept": table["kept"],
            "Left out": table["left_out"],
            "Broken": table["broken"],
            "Missing cells": table["missing_cells"],
        }
    )


def tags_display(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """Model × bin: accuracy [95% interval] (images), bins in the table's order."""
    if table.empty:
        return pd.DataFrame(columns=["Model"])
    bins = list(dict.fromkeys(table["bin"]))
    bins = [b for b in bins if b != "all"] + ["all"]
    out = pd.DataFrame({"Model": sorted(table["model"].unique())})
    rows = table.set_index(["model", "bin"])
    for b in bins:
        cells = []
        for m in out["Model"]:
            if (m, b) not in rows.index:
                cells.append("–")
                continue
            r = rows.loc[(m, b)]
            count = f"{int(r['tags'])} tags" if label == "position" else f"{int(r['images'])} img"
            cells.append(
                f"{number(r['accuracy'], 2)} [{number(r['ci_low'], 2)}, {number(r['ci_high'], 2)}] "
                f"({count})"
            )
        out[b if b == "all" else f"{label} {b}"] = cells
    return out


def seeds_display(spread: pd.DataFrame) -> pd.DataFrame:
    """Model × metric: mean ± std over the per-seed means (n seeds), ⚠ below MIN_SEEDS."""
    if spread.empty:
        return pd.DataFrame(columns=["Model"])
    out = pd.DataFrame({"Model": sorted(spread["model"].unique())})
    rows = spread.set_index(["model", "metric"])
    for metric in sorted(spread["metric"].unique()):
        cells = []
        for m in out["Model"]:
            if (m, metric) not in rows.index:
                cells.append("–")
                continue
            r = rows.loc[(m, metric)]
            flag = " ⚠" if bool(r["few_seeds"]) else ""
            cells.append(
                f"{number(r['mean'], 3)} ± {number(r['std'], 3)} ({int(r['n_seeds'])} seeds){flag}"
            )
        out[metric] = cells
    return out


def correlation_display(table: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of metrics and level: ρ, the rows it is over, the p-value."""
    columns = ["Level", "Metric", "Metric ", "Spearman ρ", "Over", "p (permutation)"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame(
        {
            "Level": table["level"],
            "Metric": table["metric_a"],
            "Metric ": table["metric_b"],
            "Spearman ρ": [number(v, 2) for v in table["spearman"]],
            "Over": [f"{n} {lv}s" for n, lv in zip(table["n"], table["level"], strict=True)],
            "p (permutation)": ["–" if missing(p) else f"{p:.2g}" for p in table["p_value"]],
        }
    )


def note_markdown(analyses, seconds: float) -> str:
    common = analyses.common
    if not common.models:
        return f"{INTRO}\n\nNo images under this filter."
    paired = (
        f"Metric means, tag accuracy and seed means are **paired**: over {common.describe()}."
        if analyses.paired
        else "Metric means, tag accuracy and seed means are over every non-broken image of "
        f"each model (`paired_metrics` off); the common set would be {common.describe()}."
    )
    warning = seeds_warning(analyses).replace("<code>", "`").replace("</code>", "`")
    text = (
        f"{INTRO}\n\n{paired}\n\nTag accuracy: 95% intervals from the bootstrap over prompts "
        f"({analyses.info['rounds']} rounds); by number, the mean accuracy of the images whose "
        "prompt has that many tags; by position (0 = first tag), the share of the tags found. "
        f"Seeds: mean ± standard deviation of the per-seed means (⚠: fewer than {MIN_SEEDS} "
        "seeds). Metric × metric: Spearman ρ, oriented so that > 0 means the two agree on "
        f"what is better. Computed in {seconds:.1f}s."
    )
    return f"{text}\n\n**⚠ {warning}**" if warning else text


def analyses_outputs(service: AnalysesService, *values, **given):
    """(note, common set, tags by count figure, table, by position figure, table, seeds,
    ρ over images figure, ρ over models figure, ρ table) for the filter row's values."""
    try:
        result = service.get(filters_of(*values, **given))
    except ValueError as exc:  # a filter's (ReportError)
        empty = pd.DataFrame()
        return (
            f"{INTRO}\n\n**Cannot compute the analyses:** {exc}",
            common_display(empty),
            None,
            tags_display(empty, "tags"),
            None,
            tags_display(empty, "position"),
            seeds_display(empty),
            None,
            None,
            correlation_display(empty),
        )
    a = result.analyses
    return (
        note_markdown(a, result.seconds),
        common_display(a.common_table()),
        analysis_plots.tag_accuracy_figure(a.tag_by_count, "count"),
        tags_display(a.tag_by_count, "tags"),
        analysis_plots.tag_accuracy_figure(a.tag_by_position, "position"),
        tags_display(a.tag_by_position, "position"),
        seeds_display(a.seed_spread),
        analysis_plots.correlation_figure(a.metric_correlation, "image"),
        analysis_plots.correlation_figure(a.metric_correlation, "model"),
        correlation_display(a.metric_correlation),
    )


def render() -> list:
    """The section's components, in the order of :func:`analyses_outputs`."""
    note = gr.Markdown(INTRO)
    common = gr.Dataframe(interactive=False, label="Common set per model", wrap=True)
    by_count_plot = gr.Plot(label="Tag accuracy by number of prompt tags")
    by_count = gr.Dataframe(interactive=False, label="Tag accuracy by number of tags", wrap=True)
    by_position_plot = gr.Plot(label="Tag accuracy by position of the tag")
    by_position = gr.Dataframe(
        interactive=False, label="Tag accuracy by position of the tag", wrap=True
    )
    seeds = gr.Dataframe(interactive=False, label="Seeds: mean ± std across seeds", wrap=True)
    with gr.Row():
        images_plot = gr.Plot(label="Metric × metric over images")
        models_plot = gr.Plot(label="Metric × metric over models")
    correlation = gr.Dataframe(interactive=False, label="Metric × metric Spearman ρ", wrap=True)
    return [
        note,
        common,
        by_count_plot,
        by_count,
        by_position_plot,
        by_position,
        seeds,
        images_plot,
        models_plot,
        correlation,
    ]
