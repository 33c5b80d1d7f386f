"""`arena import-prompts` and `arena import-images`."""

from __future__ import annotations

import sys

from arena.commands.workspace import open_store


def register(sub) -> None:
    p = sub.add_parser(
        "import-prompts",
        help="add a prompt set from a CSV / TSV / JSONL / TXT file",
        description=(
            "Add prompts to a prompt set. CSV/TSV need a header with a 'text' (or 'prompt') "
            "column and may have 'id', 'tags' (comma-separated) and 'category'; JSONL has one "
            "object per line with the same keys (tags may be a list); TXT has one prompt per "
            "line. Prompts without an id are numbered by their position in the file (1, 2, ...). "
            "A bad file is refused as a whole with the line at fault; re-importing adds only "
            "new prompts."
        ),
    )
    p.add_argument("file", help="the prompt file (.csv, .tsv, .jsonl or .txt)")
    p.add_argument("--set", dest="prompt_set", required=True, help="name of the prompt set")
    p.add_argument("--category", default=None, help="category for rows that have none")
    p.set_defaults(func=cmd_import_prompts)

    p = sub.add_parser(
        "import-images",
        help="add a folder of generated images as one model",
        description=(
            "Import a folder of images as one model. Layouts: files named "
            "<prompt_id>_<seed>.png (or .jpg/.webp), or any names listed in a metadata.jsonl / "
            "metadata.csv with file_name, prompt_id (or text), optional seed and other "
            "generation parameters. Images are stored by pixel hash with all metadata "
            "stripped. Bad files are skipped and listed; re-importing adds only new images."
        ),
    )
    p.add_argument("folder", help="the folder of images")
    p.add_argument("--model", required=True, help="model name the images are shown under")
    p.add_argument(
        "--prompt-set",
        default=None,
        help="prompt set the prompt ids refer to (default: any set that has the id, if only one)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes decoding and storing images (default: CPU count, at most 4)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_images)


def cmd_import_prompts(args) -> int:
    from arena.cli import CommandError
    from arena.intake.prompts import import_prompts
    from arena.intake.reading import IngestError

    store = open_store(args)
    try:
        report = import_prompts(store, args.file, args.prompt_set, args.category)
    except IngestError as exc:
        raise CommandError(f"{exc} Nothing was imported from this file.") from None
    print(report.summary())
    return 0


def cmd_import_images(args) -> int:
    from tqdm import tqdm

    from arena.cli import CommandError
    from arena.intake.image_import import import_images
    from arena.intake.reading import IngestError

    store = open_store(args)
    bar = None

    def on_plan(n: int) -> None:
        nonlocal bar
        if not args.no_progress:
            bar = tqdm(total=n, unit="img", desc=f"import {args.model}", file=sys.stderr)

    try:
        report = import_images(
            store,
            args.folder,
            args.model,
            prompt_set=args.prompt_set,
            workers=args.workers,
            progress=lambda k: bar.update(k) if bar is not None else None,
            on_plan=on_plan,
        )
    except IngestError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    print(report.summary())
    return 0
