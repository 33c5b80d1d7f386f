"""`arena distribution`: KID, FID, IS, CMMD, FD-DINO, the two diversities and AS per model.

torch and ``scoring`` are imported inside the command only.
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser(
        "distribution",
        help="model-level fidelity/diversity metrics against a reference set (KID, FID, IS, ...)",
        description=(
            "Compare each model's images with a reference set; features are cached, so the "
            "reference set is embedded once and a re-run extracts nothing. Example: arena "
            "distribution --metrics kid,fid,cmmd,fd-dino,diversity --reference danbooru-real "
            "--device cuda"
        ),
    )
    p.add_argument(
        "--metrics",
        default="kid,fid,cmmd,fd-dino,diversity",
        help="comma-separated: kid, fid, cmmd, fd-dino (distances to the reference set); "
        "is (Inception Score, of the model's own images); diversity (CLIP-cosine diversity: "
        "mean pairwise 1 - cos of CLIP embeddings within a prompt); div-lpips (DreamBooth "
        "DIV: mean pairwise LPIPS within a prompt); as (the model-level Anomaly Score); "
        "default kid,fid,cmmd,fd-dino,diversity",
    )
    p.add_argument("--reference", required=True, help="reference set name (arena reference add)")
    p.add_argument("--models", default=None, help="comma-separated models (default: all)")
    p.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N, or auto (cuda when available)"
    )
    p.add_argument("--batch-size", type=int, default=None, help="images per batch")
    p.add_argument("--num-workers", type=int, default=None, help="DataLoader decode workers")
    p.add_argument("--seed", type=int, default=0, help="seed of the KID subsets (default 0)")
    p.add_argument("--kid-subsets", type=int, default=100, help="KID subsets (default 100)")
    p.add_argument(
        "--kid-subset-size", type=int, default=1000, help="KID subset size (default 1000)"
    )
    p.add_argument(
        "--weights",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="explicit weights: inception=FILE (KID, FID, IS), cmmd=FILE (CLIP ViT-L/14@336), "
        "fd-dino=FOLDER (DINOv2), anomaly=FOLDER, alexnet=FILE and lpips=FILE (div-lpips: "
        "torchvision's AlexNet, lpips' alex.pth) or div-lpips=FOLDER holding both (repeatable)",
    )
    p.add_argument(
        "--by",
        choices=("category", "prompt-set"),
        default=None,
        help="compute each number per prompt category (or prompt set) of each model's images, "
        "against the whole reference set; stored beside the whole-model numbers, shown by the "
        "leaderboard and agreement pages under that filter (default: all a model's images)",
    )
    p.add_argument(
        "--all-images",
        action="store_true",
        help="every non-broken image of each model, not only the common set (the (prompt, "
        "seed) cells where every compared model has a non-broken image; the default unless "
        "ARENA_PAIRED_METRICS=0)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_distribution)


def cmd_distribution(args) -> int:
    from arena.cli import CommandError
    from arena.commands.score import _device, parse_weights, start_ranks
    from arena.commands.workspace import open_store

    store = open_store(args)
    settings = store.settings
    batch = args.batch_size if args.batch_size is not None else settings.score_batch_size
    workers = args.num_workers if args.num_workers is not None else settings.score_num_workers
    if batch < 1:
        raise CommandError(f"--batch-size {batch}: must be 1 or more.")
    if args.kid_subsets < 1 or args.kid_subset_size < 2:
        raise CommandError("--kid-subsets must be ≥ 1 and --kid-subset-size ≥ 2.")
    weights = parse_weights(args.weights)

    from scoring.distribution.run import DistributionError, format_results, run
    from scoring.weights import MissingWeightsError, WeightSources

    ranks = start_ranks(store)
    device = _device(args.device, ranks=ranks)
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    try:
        results = run(
            store,
            args.metrics,
            args.reference,
            models=models,
            device=device,
            batch_size=batch,
            num_workers=workers,
            weights=weights,
            sources=WeightSources.of(settings),
            seed=args.seed,
            kid_subsets=args.kid_subsets,
            kid_subset_size=args.kid_subset_size,
            progress=not args.no_progress,
            ranks=ranks,
            by=args.by,
            paired=bool(settings.paired_metrics) and not args.all_images,
        )
    except (DistributionError, MissingWeightsError) as exc:
        raise CommandError(str(exc)) from None
    except ValueError as exc:  # unreadable weights, undecodable image
        raise CommandError(str(exc)) from None
    finally:
        ranks.close()
    if ranks.is_main:  # the numbers are rank 0's; the other ranks extracted features
        print(format_results(results))
    return 0
