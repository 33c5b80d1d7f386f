"""Agreement statistics and exports at scale.

Part 1 (in memory): 1,000,000 votes on 160,000 images (8 models x 20,000
prompts), 6 metrics, 5,000 raters -> every agreement table with 1,000
prompt-bootstrap rounds (:func:`arena.stats.agreement.agreement_report`).
Target: <= 10 s on 2 cores.

Part 2 (a real SQLite workspace, bulk-inserted): `arena export` of everything
(votes, scores, leaderboard with 1,000 rounds, agreement tables, report.html).
Target: <= 30 s.

Prints wall time and process CPU time (all threads). On a shared machine the
CPU time is the steadier figure: on an idle 2-core machine the wall time is at
most about the CPU time.

    .venv/bin/python benchmarks/agreement.py [--votes N] [--rounds R] [--skip-export]
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from arena.stats.agreement import agreement_report  # noqa: E402
from tests.agreement_data import benchmark_arena, populate_store  # noqa: E402


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    def __str__(self):
        return f"wall {self.wall:6.2f} s   cpu {self.cpu:6.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--images", type=int, default=160_000)
    parser.add_argument("--metrics", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--skip-export", action="store_true")
    args = parser.parse_args()
    prompts = args.images // args.models
    print(
        f"{args.votes:,} votes, {args.models * prompts:,} images ({args.models} models x "
        f"{prompts:,} prompts), {args.metrics} metrics, {args.rounds} bootstrap rounds; "
        f"{len(os.sched_getaffinity(0))} CPUs visible, load average {os.getloadavg()[0]:.1f}"
    )
    with Clock() as c:
        data = benchmark_arena(args.votes, args.models, args.images, args.metrics)
    print(f"synthetic frames built            {c}")
    with Clock() as c:
        report = agreement_report(
            data.votes,
            data.scores,
            np.random.default_rng(0),
            images=data.images,
            prompts=data.prompts,
            rounds=args.rounds,
        )
    print(f"agreement tables (all, bootstrap)  {c}   target <= 10 s")
    print(
        report.accuracy[["metric", "protocol", "accuracy", "n", "ci_low", "ci_high"]].to_string(
            index=False
        )
    )
    if args.skip_export:
        return

    from arena.reports.export import export_workspace
    from arena.storage.store import Store

    folder = Path(tempfile.mkdtemp(prefix="arena-bench-"))
    try:
        store = Store.open(folder / "ws", bootstrap_rounds=args.rounds)
        with Clock() as c:
            populate_store(store, data)
        print(f"workspace bulk-inserted            {c}")
        # `arena export` holds no synthetic frames: drop them, so that their million-row
        # object columns do not slow this process's allocations as no user's would.
        del data, report
        gc.collect()
        with Clock() as c:
            result = export_workspace(store, folder / "export", fmt="csv")
        size = sum(p.stat().st_size for p in result.files) / 1e6
        print(f"arena export (csv, everything)     {c}   target <= 30 s   ({size:.0f} MB)")
        with Clock() as c:
            votes = store.votes_frame()
        print(f"  of which store.votes_frame()     {c}   ({len(votes):,} rows)")
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
