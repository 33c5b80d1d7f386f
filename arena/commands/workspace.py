"""`arena init`, `arena status`, `arena settings`."""

from __future__ import annotations

import json

from arena.config import settings_table


def register(sub) -> None:
    p = sub.add_parser("init", help="create (or upgrade) a workspace: arena.db + images/")
    p.add_argument(
        "path",
        nargs="?",
        default=None,
        help="workspace folder (default: --workspace / $ARENA_WORKSPACE)",
    )
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("status", help="models, prompts, images per model, votes, scores")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("settings", help="every setting with its environment variable and help")
    p.set_defaults(func=cmd_settings)


def open_store(args):
    """The store of the workspace the global options name (created/upgraded on open)."""
    from arena.cli import settings_from_args
    from arena.storage.store import Store

    return Store(settings_from_args(args))


def cmd_init(args) -> int:
    if args.path:
        args.workspace = args.path
    store = open_store(args)
    print(f"workspace ready: {store.workspace} (database {store.status()['database']})")
    return 0


def format_status(status: dict) -> str:
    lines = [
        f"workspace: {status['workspace']}",
        f"database:  {status['database']}",
        "",
        f"models {status['models']}  prompts {status['prompts']} "
        f"(in {status['prompt_sets']} set(s))  images {status['images']} "
        f"(broken {status['broken_images']})",
        f"raters {status['raters']}  battles {status['battles']}  votes {status['votes']}  "
        f"scores {status['scores']}",
    ]
    if status.get("held_out_sets"):
        lines.append(f"held-out prompt sets: {', '.join(status['held_out_sets'])}")
    if status["per_model"]:
        lines += ["", f"{'model':<32} {'kind':<10} {'images':>8}"]
        lines += [f"{m['model']:<32} {m['kind']:<10} {m['images']:>8}" for m in status["per_model"]]
    if status["metrics"]:
        lines += ["", f"{'metric':<24} {'version':<20} {'scores':>8}"]
        lines += [
            f"{m['metric']:<24} {m['version']:<20} {m['scores']:>8}" for m in status["metrics"]
        ]
    return "\n".join(lines)


def cmd_status(args) -> int:
    status = open_store(args).status()
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_settings(args) -> int:
    for name, env, default, help_text in settings_table():
        print(f"{name} ({env}, default {default})\n    {help_text}")
    return 0
