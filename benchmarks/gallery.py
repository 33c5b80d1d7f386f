"""Gallery benchmark: the Review tab's prompt view on a 160,000-image workspace.

Builds a real SQLite workspace with bulk inserts (8 models x 20,000 prompts = 160,000
images, 6 metrics = 960,000 scores, 1,000,000 votes from 5,000 raters: the agreement
benchmark's synthetic arena, ``tests/agreement_data.py``) and 20,000 reviewer flags, then
times what the server does for one page of the gallery's prompt view
(:func:`arena.reports.gallery.prompt_view`: the prompt's seeds, its images, their scores,
vote counts and flags, the HTML with opaque image handles) for random prompts. Target:
<= 300 ms server side. Also timed, for reference: the model view (one model's 20,000
images sorted on a metric, one page of 24), a blind sample of 50 and the failure rates.

Prints wall and CPU time per step (median, p95, max over the prompts). Run it under the
benchmarks' lock so that other timings do not collide:

    flock /tmp/arena-bench.lock .venv/bin/python benchmarks/gallery.py [--votes N] [--views N]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from arena.reports import gallery as gv  # noqa: E402
from arena.reports.failures import FailureService  # noqa: E402
from arena.storage.store import Store  # noqa: E402
from arena.ui.review_images import ImageHandles  # noqa: E402
from tests.agreement_data import benchmark_arena, populate_store  # noqa: E402

TARGET_MS = 300.0


def timed(fn) -> tuple[float, float]:
    """(wall ms, CPU ms) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return 1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)


def summary(label: str, times: list[tuple[float, float]], target: float | None = None) -> None:
    wall = np.array([t[0] for t in times])
    cpu = np.array([t[1] for t in times])
    verdict = ""
    if target is not None:
        ok = np.percentile(wall, 95) <= target
        verdict = f"   target <= {target:.0f} ms (p95): {'met' if ok else 'MISSED'}"
    print(
        f"{label:<44} wall median {np.median(wall):7.1f} ms  p95 {np.percentile(wall, 95):7.1f}"
        f"  max {wall.max():7.1f}   cpu median {np.median(cpu):7.1f} ms  (n={len(times)})" + verdict
    )


def add_flags(store, images, n: int, seed: int) -> None:
    """``n`` verdicts by 5 reviewers on random images, a third of them blind."""
    from datetime import datetime

    from sqlalchemy import insert

    from arena.storage import db

    rng = np.random.default_rng(seed)
    modes = store.failure_modes
    picked = rng.choice(images["image_id"].to_numpy(), n, replace=False)
    now = datetime(2025, 1, 2)
    rows = []
    for k, image_id in enumerate(picked.tolist()):
        flag = "none" if rng.random() < 0.6 else modes[int(rng.integers(0, len(modes) - 1))]
        rows.append(
            {
                "image_id": image_id,
                "reviewer": f"reviewer-{k % 5}",
                "flag": flag,
                "note": "",
                "blind": bool(k % 3 == 0),
                "created_at": now,
                "updated_at": now,
            }
        )
    with store.session() as s:
        s.execute(insert(db.ImageFlag.__table__), rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--images", type=int, default=160_000)
    parser.add_argument("--metrics", type=int, default=6)
    parser.add_argument("--flags", type=int, default=20_000)
    parser.add_argument("--views", type=int, default=200, help="prompt views timed")
    parser.add_argument("--keep", default="", help="keep the workspace in this folder")
    args = parser.parse_args()
    prompts = args.images // args.models
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.machine()} {cores} cores, load average {os.getloadavg()[0]:.2f}; "
        f"{args.votes:,} votes, {args.models * prompts:,} images ({args.models} models x "
        f"{prompts:,} prompts), {args.metrics} metrics, {args.flags:,} flags"
    )
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="arena-gallery-"))
    try:
        store = Store.open(folder / "ws")
        start = time.perf_counter()
        if store.status()["images"] == 0:
            data = benchmark_arena(args.votes, args.models, args.images, args.metrics)
            populate_store(store, data)
            add_flags(store, data.images, args.flags, seed=1)
            print(f"workspace built (bulk inserts)      {time.perf_counter() - start:6.1f} s")
        status = store.status()
        print(f"workspace: {status['images']:,} images, {status['votes']:,} votes")
        handles = ImageHandles.of(store)
        rng = np.random.default_rng(2)
        prompt_ids = store.gallery_prompt_ids()
        chosen = rng.choice(prompt_ids, args.views, replace=False)
        first = timed(lambda: gv.prompt_view(store, handles, int(chosen[0])))
        print(f"first prompt view (cold caches)     {first[0]:7.1f} ms wall")
        views = [timed(lambda p=p: gv.prompt_view(store, handles, int(p))) for p in chosen]
        summary("prompt view (8 models, one seed)", views, TARGET_MS)
        view = gv.prompt_view(store, handles, int(chosen[0]))
        assert len(view.image_ids) == args.models and "votes " in view.html
        parts = {
            "  of which images of the prompt": lambda p: store.gallery_images(prompt_id=p),
            "  of which scores of its images": lambda p: store.image_scores(ids_of[p]),
            "  of which vote counts": lambda p: store.image_vote_counts(ids_of[p]),
            "  of which flags": lambda p: store.image_flags_frame(ids_of[p]),
        }
        ids_of = {
            int(p): store.gallery_images(prompt_id=int(p))["image_id"].tolist() for p in chosen[:50]
        }
        for label, fn in parts.items():
            summary(label, [timed(lambda p=p, fn=fn: fn(int(p))) for p in chosen[:50]])
        models = store.model_names()
        model_views = [
            timed(lambda m=m: gv.model_view(store, handles, m, "metric0", descending=True))
            for m in models
        ]
        summary("model view (one model, sorted on a metric, 24)", model_views)
        samples = [
            timed(lambda s=s: gv.draw_blind_sample(store, "reviewer-0", 50, s)) for s in range(5)
        ]
        summary("blind sample of 50", samples)
        rates = [timed(lambda: FailureService(store).get()) for _ in range(3)]
        summary("failure rates (uncached)", rates)
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
