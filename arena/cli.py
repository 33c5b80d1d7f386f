"""The `arena` command.

Each command group lives in a module of ``arena.commands`` with a
``register(subparsers)`` function; modules that need torch import it inside
the command, so `arena --help` and the web app stay light.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from arena.config import SettingsError, load_settings
from arena.storage.images import ImageError
from arena.storage.migrate import SchemaError

COMMAND_MODULES = (
    "arena.commands.workspace",
    "arena.commands.ingest",
    "arena.commands.demo",
    "arena.commands.generate",
    "arena.commands.score",
    "arena.commands.leaderboard",
    "arena.commands.serve",
    "arena.commands.export",
    "arena.commands.reference",
    "arena.commands.distribution",
    "arena.commands.judge",
    "arena.commands.report",
)


class CommandError(RuntimeError):
    """A command failed for a reason the user can fix; printed without a traceback."""


USER_ERRORS: tuple[type[BaseException], ...] = (
    CommandError,
    SettingsError,
    ImageError,
    SchemaError,
    FileNotFoundError,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="arena",
        description="A human-preference arena for text-to-image models.",
    )
    parser.add_argument(
        "--workspace",
        "-w",
        default=None,
        help="workspace folder (default: $ARENA_WORKSPACE, else ./arena-workspace)",
    )
    parser.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL (default: $ARENA_DB_URL, else the workspace SQLite)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def settings_from_args(args: argparse.Namespace):
    return load_settings(workspace=args.workspace, db_url=args.db_url)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    from arena.storage.store import StoreError

    try:
        result = args.func(args)
    except (*USER_ERRORS, StoreError) as exc:
        print(f"arena {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"arena {args.command}: interrupted; finished work is saved.", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    # Under `python -m arena.cli` this file runs as __main__, a second copy of the module:
    # run the importable arena.cli's main so that the CommandError commands raise is caught.
    from arena.cli import main as _main

    sys.exit(_main())
