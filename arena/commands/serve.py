"""`arena serve`: the web app on the workspace (raters at /, Admin at /admin, Review at
/review)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="run the web app (Vote, Leaderboard, ... at /; Admin at /admin when "
        "ARENA_ADMIN_SECRET is set); stops gracefully on SIGTERM",
    )
    p.add_argument("--host", default=None, help="listen address (default: setting host)")
    p.add_argument("--port", type=int, default=None, help="port (default: setting port)")
    p.add_argument(
        "--demo-if-empty",
        action="store_true",
        help="build the offline demo into the workspace first when it has no images",
    )
    p.add_argument(
        "--auth-file",
        default=None,
        help="rater logins, one 'user:password' or 'user:password:group' per line; raters "
        "must log in, their login name becomes part of their rater identity and the group "
        "(e.g. expert, crowd) their rater group",
    )
    p.add_argument(
        "--reviewer-file",
        default=None,
        help="reviewer logins, one 'user:password' per line: mounts the Review app (gallery, "
        "blind review, failure flags) at /review behind them; verdicts carry the login name",
    )
    p.set_defaults(func=cmd_serve)


@dataclass
class Logins:
    """The login file: (user, password) pairs for the login page, and each login's rater
    group where its line names one (``user:password:group``)."""

    auth: list[tuple[str, str]] = field(default_factory=list)
    groups: dict[str, str] = field(default_factory=dict)


def read_logins(path: str) -> Logins:
    """Parse ``--auth-file``: one ``user:password`` or ``user:password:group`` per line
    (blank lines and ``#`` comments skipped). With two colons or more, the text after
    the last one is the group, so a password may hold a colon only on a line that names
    a group."""
    from arena.cli import CommandError
    from arena.storage.errors import StoreError
    from arena.storage.rater_verbs import check_rater_group

    expected = "'user:password' or 'user:password:group' lines"
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--auth-file {path}: no such file; expected {expected}.")
    logins = Logins()
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, rest = line.partition(":")
        password, group = rest, None
        if rest.count(":"):
            password, _, group = rest.rpartition(":")
        where = f"--auth-file {path}, line {number}"
        if not sep or not user.strip() or not password:
            raise CommandError(
                f"{where}: expected 'user:password' or 'user:password:group' (a non-empty "
                "user name, a colon, a non-empty password, optionally a colon and a group)."
            )
        user = user.strip()
        try:
            group = check_rater_group(group)
        except StoreError as exc:
            raise CommandError(f"{where}: {exc}") from None
        logins.auth.append((user, password))
        if group is not None:
            logins.groups[user] = group
    if not logins.auth:
        raise CommandError(f"--auth-file {path}: no {expected} found.")
    return logins


def read_auth_file(path: str) -> list[tuple[str, str]]:
    """The (user, password) pairs of the login file (:func:`read_logins`)."""
    return read_logins(path).auth


def read_reviewers(path: str) -> list[tuple[str, str]]:
    """Parse ``--reviewer-file``: one ``user:password`` per line (blank lines and ``#``
    comments skipped); the password is everything after the first colon."""
    from arena.cli import CommandError
    from arena.storage.errors import StoreError
    from arena.storage.review_verbs import check_reviewer

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--reviewer-file {path}: no such file; expected 'user:password' lines.")
    logins: list[tuple[str, str]] = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        where = f"--reviewer-file {path}, line {number}"
        if not sep or not user.strip() or not password:
            raise CommandError(
                f"{where}: expected 'user:password' (a non-empty name, a colon, a non-empty "
                "password)."
            )
        try:
            user = check_reviewer(user)
        except StoreError as exc:
            raise CommandError(f"{where}: {exc}") from None
        if any(user == known for known, _ in logins):
            raise CommandError(f"{where}: reviewer {user!r} is listed twice.")
        logins.append((user, password))
    if not logins:
        raise CommandError(f"--reviewer-file {path}: no 'user:password' lines found.")
    return logins


def cmd_serve(args) -> int:
    from arena.commands.workspace import open_store
    from arena.serve import serve

    logins = read_logins(args.auth_file) if args.auth_file else None
    reviewers = read_reviewers(args.reviewer_file) if args.reviewer_file else None
    store = open_store(args)
    serve(
        store,
        host=args.host,
        port=args.port,
        build_demo_if_empty=args.demo_if_empty,
        auth=logins.auth if logins else None,
        login_groups=logins.groups if logins else None,
        reviewers=reviewers,
    )
    return 0
