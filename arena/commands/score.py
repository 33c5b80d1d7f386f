"""`arena score` (the batched scoring job) and `arena metrics` (what can be scored).

torch and the ``scoring`` package are imported inside the command functions only,
so `arena --help` and the web side never load them.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score every image of the workspace with automatic metrics (resumable)",
        description=(
            "Compute automatic metrics for every image that lacks a score for the metric's "
            "current version; commits per batch, so an interrupted run resumes. "
            "Example: arena score --metrics clip,aesthetic --device cuda --batch-size 64"
        ),
    )
    p.add_argument(
        "--metrics",
        default="classical",
        help="comma-separated metric names or groups: clip, aesthetic, clipiqa, hpsv2, "
        "pickscore, hpsv3, vqascore, tags, anime-aesthetic, sharpness, colorfulness, "
        "contrast, classical (= the last three); "
        "default classical. `arena metrics` lists them.",
    )
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per batch (default: setting score_batch_size)",
    )
    p.add_argument(
        "--dtype",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="compute precision: auto = fp16 autocast on CUDA (bf16 for hpsv3 and vqascore "
        "on GPUs that have it), fp32 on CPU",
    )
    p.add_argument(
        "--num-workers",
        type=int,
        default=None,
        help="DataLoader worker processes decoding images (default: setting "
        "score_num_workers; 0 decodes in the main process)",
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="explicit weight file or folder for metric NAME (repeatable); aesthetic also "
        "uses the path given for clip as its ViT-L/14 encoder",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "metrics", help="list metrics, their versions, weight files and where they are looked for"
    )
    p.set_defaults(func=cmd_metrics)


def parse_weights(pairs: list[str]) -> dict[str, str]:
    from arena.cli import CommandError

    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name.strip() or not path.strip():
            raise CommandError(
                f"--weights {pair!r}: expected NAME=PATH, e.g. --weights clip=/models/vit.bin"
            )
        out[name.strip()] = path.strip()
    return out


def _device(requested: str, dtype: str | None = None, ranks=None) -> str:
    """The device to run on ("auto": cuda when available), checked before any weights load
    (:func:`scoring.devices.check_device`: the GPU exists, bf16 where asked is supported).
    Under a launcher (``ranks``) ``cuda`` is this rank's GPU, ``cuda:LOCAL_RANK``."""
    import torch

    from arena.cli import CommandError
    from scoring.devices import check_device
    from scoring.sharding import ShardingError

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "mps" or not (requested == "cpu" or requested.startswith("cuda")):
        raise CommandError(f"--device {requested!r}: expected cpu, cuda, cuda:N or auto.")
    try:
        if ranks is not None:
            requested = ranks.device(requested)
        return check_device(requested, dtype)
    except (ValueError, ShardingError) as exc:
        raise CommandError(str(exc)) from None


def start_ranks(store):
    """This process's ranks under torchrun / accelerate launch (one rank without), with
    the database checked for them (:func:`scoring.sharding.start`)."""
    from arena.cli import CommandError
    from scoring.sharding import ShardingError, start

    try:
        return start(store.engine.dialect.name)
    except ShardingError as exc:
        raise CommandError(str(exc)) from None


def cmd_score(args) -> int:
    from arena.cli import CommandError
    from arena.commands.workspace import open_store

    store = open_store(args)
    settings = store.settings
    batch_size = args.batch_size if args.batch_size is not None else settings.score_batch_size
    workers = args.num_workers if args.num_workers is not None else settings.score_num_workers
    if batch_size < 1:
        raise CommandError(f"--batch-size {batch_size}: must be 1 or more.")
    if workers < 0:
        raise CommandError(f"--num-workers {workers}: must be 0 or more.")
    names = [n for n in args.metrics.split(",") if n.strip()]
    if not names:
        raise CommandError("--metrics is empty; name at least one metric (see `arena metrics`).")
    weights = parse_weights(args.weights)

    from scoring.metrics.openai_clip import parse_dtype
    from scoring.metrics.runner import build_metrics, merge_summaries, run
    from scoring.weights import WeightSources

    dtype = None if args.dtype == "auto" else args.dtype
    ranks = start_ranks(store)
    device = _device(args.device, dtype, ranks)
    try:
        parse_dtype(device, dtype)
        metrics = build_metrics(
            names, device=device, dtype=dtype, weights=weights, sources=WeightSources.of(settings)
        )
    except KeyError as exc:
        raise CommandError(exc.args[0]) from None
    except ValueError as exc:  # unreadable weights, dtype/device mismatch
        raise CommandError(str(exc)) from None
    described = [f"{m.name} ({'; '.join(filter(None, (m.version, m.runtime)))})" for m in metrics]
    where = f"{device} ({ranks.world} ranks)" if ranks.world > 1 else device
    if ranks.is_main:
        print(
            f"scoring with {', '.join(described)} on {where}, batch {batch_size}, "
            f"{workers} worker(s)"
        )
    try:
        part = run(
            store,
            metrics,
            batch_size=batch_size,
            num_workers=workers,
            device=device,
            progress=not args.no_progress,
            ranks=ranks,
        )
        parts = ranks.gather(part)
    finally:
        ranks.close()
    if parts is None:  # not rank 0: rank 0 prints the summary of all ranks
        return 0
    summary = merge_summaries(parts)
    if summary.images_selected == 0:
        print("nothing to do: every image already has these scores.")
    else:
        print(summary.format())
    return 0


def cmd_metrics(args) -> int:
    from arena.cli import settings_from_args
    from scoring.metrics.base import METRIC_GROUPS, get_metric, list_metrics
    from scoring.weights import WeightSources, candidates, locate

    sources = WeightSources.of(settings_from_args(args))

    for name in list_metrics():
        cls = get_metric(name)
        prompt = "needs the prompt" if cls.needs_prompt else "image only"
        better = "higher is better" if cls.higher_is_better else "lower is better"
        print(f"{name}  (version {cls.version}; {prompt}; {better})")
        if cls.description:
            print(f"    {cls.description}")
        if not cls.weight_files:
            print("    weights: none")
        for spec in cls.weight_files:
            found = locate(spec, sources)
            status = f"found: {found}" if found else "MISSING"
            print(f"    weights: {spec.repo_id} / {spec.filename}  [{status}]")
            places = [str(p) for p in candidates(spec, None, sources)]
            places.append(f"Hugging Face cache (repo {spec.repo_id})")
            print(f"      looked for in: {'; '.join(places)}")
    for group, members in METRIC_GROUPS.items():
        print(f"group {group}: {', '.join(members)}")
    print(
        "Give a path with `arena score --weights NAME=PATH`, a folder with ARENA_WEIGHTS_DIR, "
        "or allow downloads with ARENA_ALLOW_NETWORK=1."
    )
    return 0
