"""`arena import-prompts`, `arena prompt-sets` and `arena import-images`."""

from __future__ import annotations

import sys

from arena.commands.workspace import open_store


def register(sub) -> None:
    p = sub.add_parser(
        "import-prompts",
        help="add a prompt set from a CSV / TSV / JSONL / TXT file or a published benchmark",
        description=(
            "Add prompts to a prompt set. CSV/TSV need a header with a 'text' (or 'prompt') "
            "column and may have 'id', 'tags' (comma-separated) and 'category'; JSONL has one "
            "object per line with the same keys (tags may be a list); TXT has one prompt per "
            "line. Published benchmarks are read as published and recognised by their header: "
            "PartiPrompts.tsv (Category -> category, Challenge -> tags), DrawBench's CSV "
            "(Prompts, Category), GenAI-Bench's genai_image.json (basic/advanced -> category, "
            "skills -> tags; its genai_skills.json with --skills). Prompts without an id are "
            "numbered by their position in the file (1, 2, ...). A bad file is refused as a "
            "whole with the line at fault; re-importing adds only new prompts."
        ),
    )
    p.add_argument("file", help="the prompt file (.csv, .tsv, .jsonl, .txt or a benchmark's .json)")
    p.add_argument("--set", dest="prompt_set", required=True, help="name of the prompt set")
    p.add_argument("--category", default=None, help="category for rows that have none")
    p.add_argument(
        "--format",
        dest="fmt",
        default="auto",
        choices=["auto", "parti", "drawbench", "genai-bench"],
        help="how to read the file (default auto: a benchmark is recognised by its header "
        "or, for .json, its structure)",
    )
    p.add_argument(
        "--skills",
        default=None,
        metavar="FILE",
        help="GenAI-Bench's genai_skills.json ({skill: [prompt numbers]}): the prompts' "
        "skills and basic/advanced group",
    )
    held = p.add_mutually_exclusive_group()
    held.add_argument(
        "--held-out",
        dest="held_out",
        action="store_const",
        const=True,
        default=None,
        help="mark the set held out (kept for final evaluation; reports can leave it out)",
    )
    held.add_argument(
        "--not-held-out",
        dest="held_out",
        action="store_const",
        const=False,
        help="mark the set not held out",
    )
    p.set_defaults(func=cmd_import_prompts)

    p = sub.add_parser(
        "prompt-sets",
        help="list the prompt sets; mark or unmark them held out",
        description=(
            "Lists every prompt set (prompts, categories, held out). A held-out set is kept "
            "for final evaluation: `arena leaderboard --held-out exclude` (or only) and "
            "`arena export --held-out ...` filter on it, `arena status` lists it and the "
            "exported prompts table marks its prompts. Example: arena prompt-sets --held-out "
            "parti --not-held-out dev"
        ),
    )
    p.add_argument(
        "--held-out", action="append", default=[], metavar="SET", help="mark SET held out"
    )
    p.add_argument(
        "--not-held-out",
        action="append",
        default=[],
        metavar="SET",
        help="mark SET not held out",
    )
    p.set_defaults(func=cmd_prompt_sets)

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
        report = import_prompts(
            store,
            args.file,
            args.prompt_set,
            args.category,
            fmt=args.fmt,
            skills=args.skills,
            held_out=args.held_out,
        )
    except IngestError as exc:
        raise CommandError(f"{exc} Nothing was imported from this file.") from None
    print(report.summary())
    return 0


def cmd_prompt_sets(args) -> int:
    from arena.cli import CommandError

    both = sorted(set(args.held_out) & set(args.not_held_out))
    if both:
        raise CommandError(f"{', '.join(both)}: given with both --held-out and --not-held-out.")
    store = open_store(args)
    if args.held_out:
        store.set_held_out(args.held_out, True)
    if args.not_held_out:
        store.set_held_out(args.not_held_out, False)
    print(format_prompt_sets(store.prompt_sets_frame()))
    return 0


def format_prompt_sets(frame) -> str:
    if frame.empty:
        return "no prompt sets yet; import one with `arena import-prompts FILE --set NAME`."
    width = max(10, *(len(n) for n in frame.prompt_set))
    lines = [f"{'prompt set':<{width}}  {'prompts':>7}  {'categories':>10}  held out"]
    lines += [
        f"{r.prompt_set:<{width}}  {r.prompts:>7}  {r.categories:>10}  "
        f"{'yes' if r.held_out else 'no'}"
        for r in frame.itertuples()
    ]
    return "\n".join(lines)


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
