"""The Agreement tab's rater-group section (Admin app): expert vs crowd, or any groups.

Numbers come from :meth:`arena.reports.agreement.AgreementService.groups` (the tab's
filters, cached until the votes or the groups change; the statistics are
:mod:`arena.stats.agreement.groups`); this module only formats them. The raters' app never
shows it: who is in which group is the operator's business.
"""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from arena.reports.agreement import AgreementService
from arena.stats.agreement.correlations import MIN_MODELS_FOR_INTERVAL
from arena.ui.cells import number, percent
from arena.ui.filter_row import filters_of

INTRO = (
    "### Rater groups\n"
    "The raters of each group (the **Raters** tab sets them; votes of raters in no group "
    "form *(no group)*) compared under the filters above: each group's own leaderboard, "
    "how alike two groups order the models, and how often a vote of one group agrees "
    "with the majority of the other on the image pairs both voted on, next to the "
    "group's agreement with itself there."
)


def _interval(low, high, pct: bool = False) -> str:
    if pct:
        return f"{percent(low)} – {percent(high)}"
    return f"{number(low, 2)} – {number(high, 2)}"


def summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per group: who voted, and a held-out vote against the rest of its group."""
    columns = ["Group", "Raters", "Votes", "Prompts", "Models", "Agrees with own group"]
    if summary.empty:
        return pd.DataFrame(columns=[*columns, "95% CI (prompts)", "Votes counted"])
    return pd.DataFrame(
        {
            "Group": summary["group"],
            "Raters": summary["raters"],
            "Votes": summary["votes"],
            "Prompts": summary["prompts"],
            "Models": summary["models"],
            "Agrees with own group": [percent(v) for v in summary["within"]],
            "95% CI (prompts)": [
                _interval(lo, hi, pct=True)
                for lo, hi in zip(summary["within_low"], summary["within_high"], strict=True)
            ],
            "Votes counted": summary["within_votes"],
        }
    )


def boards_display(boards: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    """Model × group: rating (#rank) with its interval, and the group's votes on the model;
    sorted by the first group's rating."""
    if boards.empty:
        return pd.DataFrame(columns=["Model"])
    rating = boards.pivot(index="model", columns="group", values="rating")
    first = groups[0]
    models = rating.sort_values(first, ascending=False, kind="stable").index
    out = pd.DataFrame({"Model": models})
    for g in groups:
        rows = boards[boards["group"] == g].set_index("model")
        cells, votes = [], []
        for m in models:
            if m not in rows.index:
                cells.append("no votes")
                votes.append(0)
                continue
            r = rows.loc[m]
            votes.append(int(r["votes"]))
            if not bool(r["identified"]):
                cells.append("no rating (never won or never lost)")
            else:
                cells.append(
                    f"{r['rating']:.0f} (#{int(r['rank'])}) "
                    f"[{r['rating_low']:.0f}, {r['rating_high']:.0f}]"
                )
        out[g] = cells
        out[f"{g}: votes"] = votes
    return out


def _pair_names(frame: pd.DataFrame) -> list[str]:
    return [f"{a} vs {b}" for a, b in zip(frame["group_a"], frame["group_b"], strict=True)]


def _corr_cell(value, low, high, p, few) -> str:
    text = number(value, 2)
    if not few and not (isinstance(low, float) and math.isnan(low)):
        text += f" [{number(low, 2)}, {number(high, 2)}]"
    if not (isinstance(p, float) and math.isnan(p)):
        text += f" (p = {p:.2g})"
    return text


def correlation_display(corr: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of groups: Spearman ρ and Kendall τ-b of their boards."""
    columns = ["Groups", "Models", "Spearman ρ", "Kendall τ"]
    if corr.empty:
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame(
        {
            "Groups": _pair_names(corr),
            "Models": corr["n_models"],
        }
    )
    for key, label in (("spearman", "Spearman ρ"), ("kendall", "Kendall τ")):
        columns_of = (
            corr[key],
            corr[f"{key}_low"],
            corr[f"{key}_high"],
            corr[f"{key}_p"],
            corr["few_models"],
        )
        out[label] = [_corr_cell(*row) for row in zip(*columns_of, strict=True)]
    return out


def agreement_display(agreement: pd.DataFrame) -> pd.DataFrame:
    """Per pair of groups, on their shared image pairs: each group's votes against the
    other's majority, and against the rest of its own group."""
    columns = ["Groups", "Votes of", "Against the majority of", "Agreement", "95% CI (prompts)"]
    if agreement.empty:
        return pd.DataFrame(columns=[*columns, "Votes", "Pairs", "Shared pairs"])
    own = agreement["votes_of"] == agreement["majority_of"]
    return pd.DataFrame(
        {
            "Groups": _pair_names(agreement),
            "Votes of": agreement["votes_of"],
            "Against the majority of": [
                f"{m} (the rest of it)" if o else m
                for m, o in zip(agreement["majority_of"], own, strict=True)
            ],
            "Agreement": [percent(v) for v in agreement["agreement"]],
            "95% CI (prompts)": [
                _interval(lo, hi, pct=True)
                for lo, hi in zip(agreement["ci_low"], agreement["ci_high"], strict=True)
            ],
            "Votes": agreement["votes"],
            "Pairs": agreement["pairs"],
            "Shared pairs": agreement["shared_pairs"],
        }
    )


def note_markdown(comparison, votes_used: int, seconds: float) -> str:
    """What the section compares, or why there is nothing to compare."""
    groups = comparison.groups
    if votes_used == 0 or not groups:
        return f"{INTRO}\n\nNo votes under this filter."
    counts = ", ".join(f"{r.group} ({r.votes} votes)" for r in comparison.summary.itertuples())
    if len(groups) < 2:
        return (
            f"{INTRO}\n\nOnly one group has votes under this filter: {counts}. Nothing to "
            "compare: put raters into groups (tab **Raters**, or `user:password:group` in "
            "the login file), or widen the filter."
        )
    return (
        f"{INTRO}\n\nGroups with votes: {counts}. Ratings: Bradley-Terry on the Elo scale, "
        "ties split, fitted on each group's votes alone; ρ and τ over the models both boards "
        "rate (p: permutation across those models; with fewer than "
        f"{MIN_MODELS_FOR_INTERVAL} models no interval). Intervals: 95%, bootstrap over "
        f"prompts ({comparison.info['rounds']} rounds; every group's board refitted each "
        f"round). Computed in {seconds:.1f}s."
    )


def group_outputs(service: AgreementService, *values, **given):
    """(note, summary, boards, correlation, agreement) for the filter row's values."""
    empty = (
        summary_display(pd.DataFrame()),
        boards_display(pd.DataFrame(), []),
        correlation_display(pd.DataFrame()),
        agreement_display(pd.DataFrame()),
    )
    try:
        result = service.groups(filters_of(*values, **given))
    except ValueError as exc:  # a filter's (ReportError)
        return (f"{INTRO}\n\n**Cannot compare the groups:** {exc}", *empty)
    comparison = result.comparison
    note = note_markdown(comparison, result.votes_used, result.seconds)
    if result.votes_used == 0:
        return (note, *empty)
    return (
        note,
        summary_display(comparison.summary),
        boards_display(comparison.boards, comparison.groups),
        correlation_display(comparison.correlation),
        agreement_display(comparison.agreement),
    )


def render() -> list:
    """The section's components, in the order of :func:`group_outputs`."""
    note = gr.Markdown(INTRO)
    summary = gr.Dataframe(interactive=False, label="Groups", wrap=True)
    boards = gr.Dataframe(interactive=False, label="Each group's leaderboard", wrap=True)
    correlation = gr.Dataframe(
        interactive=False, label="Rank correlation between the groups' boards", wrap=True
    )
    agreement = gr.Dataframe(
        interactive=False, label="Cross-group agreement on shared image pairs", wrap=True
    )
    return [note, summary, boards, correlation, agreement]
