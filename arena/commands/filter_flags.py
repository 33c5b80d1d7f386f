"""The report filters as command-line flags, one definition for `arena leaderboard`,
`arena export` and `arena report`: prompts (category, prompt set, tag, held-out sets),
raters (kind, group) and dates."""

from __future__ import annotations

import difflib

from arena.reports.frames import HELD_OUT_CHOICES, Filters, ReportError, filter_options
from arena.storage.vocabulary import RATER_KINDS


def add_filter_flags(parser) -> None:
    """Every filter flag; :func:`filters_of` reads them back."""
    parser.add_argument("--category", default=None, help="only prompts of this category")
    parser.add_argument("--prompt-set", default=None, help="only prompts of this prompt set")
    parser.add_argument(
        "--tag",
        default=None,
        metavar="TAG",
        help="only prompts carrying this tag (e.g. a PartiPrompts challenge or a GenAI-Bench "
        "skill stored by `arena import-prompts`)",
    )
    parser.add_argument(
        "--held-out",
        choices=HELD_OUT_CHOICES,
        default=None,
        help="only the prompts of held-out prompt sets, or exclude them (default: both)",
    )
    parser.add_argument(
        "--rater-kind",
        choices=RATER_KINDS,
        default=None,
        help="only raters of this kind (default: human and simulated raters; a judge's "
        "votes count only with --rater-kind judge)",
    )
    parser.add_argument(
        "--rater-group",
        default=None,
        metavar="GROUP",
        help="only raters of this group (set by the login file, the Admin app or a judge)",
    )
    parser.add_argument(
        "--since", default=None, metavar="DATE", help="votes from this UTC date/time"
    )
    parser.add_argument(
        "--until", default=None, metavar="DATE", help="votes up to this date (inclusive)"
    )


def filters_of(args, store=None) -> Filters:
    """The :class:`Filters` of the parsed flags; with ``store``, a category, prompt set,
    tag or rater group that no prompt or rater has is refused with the known values (a
    typo would otherwise read as "no votes")."""
    filters = Filters(
        category=args.category,
        prompt_set=args.prompt_set,
        rater_kind=args.rater_kind,
        since=args.since,
        until=args.until,
        rater_group=args.rater_group,
        held_out=args.held_out,
        tag=args.tag,
    )
    filters.key()  # parses the dates
    if store is not None:
        check_known(filters, filter_options(store))
    return filters


def check_known(filters: Filters, options: dict[str, list[str]]) -> None:
    """Raise :class:`ReportError` for a filter value none of ``options`` has."""
    asked = {
        "category": ("--category", filters.category),
        "prompt_set": ("--prompt-set", filters.prompt_set),
        "tag": ("--tag", filters.tag),
        "rater_group": ("--rater-group", filters.rater_group),
    }
    for key, (flag, value) in asked.items():
        known = options.get(key)
        if not value or known is None or value in known:  # no list of names: unchecked
            continue
        close = difflib.get_close_matches(value, known, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        listed = ", ".join(known[:20]) + (f", ... ({len(known)} in all)" if len(known) > 20 else "")
        raise ReportError(
            f"{flag} {value!r}: no {key.replace('_', ' ')} of that name in this workspace.{hint} "
            f"Known: {listed or 'none'}."
        )
