"""The candidate-vs-baseline report as one self-contained HTML page and as Markdown.

Both are rendered from the same :class:`arena.reports.candidate.CandidateReport`: the
verdicts first (what a CI job gates on), then the four pillars. The HTML has no
scripts and no links out (it opens offline, like ``report.html``); the Markdown is
for pull-request comments and job logs.
"""

from __future__ import annotations

import html
import math

import pandas as pd

from arena.reports.candidate import CandidateReport
from arena.reports.html_parts import html_table
from arena.reports.report_page import REPORT_CSS


def _preference_table(report: CandidateReport) -> pd.DataFrame:
    p = report.preference
    rows = [
        ("direct votes (candidate wins / losses / ties / both bad)",
         f"{p['votes']} ({p['wins']} / {p['losses']} / {p['ties']} / {p['both_bad']})"),
        ("win rate, ties half (95% Wilson)",
         _with_interval(p["win_rate"], p["win_rate_lower"], p["win_rate_upper"], "{:.1%}")),
        ("decisive win rate, ties left out (95% Wilson)",
         _with_interval(p["decisive_win_rate"], p["decisive_lower"], p["decisive_upper"],
                        "{:.1%}")),
        ("rating difference on the leaderboard, Elo (95%)",
         _with_interval(p["rating_difference"], p["rating_lower"], p["rating_upper"], "{:+.1f}")),
        ("direct votes still needed to separate them", _more(p["more_votes"])),
        ("votes behind the leaderboard", str(p["board_votes"])),
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=["human preference", "candidate vs baseline"])


def _with_interval(value, low, high, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    text = fmt.format(value)
    if low is not None and not math.isnan(low):
        text += f" [{fmt.format(low)}, {fmt.format(high)}]"
    return text


def _more(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "never (a dead heat)"
    return "0 (already separated)" if value == 0 else f"{int(value)}"


def _title(report: CandidateReport) -> str:
    return f"Candidate {report.candidate} vs baseline {report.baseline}"


def _verdict_line(report: CandidateReport) -> str:
    if report.verdicts is None:
        return "No thresholds given: numbers only, no verdict."
    failed = int((report.verdicts["verdict"] != "pass").sum())
    if not failed:
        return f"PASS: all {len(report.verdicts)} thresholds pass."
    return f"FAIL: {failed} of {len(report.verdicts)} thresholds do not pass."


def _sections(report: CandidateReport) -> list[tuple[str, pd.DataFrame | None, str]]:
    return [
        ("Verdicts", report.verdicts, _verdict_line(report)),
        ("Sample quality", report.quality,
         "Model-level numbers of both models against the same reference; the warning "
         "column carries the sample-size warnings stored with them."),
        ("Prompt adherence", report.adherence,
         "Per-image metrics on the (prompt, seed) cells both models have an image for; "
         "difference = candidate - baseline in the metric's units, 95% prompt bootstrap."),
        ("Human preference", _preference_table(report),
         "Head-to-head votes between the two, and the leaderboard's rating difference."),
        ("Failure analysis", report.failures,
         "Failure-flag rates from the reviewers' flags (Wilson intervals)."
         if report.failures is not None else "No review flags in this workspace."),
    ]  # fmt: skip


def candidate_html(report: CandidateReport) -> str:
    """The report as one HTML page (no scripts, no links out)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(_title(report))}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(_title(report))}</h1>",
        f"<p class='note'>Votes: {html.escape(report.filters.describe())}.</p>",
    ]
    for title, table, note in _sections(report):
        parts.append(f"<h2>{html.escape(title)}</h2><p class='note'>{html.escape(note)}</p>")
        if table is not None:
            parts.append(html_table(table))
    if report.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in report.notes)
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table (pipes escaped; floats to ``digits`` places)."""
    if frame is None or frame.empty:
        return "_Nothing yet._"

    def cell(value) -> str:
        if isinstance(value, float):
            return "–" if math.isnan(value) else f"{value:.{digits}g}"
        return str(value).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(map(cell, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def candidate_markdown(report: CandidateReport) -> str:
    """The report as Markdown (for a pull-request comment or a job log)."""
    lines = [f"# {_title(report)}", "", f"Votes: {report.filters.describe()}.", ""]
    for title, table, note in _sections(report):
        lines += [f"## {title}", "", note, ""]
        if table is not None:
            lines += [markdown_table(table), ""]
    if report.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in report.notes], ""]
    return "\n".join(lines)
