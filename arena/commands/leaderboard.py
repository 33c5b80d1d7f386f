"""`arena leaderboard`: the leaderboard table in the terminal (table, CSV or JSON)."""

from __future__ import annotations

import json
import math

import pandas as pd

from arena.reports.frames import Filters, ReportError
from arena.reports.leaderboard import COLUMNS, LeaderboardService, parse_anchor
from arena.storage.vocabulary import RATER_KINDS


def register(sub) -> None:
    p = sub.add_parser(
        "leaderboard",
        help="Bradley-Terry ratings with bootstrap intervals, Elo, win rates, metric means",
    )
    p.add_argument("--format", choices=("table", "csv", "json"), default="table")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds for the intervals (default: setting bootstrap_rounds)",
    )
    p.add_argument(
        "--anchor",
        default=None,
        metavar="MODEL=RATING",
        help="put MODEL at RATING instead of centring the ratings on a mean of 1000",
    )
    p.add_argument(
        "--ties",
        choices=("split", "drop"),
        default="split",
        help="ties and both-bad votes: half a win each way (split) or left out",
    )
    p.add_argument("--category", default=None, help="only prompts of this category")
    p.add_argument("--prompt-set", default=None, help="only prompts of this prompt set")
    p.add_argument("--rater-kind", choices=RATER_KINDS, default=None, help="only these raters")
    p.add_argument("--since", default=None, metavar="DATE", help="votes from this UTC date/time")
    p.add_argument(
        "--until", default=None, metavar="DATE", help="votes up to this date (inclusive)"
    )
    p.set_defaults(func=cmd_leaderboard)


def _fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    return f"{value:.{digits}f}"


def format_table(frame: pd.DataFrame, level: float = 0.95) -> str:
    """A fixed-width text table: rank, model, rating with interval, Elo, votes, rates, metrics."""
    metric_cols = list(frame.columns[len(COLUMNS) :])
    width = max([5, *(len(m) for m in frame["model"])])
    ci = f"{level:.0%} CI"
    head = (
        f"{'rank':>4}  {'model':<{width}}  {'rating':>7}  {ci:>15}  {'elo':>6}  {'votes':>7}  "
        f"{'win':>5}  {'both bad':>8}" + "".join(f"  {m[:12]:>12}" for m in metric_cols)
    )
    lines = [head, "-" * len(head)]
    for row in frame.to_dict("records"):
        rank = "prov" if row["provisional"] else _fmt(row["rank"])
        rank = rank if row["identified"] else "n/a"
        interval = f"{_fmt(row['ci_lower'])} - {_fmt(row['ci_upper'])}"
        line = (
            f"{rank:>4}  {row['model']:<{width}}  {_fmt(row['rating']):>7}  {interval:>15}  "
            f"{_fmt(row['elo']):>6}  {row['votes']:>7}  {_fmt(100 * row['win_rate'], 1):>4}%  "
            f"{_fmt(100 * row['both_bad_rate'], 1):>7}%"
        )
        line += "".join(f"  {_fmt(row[m], 3):>12}" for m in metric_cols)
        lines.append(line)
    return "\n".join(lines)


def cmd_leaderboard(args) -> int:
    from arena.commands.workspace import open_store

    try:
        filters = Filters(
            category=args.category,
            prompt_set=args.prompt_set,
            rater_kind=args.rater_kind,
            since=args.since,
            until=args.until,
        )
        filters.key()
        anchor = parse_anchor(args.anchor)
        store = open_store(args)
        result = LeaderboardService(store).get(
            filters, rounds=args.bootstrap, anchor=anchor, ties=args.ties
        )
    except ReportError as exc:  # a filter's or the leaderboard's (LeaderboardError)
        from arena.cli import CommandError

        raise CommandError(str(exc)) from None
    frame = result.frame
    if args.format == "csv":  # text that a spreadsheet would run gets an apostrophe
        from arena.storage.table_io import neutralise_frame

        print(neutralise_frame(frame).to_csv(index=False), end="")
    elif args.format == "json":
        records = json.loads(frame.to_json(orient="records"))
        print(json.dumps(records, indent=2))
    elif frame.empty:
        print(f"no votes ({filters.describe()}); nothing to rank yet.")
    else:
        print(format_table(frame))
        print(
            f"\n{result.votes_used} votes ({filters.describe()}); BT ratings on the Elo scale "
            f"with bootstrap intervals; 'prov' = provisional (fewer than "
            f"{store.settings.min_votes_ranked} votes); 'n/a' = no rating: the votes do not "
            f"determine it (the model never won or never lost). Computed in {result.seconds:.2f} s."
        )
    return 0
