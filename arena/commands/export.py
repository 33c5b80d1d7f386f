"""`arena export`: votes, scores, leaderboard and agreement tables, and report.html."""

from __future__ import annotations

import time

from arena.commands.filter_flags import add_filter_flags, filters_of
from arena.commands.leaderboard import add_board_options, board_options_of
from arena.commands.workspace import open_store


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write votes, scores, the leaderboard, the agreement tables and report.html",
        description=(
            "Write one file per table into --out (votes joined with prompts, models and image "
            "hashes; scores; the leaderboard; the agreement tables) plus manifest.json and a "
            "self-contained report.html. The same data gives the same bytes. The leaderboard "
            "is made with the rating-method flags of `arena leaderboard` (--ties, --ci, --style, "
            "--reweight, --no-flips); its style coefficients and flip counts are tables of their "
            "own. Columns are documented in docs/exports.md."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (created)")
    p.add_argument("--format", choices=("csv", "parquet", "json"), default="csv")
    p.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds for every interval (default: setting bootstrap_rounds)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the seed setting)")
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    add_board_options(p)
    add_filter_flags(p)
    p.set_defaults(func=cmd_export)


def cmd_export(args) -> int:
    from arena.cli import CommandError
    from arena.reports.export import ExportError, export_workspace
    from arena.reports.frames import ReportError

    try:
        options = board_options_of(args)
        store = open_store(args)
        filters = filters_of(args, store)
    except ReportError as exc:  # a filter's, or a combination the leaderboard refuses
        raise CommandError(str(exc)) from None
    start = time.perf_counter()
    try:
        result = export_workspace(
            store,
            args.out,
            fmt=args.format,
            rounds=args.bootstrap,
            seed=args.seed,
            report=not args.no_report,
            options=options,
            filters=filters,
        )
    except ExportError as exc:
        raise CommandError(str(exc)) from None
    for path in result.files:
        rows = result.rows.get(path.stem)
        print(f"{path}" + (f"  ({rows} rows)" if rows is not None else ""))
    print(f"exported to {result.folder} in {time.perf_counter() - start:.1f}s")
    return 0
