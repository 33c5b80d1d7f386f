"""The evaluator's analyses in ``report.html``: the common set, tag accuracy by the number
and position of prompt tags, seeds and spread, metric × metric agreement.

From :class:`arena.reports.analyses.Analyses` (what the export computed); tables and inline
figures only, like the rest of the page (:mod:`arena.reports.report_page`).
"""

from __future__ import annotations

import html

from arena.reports import analysis_plots
from arena.reports.analyses import Analyses
from arena.reports.html_parts import html_table, img
from arena.stats.seeds import MIN_SEEDS


def paired_paragraph(analyses: Analyses) -> str:
    """The sentence on the common set, as the leaderboard's note says it (HTML; the model
    names in it escaped)."""
    common = html.escape(analyses.common.describe())
    if analyses.paired:
        return f"Metric means, tag accuracy and seed means are over the common set: {common}."
    return (
        "Metric means, tag accuracy and seed means are over every non-broken image of each "
        f"model (<code>paired_metrics</code> off); the common set would be {common}."
    )


def seeds_warning(analyses: Analyses) -> str:
    """A warning naming the metrics whose spread rests on fewer than MIN_SEEDS seeds."""
    spread = analyses.seed_spread
    if spread.empty or not spread["few_seeds"].any():
        return ""
    fewest = int(spread["n_seeds"].min())
    return (
        f"Fewer than {MIN_SEEDS} seeds (as few as {fewest}): the spread across seeds is "
        "barely estimated (with one seed not at all); generate more seeds per prompt "
        "(<code>arena generate --seeds 3</code> or more) before reading it."
    )


def analyses_section(analyses: Analyses | None) -> list[str]:
    """The four sections' HTML parts (nothing without analyses)."""
    if analyses is None:
        return []
    warning = seeds_warning(analyses)
    info = analyses.info
    tag_note = (
        f"From the per-tag details of the tags metric (version "
        f"<code>{html.escape(str(info.get('tag_version')))}</code>, "
        f"{info.get('tag_images', 0)} images)."
        if info.get("tag_version")
        else "No per-tag details: score the images with <code>arena score --metrics tags</code>."
    )
    return [
        "<h2>Paired comparison: the common set</h2>",
        f"<p class='note'>{paired_paragraph(analyses)}"
        " A cell is a (prompt, seed); it is common when every compared model has a non-broken "
        "image of it, so a broken (or missing) image also removes its counterparts. Per "
        "model: its non-broken <code>images</code>, those <code>kept</code>, those "
        "<code>left_out</code>, its <code>broken</code> images and the cells where it has "
        "no image (<code>missing_cells</code>; <code>common_set</code>).</p>",
        html_table(analyses.common_table(), 0),
        "<h2>Tag accuracy by number and position of tags</h2>",
        f"<p class='note'>{tag_note} By number: the mean tag accuracy (found / countable) of "
        "the images whose prompt has that many tags (all parsed tags, quality words "
        "included). By position: the share of the tags at that position (0 = first) the "
        "tagger found. <code>all</code>: over everything (by number: the leaderboard's "
        "<code>tags</code> mean over the same images). 95% intervals: bootstrap over "
        "prompts (<code>tag_accuracy_by_count</code>, <code>tag_accuracy_by_position</code>; "
        "one row per image and tag: <code>tag_hits</code>).</p>",
        img(analysis_plots.tag_accuracy_figure(analyses.tag_by_count, "count"), "by tag count"),
        img(
            analysis_plots.tag_accuracy_figure(analyses.tag_by_position, "position"),
            "by tag position",
        ),
        html_table(analyses.tag_by_count, 3),
        html_table(analyses.tag_by_position, 3),
        "<h2>Seeds and spread</h2>",
        "<p class='note'>Per model and metric: the mean of each seed index's mean (the k-th "
        "seed of every prompt), their standard deviation across seeds (<code>std</code>), "
        "the number of seeds and the smallest and largest per-seed mean. A gap between two "
        "models smaller than this spread could be the seeds' (<code>seed_spread</code>; per "
        "seed: <code>seed_means</code>).</p>",
        f"<p class='note'><strong>{warning}</strong></p>" if warning else "",
        html_table(analyses.seed_spread, 4),
        "<h2>Metric × metric agreement</h2>",
        "<p class='note'>Spearman ρ between every two metrics, oriented so that &gt; 0 means "
        "they agree on what is better: over images (every non-broken image, not only the "
        "common set: each pair over the images both metrics scored) "
        "and over models (per-model means and model-level numbers; <code>p_value</code>: "
        "permutation across the models). Near 1: one metric measures what the other does; "
        "near 0: they measure different things (<code>metric_correlation</code>).</p>",
        img(analysis_plots.correlation_figure(analyses.metric_correlation, "image"), "ρ images"),
        img(analysis_plots.correlation_figure(analyses.metric_correlation, "model"), "ρ models"),
        html_table(analyses.metric_correlation, 3),
    ]
