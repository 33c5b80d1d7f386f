"""`arena add-model` and `arena generate`: checkpoints -> images in the workspace.

torch and diffusers are imported inside `cmd_generate` only, so `arena --help`,
`arena add-model` and the web app never load them.
"""

from __future__ import annotations

import re

from arena.commands.workspace import open_store
from arena.intake.checkpoints import CheckpointError, check_diffusers, check_single_file


def register(sub) -> None:
    p = sub.add_parser(
        "add-model",
        help="register a diffusers checkpoint (folder, hub id or single .safetensors file)",
    )
    p.add_argument("name", help="model name shown on the leaderboard (after a vote)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--diffusers",
        metavar="PATH|HUB_ID",
        help="a diffusers folder with model_index.json, or a hub id like owner/name",
    )
    src.add_argument(
        "--single-file", metavar="FILE", help="a single .safetensors checkpoint (A1111 style)"
    )
    p.add_argument(
        "--config",
        metavar="PATH|HUB_ID",
        help="with --single-file: a diffusers folder (or hub id) of the same architecture "
        "whose configs describe the checkpoint; needed offline",
    )
    p.add_argument("--description", default="", help="free text kept with the model")
    p.set_defaults(func=cmd_add_model)

    p = sub.add_parser("generate", help="generate the missing images of models over a prompt set")
    p.add_argument("--models", required=True, help="comma-separated model names (add-model)")
    p.add_argument("--prompts", required=True, metavar="SET", help="prompt set name")
    p.add_argument("--seeds", type=int, default=4, help="images per prompt (default 4)")
    p.add_argument("--base-seed", type=int, default=0, help="seed of the seed derivation")
    p.add_argument("--size", default="512x512", help="WIDTHxHEIGHT, multiples of 8")
    p.add_argument("--steps", type=int, default=28, help="denoising steps (default 28)")
    p.add_argument("--cfg", type=float, default=7.0, help="guidance scale (default 7)")
    p.add_argument(
        "--scheduler",
        default="default",
        help="default (the checkpoint's own), dpm++2m, dpm++2m_karras, euler, euler_a, ddim, ...",
    )
    p.add_argument("--negative", default="", help="negative prompt for every image")
    p.add_argument("--batch-size", type=int, default=8, help="images per pipeline call")
    p.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu or mps (default cuda)")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "fp16", "bf16", "fp32"),
        help="auto: fp16 on a GPU, fp32 on the CPU",
    )
    p.add_argument(
        "--attention-slicing",
        action="store_true",
        help="less memory, slower: replaces torch 2's fused attention; only if memory runs out",
    )
    p.add_argument("--vae-tiling", action="store_true", help="decode large images in tiles")
    p.add_argument(
        "--vae-fp32",
        action="store_true",
        help="decode every image with the VAE in fp32 while the UNet runs in fp16/bf16 "
        "(SD1.x/NAI anime VAEs overflow in fp16); part of the settings hash. Without it, "
        "an image that comes out NaN is decoded again in fp32",
    )
    p.add_argument(
        "--max-batches",
        type=int,
        default=None,
        help="stop after this many batches (a trial run); the next run continues",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def parse_size(text: str) -> tuple[int, int]:
    from arena.cli import CommandError

    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise CommandError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 640x640.")
    return int(m.group(1)), int(m.group(2))


def cmd_add_model(args) -> int:
    from arena.cli import CommandError

    store = open_store(args)
    allow_network = store.settings.allow_network
    try:
        if args.single_file:
            src = check_single_file(args.single_file, args.config, allow_network)
        else:
            if args.config:
                raise CommandError("--config goes with --single-file only.")
            src = check_diffusers(args.diffusers, allow_network)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    model_id = store.add_model(
        args.name, "diffusers", src.source, params=src.params(), description=args.description
    )
    print(f"model {args.name!r} (id {model_id}): {src.format} checkpoint {src.source}")
    return 0


def cmd_generate(args) -> int:
    from arena.cli import CommandError

    width, height = parse_size(args.size)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    store = open_store(args)
    from arena.commands.score import start_ranks
    from scoring.generation.job import format_summary, merge_summaries, run_generation
    from scoring.generation.pipeline import resolve_device_dtype
    from scoring.generation.settings import GenerationError, GenerationSettings
    from scoring.sharding import ShardingError

    ranks = start_ranks(store)
    try:
        device, dtype = resolve_device_dtype(ranks.device(args.device), args.dtype)
        settings = GenerationSettings(
            width=width,
            height=height,
            steps=args.steps,
            cfg=args.cfg,
            scheduler=args.scheduler,
            negative=args.negative,
            base_seed=args.base_seed,
            dtype=dtype,
            vae_fp32=args.vae_fp32,
        )
        summaries = run_generation(
            store,
            names,
            args.prompts,
            settings,
            seeds=args.seeds,
            batch_size=args.batch_size,
            device=device,
            allow_network=store.settings.allow_network,
            attention_slicing=args.attention_slicing,
            vae_tiling=args.vae_tiling,
            max_batches=args.max_batches,
            progress=not args.no_progress,
            ranks=ranks,
        )
        parts = ranks.gather(summaries)
    except (GenerationError, ShardingError) as exc:
        raise CommandError(str(exc)) from None
    finally:
        ranks.close()
    if parts is None:  # not rank 0: rank 0 prints the summary of all ranks
        return 0
    print(format_summary([merge_summaries(per_model) for per_model in zip(*parts, strict=True)]))
    return 0
