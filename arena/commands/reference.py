"""`arena reference add FOLDER --set NAME`: a set of real images for model-level metrics."""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "reference",
        help="reference image sets (real images for KID/FID/CMMD/FD-DINO); never shown to raters",
    )
    inner = p.add_subparsers(dest="reference_command", metavar="ACTION")
    inner.required = True
    add = inner.add_parser(
        "add",
        help="import a folder of real images (searched recursively) as a reference set",
        description="Example: arena reference add ./real-images --set danbooru-real",
    )
    add.add_argument(
        "folder", help="folder of images (.png .jpg .jpeg .webp), searched recursively"
    )
    add.add_argument("--set", dest="set_name", required=True, help="name of the reference set")
    add.add_argument(
        "--workers", type=int, default=None, help="decoding processes (default: up to 4)"
    )
    add.set_defaults(func=cmd_add)
    ls = inner.add_parser("list", help="reference sets and their image counts")
    ls.set_defaults(func=cmd_list)


def cmd_add(args) -> int:
    from arena.cli import CommandError
    from arena.commands.workspace import open_store
    from arena.intake.pool import default_workers
    from arena.intake.reference import ReferenceSetError, add_reference_folder

    store = open_store(args)
    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise CommandError(f"--workers {workers}: must be 1 or more.")
    try:
        report = add_reference_folder(store, args.folder, args.set_name, workers=workers)
    except ReferenceSetError as exc:
        raise CommandError(str(exc)) from None
    print(report.summary())
    return 0


def cmd_list(args) -> int:
    from arena.commands.workspace import open_store

    status = open_store(args).status()
    refs = [m for m in status["per_model"] if m["kind"] == "reference"]
    if not refs:
        print("no reference sets; add one with `arena reference add FOLDER --set NAME`.")
    for m in refs:
        print(f"{m['model']:<32} {m['images']:>8} images")
    return 0
