"""`arena leaderboard`: the leaderboard table in the terminal (table, CSV or JSON)."""

from __future__ import annotations

import json
import math

import pandas as pd

from arena.commands.filter_flags import add_filter_flags, filters_of
from arena.reports.failures import FailureService, summary_display
from arena.reports.frames import ReportError
from arena.reports.leaderboard import LeaderboardService, metric_names, parse_anchor
from arena.reports.methods import REWEIGHT_FLOOR, BoardOptions
from arena.reports.style import DEFAULT_FEATURES, parse_features
from arena.stats.fits import CI_METHODS, RATING_TIES


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
    add_board_options(p)
    add_filter_flags(p)
    p.set_defaults(func=cmd_leaderboard)


def add_board_options(parser) -> None:
    """The rating-method flags (``--ties``, ``--ci``, ``--style``, ``--reweight``,
    ``--no-flips``) that ``arena leaderboard`` and ``arena export`` share."""
    parser.add_argument(
        "--ties",
        choices=RATING_TIES,
        default="split",
        help="ties and both-bad votes: half a win each way (split), left out (drop), or "
        "modelled with Davidson's tie parameter (davidson)",
    )
    parser.add_argument(
        "--ci",
        choices=CI_METHODS,
        default="bootstrap",
        help="intervals: percentile bootstrap (default) or the closed-form sandwich",
    )
    parser.add_argument(
        "--style",
        nargs="?",
        const="default",
        default=None,
        metavar="FEATURES",
        help="control for style: comma-separated per-image features (stored metrics, "
        f"resolution, aspect); alone: {','.join(DEFAULT_FEATURES)}",
    )
    parser.add_argument(
        "--reweight",
        nargs="?",
        type=float,
        const=float(REWEIGHT_FLOOR),
        default=None,
        metavar="FLOOR",
        help="weigh each pair's votes by 1/max(votes of the pair, FLOOR) so pairs count "
        f"about equally (alone: FLOOR {REWEIGHT_FLOOR})",
    )
    parser.add_argument(
        "--no-flips",
        dest="flips",
        action="store_false",
        help="skip counting how many votes hold each rank",
    )


def board_options_of(args) -> BoardOptions:
    """The :class:`BoardOptions` of parsed :func:`add_board_options` flags."""
    return BoardOptions(
        ties=args.ties,
        ci=args.ci,
        style=parse_features(args.style) if args.style is not None else (),
        reweight=args.reweight,
        flips=args.flips,
    )


def _fmt(value, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "-"
    return f"{value:.{digits}f}"


def format_table(frame: pd.DataFrame, level: float = 0.95) -> str:
    """A fixed-width text table: rank, model, rating with interval, Elo, votes, rates, metrics."""
    metric_cols = metric_names(frame)
    width = max([5, *(len(m) for m in frame["model"])])
    ci = f"{level:.0%} CI"
    head = (
        f"{'rank':>4}  {'model':<{width}}  {'rating':>7}  {ci:>15}  {'elo':>6}  {'votes':>7}  "
        f"{'win':>5}  {'both bad':>8}"
        + ("  uncontrolled" if "uncontrolled" in frame else "")
        + ("  to flip" if "votes_to_flip" in frame else "")
        + "".join(f"  {m[:12]:>12}" for m in metric_cols)
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
        if "uncontrolled" in row:
            line += f"  {_fmt(row['uncontrolled']):>12}"
        if "votes_to_flip" in row:
            line += f"  {_fmt(row['votes_to_flip']):>7}"
        line += "".join(f"  {_fmt(row[m], 3):>12}" for m in metric_cols)
        lines.append(line)
    return "\n".join(lines)


def cmd_leaderboard(args) -> int:
    from arena.commands.workspace import open_store

    try:
        anchor = parse_anchor(args.anchor)
        options = board_options_of(args)
        store = open_store(args)
        filters = filters_of(args, store)
        result = LeaderboardService(store).get(
            filters, rounds=args.bootstrap, anchor=anchor, options=options
        )
    except ReportError as exc:  # a filter's or the leaderboard's (LeaderboardError)
        from arena.cli import CommandError

        raise CommandError(str(exc)) from None
    frame = result.frame
    failures = FailureService.of(store).get(filters)
    if args.format == "csv":  # text that a spreadsheet would run gets an apostrophe
        from arena.storage.table_io import neutralise_frame

        print(neutralise_frame(frame).to_csv(index=False), end="")
    elif args.format == "json":
        out = _json(result)
        out["failure_rates"] = json.loads(failures.rates.to_json(orient="records"))
        print(json.dumps(out, indent=2))
    elif frame.empty:
        print(f"no votes ({filters.describe()}); nothing to rank yet.")
    else:
        print(format_table(frame))
        for title, table in (("Style coefficients", result.style), ("Votes to flip", result.flips)):
            if len(table):
                print(f"\n{title}:\n{table.to_string(index=False, float_format='{:.3f}'.format)}")
        print("\n" + "\n".join(result.notes))
        if result.paired_note:
            print(result.paired_note)
        print(
            f"\n{result.votes_used} votes ({filters.describe()}); 'prov' = provisional (fewer than "
            f"{store.settings.min_votes_ranked} votes); 'n/a' = no rating: the votes do not "
            f"determine it (the model never won or never lost). Computed in {result.seconds:.2f} s."
        )
    if args.format == "table" and failures.flags:  # reviews exist before votes, too
        print("\n" + failure_text(failures))
    return 0


def failure_text(failures) -> str:
    """The reviewers' failure rates under the board, as the Admin app shows them."""
    table = summary_display(failures.rates).to_string(index=False)
    return (
        f"Failure rates ({failures.flags} flag row(s) from reviewers; images of the filter's "
        f"prompts). Blind sample: an estimate of the share of a model's images that fail; "
        f"all reviews: a count of what reviewers found. Wilson 95% intervals.\n{table}"
    )


def _json(result) -> dict:
    """The board and its extras as JSON: the method's sentences, style coefficients,
    votes to flip, and (with ties=davidson) the tie model."""
    records = json.loads(result.frame.to_json(orient="records"))
    out = {"leaderboard": records, "notes": result.notes, "paired": result.paired_note}
    out["style"] = json.loads(result.style.to_json(orient="records"))
    out["flips"] = json.loads(result.flips.to_json(orient="records"))
    tie = result.ratings.tie_model if result.ratings is not None else None
    if tie is not None:
        out["tie_model"] = tie.as_dict()
    return out
