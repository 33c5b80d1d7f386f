"""``report.html``: the export's tables and figures as one self-contained page.

Built from frames the export already computed (:mod:`arena.reports.export`): tables
as HTML, figures (:mod:`arena.reports.plots`) as base64 PNGs; no scripts, no links out,
so it opens offline and shows the same numbers as the exported files.
"""

from __future__ import annotations

import html

import pandas as pd

from arena.reports import failures as fl
from arena.reports import plots
from arena.reports.analyses import Analyses
from arena.reports.analyses_page import analyses_section
from arena.reports.html_parts import html_table
from arena.reports.html_parts import img as _img
from arena.reports.leaderboard import LeaderboardResult, direction_note
from arena.reports.stand_in import stand_in_label, stand_in_warning
from arena.stats.agreement import PROTOCOLS, AgreementReport
from arena.stats.agreement.correlations import MIN_MODELS_FOR_INTERVAL
from arena.stats.agreement.groups import GroupComparison
from arena.stats.agreement.report import SLICE_KINDS

REPORT_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table.t{border-collapse:collapse;font-size:.85em;margin:.5em 0}
table.t th,table.t td{padding:.25em .6em;border-bottom:1px solid #e4e4e4;text-align:right}
table.t th{background:#f3f3f3}table.t td:first-child,table.t th:first-child{text-align:left}
img{max-width:100%}p.note{color:#555;font-size:.9em}code{background:#f3f3f3;padding:0 .2em}
"""


def report_html(
    leaderboard: pd.DataFrame,
    report: AgreementReport,
    summary: dict,
    files: list[str],
    model_metrics: pd.DataFrame | None = None,
    board: LeaderboardResult | None = None,
    groups: GroupComparison | None = None,
    failures: dict[str, pd.DataFrame] | None = None,
    analyses: Analyses | None = None,
) -> str:
    """A self-contained HTML report: tables and base64 PNG figures, no scripts, no links out.

    ``board`` (the leaderboard's result) adds its method notes (the tie model's ν with
    Davidson ties), the style coefficients and the votes that hold each rank; ``groups``
    the comparison of the rater groups; ``failures`` (the export's ``failure_rates``,
    ``failure_correlation`` and ``image_flags`` tables) the reviewers' failure rates;
    ``analyses`` the common set, tag accuracy, seeds and metric × metric agreement
    (:mod:`arena.reports.analyses_page`)."""
    acc = report.accuracy
    metrics = list(report.info.get("metrics", []))
    protocol_list = "".join(
        f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in PROTOCOLS.items()
    )
    boards = report.leaderboards
    side_by_side = (
        boards.pivot(index="model", columns="decider", values="rating").reset_index()
        if len(boards)
        else boards
    )
    slice_figs = "".join(
        _img(plots.slices_figure(report.slices, kind=kind), f"accuracy by {kind}")
        for kind in SLICE_KINDS
        if (report.slices["slice_kind"] == kind).any()
    )
    facts = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in summary.items()
    )
    file_list = "".join(f"<li><code>{html.escape(f)}</code></li>" for f in files)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>t2i-arena report</title>",
        f"<style>{REPORT_CSS}</style></head><body>",
        "<h1>t2i-arena report</h1>",
        f"<table class='t'>{facts}</table>",
        "<h2>Leaderboard</h2>",
        "<p class='note'>Rank is the rank upper bound. A model with "
        "<code>identified</code> false never won or never lost against the others: the votes "
        "determine no finite rating for it, so it has none and is not ranked.</p>",
        html_table(leaderboard, 3),
        *_board_notes(board),
        _img(plots.ratings_figure(leaderboard), "ratings with intervals"),
        *_board_tables(board),
        *_model_metrics_section(model_metrics),
        "<h2>Which metric agrees with the raters</h2>",
        f"<p class='note'>Pairwise accuracy of each metric. Protocols:</p><ul>{protocol_list}</ul>",
        "<p class='note'><code>ci_low</code>/<code>ci_high</code>: bootstrap over prompts "
        "(the default interval); <code>wilson_*</code>: Wilson interval treating votes as "
        "independent. The human ceiling is how often one rater agrees with the majority of "
        "the other raters of the same image pair. <code>chance</code>: what a metric blind to "
        "the images expects under the protocol (0.5 for a and b; for c, with human ties "
        "among the outcomes, the better of always predicting a tie and always a side: "
        "max(tie share, (1 − tie share)/2)); read each accuracy against it.</p>",
        html_table(acc, 3),
        _img(plots.accuracy_figure(acc), "accuracy by metric and protocol"),
        "<h2>Model level</h2>",
        "<p class='note'>Spearman and Kendall correlation between the human ratings and each "
        "metric's per-model mean (<code>level</code> = image mean) or model-level number "
        "(<code>level</code> = model: KID, FID, CMMD, FD-DINO, diversity, AS, oriented so that "
        "&gt; 0 means agreement, e.g. lower FID for a higher rating; their intervals bootstrap "
        "the human side only); <code>spearman_bt</code> compares with the metric's own "
        "Bradley-Terry leaderboard (the same battles decided by the metric). "
        "<code>spearman_p</code>, <code>kendall_p</code>: exact permutation p-values across "
        "the models (two-sided; 9,999 random pairings above 8 models). "
        "<code>few_models</code>: fewer than 6 models, so no bootstrap interval is given "
        "(the prompt bootstrap holds the models fixed; read the p-value).</p>",
        html_table(report.correlations, 3),
        _img(
            plots.scatter_figure(
                report.models,
                [*metrics, *report.info.get("model_metrics", [])],
                stand_in_label(_extractors(model_metrics)),
            ),
            "human rating vs metric per model",
        ),
        "<h3>Leaderboards side by side (ratings)</h3>",
        "<p class='note'>– : no rating; that decider never (or always) preferred the model, "
        "so its rating is not identified (<code>identified</code> in "
        "<code>agreement_leaderboards</code>).</p>",
        html_table(side_by_side, 1),
        "<h2>Where metrics fail: slices</h2>",
        f"<p class='note'>Protocol <code>{html.escape(str(report.info.get('slice_protocol')))}"
        "</code>. <code>prompts</code>: distinct prompts in the slice; <code>few_prompts</code>: "
        "fewer than 20, too few clusters for the prompt bootstrap, so its interval (marked * in "
        "the figures) is not to be trusted; compare the Wilson interval, which is too narrow "
        "when votes on a prompt agree.</p>",
        slice_figs or "<p><em>Nothing yet.</em></p>",
        html_table(report.slices, 3),
        "<h2>Position bias</h2>",
        "<p class='note'>Share of decisive votes won by the left image, exact binomial test "
        "against 1/2.</p>",
        html_table(report.position_bias, 4),
        "<h2>Inter-rater reliability</h2>",
        "<p class='note'>Krippendorff's α (nominal) over image pairs with several raters.</p>",
        html_table(report.reliability, 3),
        *_groups_section(groups),
        *_judges_section(report),
        *_failures_section(failures, report),
        *analyses_section(analyses),
        f"<h2>Files</h2><ul>{file_list}</ul>",
        "<p class='note'>Column definitions: docs/exports.md.</p>",
        "</body></html>\n",
    ]
    return "\n".join(parts)


JUDGES_NOTE = (
    "Each machine judge (rater kind <code>judge</code>, <code>arena judge</code>) read against "
    "the people; its votes are in none of the tables above. <code>agreement</code>: how often "
    "its answer is the side most people chose on the same image pair (pairs with two or more "
    "decisive human votes; its two orders averaged per pair), beside <code>ceiling</code>: how "
    "often a person agrees with the majority of the other people on those same pairs. A judge "
    "whose <code>difference</code> interval lies below 0 (<code>versus_ceiling</code> below) "
    "disagrees with people more than people disagree with each other. "
    "<code>alpha_without</code>/<code>alpha_with</code>: Krippendorff's α of the people on the "
    "pairs the judge answered, without and with the judge as one more rater. Intervals: "
    "bootstrap over prompts (<code>ci_*</code>, <code>*_low</code>/<code>*_high</code>) and "
    "Wilson (<code>wilson_*</code>)."
)


def _judges_section(report: AgreementReport) -> list[str]:
    """The judges as raters and deciders, and their position consistency; a note without."""
    judges = report.judges
    if judges.empty:
        return [
            "<h2>Judges</h2>",
            "<p class='note'>No machine judge voted on these prompts and dates "
            "(<code>arena judge</code> adds one).</p>",
        ]
    return [
        "<h2>Judges</h2>",
        f"<p class='note'>{JUDGES_NOTE}</p>",
        "<h3>As raters: agreement with the human majority and the ceiling</h3>",
        html_table(judges.agreement, 3),
        "<h3>As deciders: their own leaderboards against the human board</h3>",
        "<p class='note'>Each judge's Bradley-Terry board over the battles it judged (ties "
        "split), and Spearman ρ / Kendall τ-b against the human board on the same models, "
        "with permutation p-values (<code>few_models</code>: fewer than 6 models, no "
        "interval).</p>",
        html_table(judges.correlations, 3),
        html_table(judges.leaderboard, 1),
        "<h3>Position consistency</h3>",
        "<p class='note'><code>consistency</code>: pairs answered in both orders whose two "
        "answers agree once the swapped order is mapped back (Wilson interval); "
        "<code>left_both</code>/<code>right_both</code>: pairs where the judge chose the same "
        "screen side both times; <code>left_win_rate</code>: its decisive answers for the left "
        "image (exact binomial test against ½).</p>",
        html_table(judges.consistency, 3),
    ]


def _board_notes(board: LeaderboardResult | None) -> list[str]:
    """The leaderboard's method sentences (model, intervals, ν, style fit, warnings)."""
    if board is None:
        return []
    notes = [*board.notes, *([board.paired_note] if board.paired_note else [])]
    return [f"<p class='note board-note'>{html.escape(note)}</p>" for note in notes]


def _board_tables(board: LeaderboardResult | None) -> list[str]:
    """Style coefficients (with style control) and the votes that hold each rank (with
    flip counts), each under its own heading; nothing for an option that is off."""
    if board is None or board.ratings is None:
        return []
    parts = []
    if board.options.style:
        parts += [
            "<h3>Style coefficients</h3>",
            "<p class='note'>Elo points per standard deviation (<code>sd</code>) of each "
            "feature's left-minus-right difference, with its 95% interval; positive: the "
            "side with more of it wins more often. The board's <code>rating</code> is "
            "controlled for these features, <code>uncontrolled</code> is the plain fit "
            "(<code>leaderboard_style</code>).</p>",
            html_table(board.style, 2),
        ]
    if board.options.flips:
        parts += [
            "<h3>Votes that hold each rank</h3>",
            "<p class='note'>The fewest votes whose removal (and a refit) swaps each pair of "
            "neighbouring ranked models, and the top model with any other; "
            "<code>method</code> exact is the minimum, influence, verified an upper bound "
            "that a refit confirms (<code>leaderboard_flips</code>)."
            + (
                " Counted on the plain Bradley-Terry order (without style control or "
                "reweighting; with Davidson's model, ties split), which can differ from the "
                "board's."
                if not board.options.plain_order
                else ""
            )
            + "</p>",
            html_table(board.flips, 4),
        ]
    return parts


def _extractors(model_metrics: pd.DataFrame | None) -> list:
    """The feature keys of the exported model-level table (its ``extractor`` column)."""
    return [] if model_metrics is None else list(model_metrics.get("extractor", []))


def _model_metrics_section(model_metrics: pd.DataFrame | None) -> list[str]:
    if model_metrics is None or model_metrics.empty:
        return []
    warning = stand_in_warning(_extractors(model_metrics))
    warning = f"<p class='note'><strong>{html.escape(warning)}</strong></p>" if warning else ""
    return [
        "<h2>Model-level metrics</h2>",
        "<p class='note'>One number per model over its images (the common set of the run "
        "unless computed with <code>--all-images</code>: <code>details</code>), or over one "
        "prompt category or set (<code>slice</code>, from <code>arena distribution --by</code>), "
        "against the reference set "
        f"(KID: mean ± std over subsets); {html.escape(direction_note(model_metrics))}. "
        "<code>extractor</code> is the feature network the number was computed from; "
        "<code>warning</code> flags small samples and image sizes that differ from the "
        "reference set's.</p>",
        warning,
        html_table(model_metrics, 4),
    ]


def _groups_section(groups: GroupComparison | None) -> list[str]:
    """Expert vs crowd: each group's board, their rank correlation, cross-group agreement."""
    if groups is None:
        return []
    head = [
        "<h2>Rater groups</h2>",
        "<p class='note'>The votes of each rater group (<code>(no group)</code>: raters in "
        "none) on their own. <code>within</code>: how often a rater's vote agrees with the "
        "majority of the rest of its group on the same image pair (the human ceiling within "
        "the group, all its pairs).</p>",
        html_table(groups.summary, 3),
    ]
    if len(groups.groups) < 2:
        return [*head, "<p><em>Fewer than two groups have votes: nothing to compare.</em></p>"]
    wide = groups.boards.pivot(index="model", columns="group", values="rating")
    return [
        *head,
        "<h3>Each group's leaderboard</h3>",
        "<p class='note'>Bradley-Terry ratings (Elo scale, ties split) fitted on each group's "
        "votes alone, 95% intervals from the bootstrap over prompts "
        "(<code>group_leaderboards</code>; side by side below).</p>",
        html_table(wide[groups.groups].reset_index(), 1),
        "<h3>Rank correlation between the groups</h3>",
        "<p class='note'>Spearman ρ and Kendall τ-b of two groups' ratings over the models "
        "both boards rate; intervals from the same prompt bootstrap, every board refitted in "
        "each round; <code>_p</code>: permutation p-value across the models; "
        f"<code>few_models</code>: fewer than {MIN_MODELS_FOR_INTERVAL}, no interval.</p>",
        html_table(groups.correlation, 3),
        "<h3>Cross-group agreement on shared image pairs</h3>",
        "<p class='note'>On the image pairs both groups voted on decisively "
        "(<code>shared_pairs</code>): how often a vote of <code>votes_of</code> agrees with "
        "the majority of <code>majority_of</code> (an even split counts ½); where the two "
        "are the same group, with the majority of the rest of that group on those pairs. "
        "One vote per rater and pair (the latest); intervals: bootstrap over prompts.</p>",
        html_table(groups.agreement, 3),
    ]


def _failures_section(failures: dict | None, report: AgreementReport) -> list[str]:
    """Failure rates per model from reviewers' flags, both sources, and their correlation
    with the human rating (:mod:`arena.reports.failures`)."""
    if failures is None:
        return []
    rates, flags = failures["failure_rates"], failures["image_flags"]
    head = [
        "<h2>Failure flags</h2>",
        f"<p class='note'>{html.escape(fl.RATES_NOTE.replace('**', ''))} Every cell: rate "
        "[Wilson 95% interval] (flagged/reviewed images) (<code>failure_rates</code>).</p>",
    ]
    if flags.empty:
        return [*head, "<p><em>No image reviewed yet (Admin app, tab Review).</em></p>"]
    return [
        *head,
        html_table(fl.summary_display(rates)),
        "<h3>By failure mode</h3>",
        html_table(fl.modes_display(rates)),
        "<h3>Failure rate vs human rating</h3>",
        "<p class='note'>Spearman ρ and Kendall τ-b across the models between the failure "
        "rate and the human Bradley-Terry rating (negative: the models raters prefer fail "
        "less), with permutation p-values (<code>failure_correlation</code>).</p>",
        html_table(fl.correlation_display(failures["failure_correlation"])),
        _img(fl.rate_vs_rating_figure(rates, report.models), "failure rate vs human rating"),
    ]
