"""`arena judge`: a vision-language model votes on image pairs as its own rater.

torch and the ``scoring`` package are imported inside the command only.
"""

from __future__ import annotations

import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "judge",
        help="let a vision-language model vote on image pairs as an AI judge (resumable)",
        description=(
            "Show a local vision-language model (any chat model transformers loads as "
            "image-text-to-text) the prompt and two images and store its verdict as a vote "
            "of its own rater (kind judge), each pair in both orders. By default it judges "
            "the pairs people voted on, most-voted first; its votes stay out of the human "
            "leaderboard. Example: arena judge --model /models/Qwen2-VL-7B-Instruct "
            "--votes 2000 --device cuda --group vlm"
        ),
    )
    p.add_argument("--model", required=True, help="the VLM's folder (config, weights, processor)")
    p.add_argument(
        "--votes",
        type=int,
        default=None,
        help="most votes this run stores (each pair is two votes, one per order); default: "
        "every order still to judge (with --pairs any: required)",
    )
    p.add_argument(
        "--pairs",
        choices=("voted", "any"),
        default="voted",
        help="voted: the image pairs people voted on (default); any: those first, then new "
        "pairs the matchmaker chooses",
    )
    p.add_argument("--name", default=None, help="the judge's name (default: MODEL#TEMPLATEHASH)")
    p.add_argument("--group", default=None, help="rater group of the judge, e.g. vlm")
    p.add_argument(
        "--template",
        default=None,
        metavar="FILE",
        help="a text file with the question ({prompt} marks the prompt); default: setting "
        "judge_template, else the built-in template",
    )
    p.add_argument(
        "--answers",
        default=None,
        help="answer word per outcome, e.g. left=A,right=B,tie=C,both_bad=D (default: "
        "setting judge_answers)",
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="orders per batch (default: setting judge_batch_size)",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)"
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="weights and compute precision: auto = bf16 on GPUs that have it (else fp16), "
        "fp32 on CPU",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_judge)


def _template(args, settings):
    from arena.cli import CommandError
    from scoring.judge import DEFAULT_TEMPLATE, JudgeTemplate, JudgeTemplateError, parse_answers

    if args.template:
        path = Path(args.template)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(
                f"--template {args.template}: cannot read it as UTF-8 text ({exc})."
            ) from None
    else:
        text = settings.judge_template or DEFAULT_TEMPLATE
    try:
        answers = parse_answers(args.answers or settings.judge_answers)
        return JudgeTemplate(text, answers)
    except JudgeTemplateError as exc:
        raise CommandError(str(exc)) from None


def _dtype(device: str, requested: str) -> str | None:
    import torch

    if requested != "auto":
        return requested
    if not device.startswith("cuda"):
        return None
    index = int(device.partition(":")[2] or 0)
    major, _minor = torch.cuda.get_device_capability(index)
    return "bf16" if major >= 8 else "fp16"


def cmd_judge(args) -> int:
    from arena.cli import CommandError
    from arena.commands.score import _device
    from arena.commands.workspace import open_store
    from arena.storage.errors import StoreError
    from arena.voting.judging import run_judge

    store = open_store(args)
    settings = store.settings
    batch = args.batch_size if args.batch_size is not None else settings.judge_batch_size
    if batch < 1:
        raise CommandError(f"--batch-size {batch}: must be 1 or more.")
    if args.votes is not None and args.votes < 1:
        raise CommandError(f"--votes {args.votes}: must be 1 or more.")
    if args.pairs == "any" and args.votes is None:
        raise CommandError("--pairs any needs --votes N: the matchmaker never runs out of pairs.")
    folder = Path(args.model)
    if not (folder / "config.json").is_file():
        raise CommandError(
            f"--model {args.model}: expected a model folder with config.json, the weights and "
            "the processor files (e.g. huggingface-cli download Qwen/Qwen2-VL-7B-Instruct "
            "--local-dir FOLDER)."
        )
    template = _template(args, settings)
    device = _device(args.device, None if args.dtype == "auto" else args.dtype)
    dtype = _dtype(device, args.dtype)

    from scoring.judge import JudgeTemplateError, PairJudge

    try:
        judge = PairJudge.load(folder, device, dtype, template, name=args.name)
    except (ValueError, OSError, JudgeTemplateError) as exc:
        raise CommandError(str(exc)) from None
    print(f"judge {judge.name}: {judge.vlm.name} on {device} ({dtype or 'fp32'}), batch {batch}")
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.votes, unit="vote", desc="judge", file=sys.stderr)

    def progress(n: int) -> None:
        if bar is not None:
            bar.update(n - bar.n)

    try:
        summary = run_judge(
            store,
            judge,
            group=args.group,
            max_votes=args.votes,
            batch_size=batch,
            pairs=args.pairs,
            progress=progress,
        )
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        if bar is not None:
            bar.close()
    if summary.planned == 0:
        if summary.voted_pairs == 0:
            print(
                "nothing to do: people have voted on no pair yet; judge new pairs with "
                "--pairs any --votes N."
            )
        else:
            print(
                f"nothing to do: this judge has voted on all {summary.voted_pairs} pairs "
                "people voted on, in both orders (--pairs any --votes N judges new ones)."
            )
        return 0
    print("\n".join(summary.lines()))
    return 0
