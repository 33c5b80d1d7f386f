"""`arena demo`: the offline demo workspace and simulated votes."""

from __future__ import annotations

import time

from arena.commands.workspace import open_store


def register(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="build the offline demo into an empty workspace; add simulated votes",
        description=(
            "Build the offline demo (42 project-written prompts rendered by 4 procedural models "
            "of different quality, 3 seeds each, plus the 'demo-real' reference set) into the "
            "workspace when it has no images, then add N votes from simulated raters "
            "(kind 'simulated') with a hidden strength per model "
            "(arena.demo.models.DEMO_TRUE_STRENGTH)."
        ),
    )
    p.add_argument(
        "--simulate-votes",
        type=int,
        default=0,
        metavar="N",
        help="add N simulated votes (default 0)",
    )
    p.add_argument(
        "--seed", type=int, default=None, help="random seed (default: the seed setting, 0)"
    )
    p.add_argument(
        "--model-metrics",
        action="store_true",
        help=(
            "also compute KID, FID, CMMD, FD-DINO, diversity and AS of the demo models against "
            "'demo-real' with seeded random-weight stand-in extractors (tagged 'demo-random'; "
            "needs the ML extras; about 2-3 minutes on a 2-core CPU)"
        ),
    )
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from arena.cli import CommandError
    from arena.demo.build import build_demo
    from arena.demo.model_metrics import demo_model_metrics
    from arena.demo.raters import simulate_votes
    from arena.reports.stand_in import STAND_IN_TAG

    if args.simulate_votes < 0:
        raise CommandError(f"--simulate-votes {args.simulate_votes}: expected 0 or more.")
    store = open_store(args)
    seed = store.settings.seed if args.seed is None else args.seed
    if store.status()["images"] == 0:
        t0 = time.perf_counter()
        counts = build_demo(store, seed=seed)
        print(
            f"built the demo into {store.workspace}: {counts['prompts']} prompts, "
            f"{counts['images']} images in {time.perf_counter() - t0:.1f}s"
        )
    else:
        print(f"workspace {store.workspace} already has images; the demo was not rebuilt.")
    if args.simulate_votes:
        t0 = time.perf_counter()
        n = simulate_votes(store, args.simulate_votes, seed=seed)
        print(f"added {n} simulated votes in {time.perf_counter() - t0:.1f}s")
    if args.model_metrics:
        from arena.storage.store import StoreError
        from scoring.distribution.run import format_results

        t0 = time.perf_counter()
        try:
            results = demo_model_metrics(store, seed=seed, progress=True)
        except (StoreError, ValueError) as exc:  # missing extras; not a demo workspace
            raise CommandError(f"--model-metrics: {exc}") from None
        print(format_results(results))
        print(
            f"model-level numbers of {len({r.model for r in results})} demo models in "
            f"{time.perf_counter() - t0:.1f}s, with the demo's random-weight stand-in "
            f"extractors (tag '{STAND_IN_TAG}'): not comparable with real FID/KID values."
        )
    return 0
