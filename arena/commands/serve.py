"""`arena serve`: the web app on the workspace (raters at /, Admin at /admin)."""

from __future__ import annotations

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
        help="rater logins, one 'user:password' per line; raters must log in and their "
        "login name becomes part of their rater identity",
    )
    p.set_defaults(func=cmd_serve)


def read_auth_file(path: str) -> list[tuple[str, str]]:
    from arena.cli import CommandError

    file = Path(path)
    if not file.is_file():
        raise CommandError(f"--auth-file {path}: no such file; expected 'user:password' lines.")
    logins = []
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, sep, password = line.partition(":")
        if not sep or not user.strip() or not password:
            raise CommandError(
                f"--auth-file {path}, line {number}: expected 'user:password' "
                "(a non-empty user name, a colon, a non-empty password)."
            )
        logins.append((user.strip(), password))
    if not logins:
        raise CommandError(f"--auth-file {path}: no 'user:password' lines found.")
    return logins


def cmd_serve(args) -> int:
    from arena.commands.workspace import open_store
    from arena.serve import serve

    auth = read_auth_file(args.auth_file) if args.auth_file else None
    store = open_store(args)
    serve(store, host=args.host, port=args.port, build_demo_if_empty=args.demo_if_empty, auth=auth)
    return 0
