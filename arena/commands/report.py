"""`arena report`: candidate vs baseline, one HTML + Markdown report and a regression gate."""

from __future__ import annotations

from pathlib import Path

#: Exit status when a threshold fails or has no data (argument errors exit 2).
GATE_FAILED = 1


def register(sub) -> None:
    from arena.commands.filter_flags import add_filter_flags

    p = sub.add_parser(
        "report",
        help="candidate vs baseline: sample quality, prompt adherence, human preference, "
        "failures; exits 1 when a threshold fails (a CI gate)",
        description=(
            "Write one self-contained HTML report and its Markdown twin comparing a candidate "
            "model with a baseline, and check them against a thresholds file (TOML or JSON). "
            "Exit status: 0 every threshold passes (or none given), 1 a threshold fails or "
            "lacks data, 2 bad arguments. Example: arena report --candidate ckpt-2000 "
            "--baseline ckpt-1000 --thresholds gate.toml --out report/"
        ),
    )
    p.add_argument("--candidate", required=True, help="the new model")
    p.add_argument("--baseline", required=True, help="the model it would replace")
    p.add_argument("--thresholds", default=None, metavar="FILE", help="checks (TOML or JSON)")
    p.add_argument(
        "--out",
        default=".",
        metavar="DIR",
        help="folder for candidate-report.html and candidate-report.md (default: .)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        metavar="N",
        help="bootstrap rounds (default: setting bootstrap_rounds)",
    )
    p.add_argument("--seed", type=int, default=None, help="random seed (default: setting seed)")
    add_filter_flags(p)
    p.set_defaults(func=cmd_report)


def cmd_report(args) -> int:
    from arena.cli import CommandError
    from arena.commands.filter_flags import filters_of
    from arena.commands.workspace import open_store
    from arena.reports.candidate import candidate_report
    from arena.reports.candidate_page import candidate_html, candidate_markdown, markdown_table
    from arena.reports.frames import ReportError
    from arena.reports.thresholds import evaluate, read_thresholds

    try:
        thresholds = read_thresholds(args.thresholds) if args.thresholds else None
        if args.bootstrap is not None and args.bootstrap < 0:
            raise ReportError(f"--bootstrap {args.bootstrap}: must be 0 or more.")
        store = open_store(args)
        filters = filters_of(args, store)
        report = candidate_report(
            store, args.candidate, args.baseline, filters, args.bootstrap, args.seed
        )
    except ReportError as exc:
        raise CommandError(str(exc)) from None
    if thresholds is not None:
        report.verdicts = evaluate(report, thresholds)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "candidate-report.html").write_text(candidate_html(report), encoding="utf-8")
        (out / "candidate-report.md").write_text(candidate_markdown(report), encoding="utf-8")
    except OSError as exc:
        raise CommandError(f"--out {args.out}: cannot write the report there ({exc}).") from None
    print(f"{report.candidate} vs {report.baseline}: wrote {out / 'candidate-report.html'} "
          f"and {out / 'candidate-report.md'}")  # fmt: skip
    if report.verdicts is not None:
        print(markdown_table(report.verdicts))
    print("\n".join(report.notes))
    if report.verdicts is None:
        print("no thresholds given (--thresholds FILE): no verdict.")
        return 0
    return 0 if report.passed else GATE_FAILED
