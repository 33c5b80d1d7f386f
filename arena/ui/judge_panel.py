"""The Agreement tab's judge section: each machine judge as a rater and as a decider.

Numbers come from the agreement report's judge tables
(:func:`arena.stats.agreement.judge_report`, through
:class:`arena.reports.agreement.AgreementService`); this module only formats them and
lays out the widgets. It lives on the Agreement tab, so it is shown where that tab is:
the Admin app, and the raters' app only with the reveal on.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
import pandas as pd

from arena.stats.agreement import JudgeReport
from arena.ui.cells import number, percent

NO_JUDGES = (
    "**Judges:** no machine judge has voted on these prompts and dates. `arena judge` adds "
    "one (a vision-language model voting on image pairs in both orders, as its own rater); "
    "it then appears here beside the human ceiling. Its votes never enter the human numbers "
    "above."
)
RATER_COLUMNS = [
    "Judge",
    "Model",
    "Agreement with majority",
    "Human ceiling, same pairs",
    "Difference",
    "Versus ceiling",
    "Pairs",
    "α humans",
    "α with judge",
    "α change",
]
DECIDER_COLUMNS = [
    "Judge",
    "Models",
    "Spearman ρ vs human board",
    "Kendall τ vs human board",
    "Orders agree",
    "Left chosen",
]


def _pct_ci(value, low, high) -> str:
    return f"{percent(value)} [{percent(low)}, {percent(high)}]"


def _points(value, low, high) -> str:
    """A difference of two proportions in percentage points, with its interval."""
    if value is None or not np.isfinite(value):
        return "–"
    return f"{100 * value:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]"


def raters_display(agreement: pd.DataFrame) -> pd.DataFrame:
    """One row per judge: its agreement with the human majority and the ceiling on the
    same pairs (bootstrap intervals over prompts), and α without and with it."""
    if agreement.empty:
        return pd.DataFrame(columns=RATER_COLUMNS)
    rows = []
    for r in agreement.itertuples(index=False):
        rows.append(
            {
                "Judge": r.judge,
                "Model": r.judge_model or "–",
                "Agreement with majority": _pct_ci(r.agreement, r.ci_low, r.ci_high),
                "Human ceiling, same pairs": _pct_ci(
                    r.ceiling, r.ceiling_ci_low, r.ceiling_ci_high
                ),
                "Difference": _points(r.difference, r.difference_low, r.difference_high),
                "Versus ceiling": r.versus_ceiling or "–",
                "Pairs": int(r.n),
                "α humans": f"{number(r.alpha_without, 3)} [{number(r.alpha_without_low, 3)}, "
                f"{number(r.alpha_without_high, 3)}]",
                "α with judge": f"{number(r.alpha_with, 3)} [{number(r.alpha_with_low, 3)}, "
                f"{number(r.alpha_with_high, 3)}]",
                "α change": f"{number(r.alpha_change, 3)} [{number(r.alpha_change_low, 3)}, "
                f"{number(r.alpha_change_high, 3)}]",
            }
        )
    return pd.DataFrame(rows, columns=RATER_COLUMNS)


def _corr(value, low, high, p, few) -> str:
    text = number(value, 2)
    if not few:
        text += f" [{number(low, 2)}, {number(high, 2)}]"
    if p is not None and np.isfinite(p):
        text += f" (p = {p:.2g})"
    return text


def deciders_display(report: JudgeReport) -> pd.DataFrame:
    """One row per judge: its own board's rank correlation with the human board, and
    its position consistency (orders that agree, Wilson) and left choices (exact)."""
    corr, cons = report.correlations, report.consistency
    if corr.empty:
        return pd.DataFrame(columns=DECIDER_COLUMNS)
    cons = cons.set_index("judge")
    rows = []
    for r in corr.itertuples(index=False):
        c = cons.loc[r.judge]
        rows.append(
            {
                "Judge": r.judge,
                "Models": int(r.n_models),
                "Spearman ρ vs human board": _corr(
                    r.spearman, r.spearman_low, r.spearman_high, r.spearman_p, r.few_models
                ),
                "Kendall τ vs human board": _corr(
                    r.kendall, r.kendall_low, r.kendall_high, r.kendall_p, r.few_models
                ),
                "Orders agree": f"{_pct_ci(c.consistency, c.wilson_low, c.wilson_high)} "
                f"of {int(c.pairs_both_orders)} pairs",
                "Left chosen": f"{_pct_ci(c.left_win_rate, c.left_low, c.left_high)} "
                f"of {int(c.decisive_votes)} (p = {number(c.left_p, 3)})",
            }
        )
    return pd.DataFrame(rows, columns=DECIDER_COLUMNS)


def boards_display(leaderboard: pd.DataFrame) -> pd.DataFrame:
    """Model × (human, each judge): rating (rank), sorted by the human rating."""
    if leaderboard.empty:
        return pd.DataFrame(columns=["Model"])
    human = leaderboard.drop_duplicates("model").set_index("model")
    models = human.sort_values("human_rating", ascending=False, na_position="last").index
    out = pd.DataFrame({"Model": models})

    def cell(rating, rank) -> str:
        if pd.isna(rank):
            return "no rating"
        return f"{rating:.0f} (#{int(rank)})"

    out["human"] = [cell(human.at[m, "human_rating"], human.at[m, "human_rank"]) for m in models]
    for judge, part in leaderboard.groupby("judge", sort=True):
        part = part.set_index("model")
        out[judge] = [
            cell(part.at[m, "rating"], part.at[m, "rank"]) if m in part.index else "–"
            for m in models
        ]
    return out


def summary_markdown(report: JudgeReport) -> str:
    """How to read the judges, with one sentence per judge (or the note that there are none)."""
    if report.empty:
        return NO_JUDGES
    lines = [
        "**Judges** (machine raters; their votes are never in the numbers above). "
        "*As a rater:* how often the judge's answer is the side most people chose on the "
        "same image pair (its two orders averaged), beside the human ceiling on those same "
        "pairs (a person against the majority of the other people). A judge *below* the "
        "ceiling's interval disagrees with people more than people disagree with each other. "
        "α: Krippendorff's α of the people on the pairs the judge answered, without and with "
        "the judge as one more rater. *As a decider:* its own Bradley-Terry board over the "
        "battles it judged, against the human board. *Orders agree:* pairs answered in both "
        "orders whose two answers agree once the sides are swapped back."
    ]
    for r in report.agreement.itertuples(index=False):
        if not np.isfinite(r.agreement):
            lines.append(
                f"- **{r.judge}**: none of its {int(r.pairs)} pairs has two or more decisive "
                "human votes under these filters, so there is no majority to compare with."
            )
            continue
        where = {
            "below": "below the human ceiling",
            "above": "above the human ceiling",
            "within": "not distinguishable from the human ceiling",
        }.get(r.versus_ceiling, "")
        lines.append(
            f"- **{r.judge}** agrees with the majority on {percent(r.agreement)} of {int(r.n)} "
            f"pairs, people on {percent(r.ceiling)} of the same pairs: {where} "
            f"({_points(r.difference, r.difference_low, r.difference_high)})."
        )
    return "\n".join(lines)


def judge_outputs(report: JudgeReport | None) -> tuple:
    """(summary, raters table, deciders table, boards table) of the judge section."""
    report = report if report is not None else JudgeReport()
    return (
        summary_markdown(report),
        raters_display(report.agreement),
        deciders_display(report),
        boards_display(report.leaderboard),
    )


def render() -> list:
    """The judge section's widgets, in the order of :func:`judge_outputs`."""
    summary = gr.Markdown()
    raters = gr.Dataframe(interactive=False, label="Judges as raters", wrap=True)
    deciders = gr.Dataframe(
        interactive=False, label="Judges as deciders and position consistency", wrap=True
    )
    boards = gr.Dataframe(
        interactive=False, label="Judge leaderboards beside the human board", wrap=True
    )
    return [summary, raters, deciders, boards]
