"""`arena report --candidate A --baseline B` on the 1M-vote benchmark workspace.

The workspace of ``benchmarks/agreement.py`` (1,000,000 votes on 160,000 images: 8 models x
20,000 prompts, 6 metrics, 5,000 raters), bulk-inserted into a real SQLite file, plus a FID
per model; then the whole command as a user runs it: reading the frames, the four pillars
(1,000 bootstrap rounds for the paired metric differences and the leaderboard), the
verdicts of a thresholds file, the HTML and Markdown written. Target: <= 30 s.

    .venv/bin/python benchmarks/report.py [--votes N] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from arena.cli import main as arena  # noqa: E402
from tests.agreement_data import benchmark_arena, populate_store  # noqa: E402

GATE = """
[win_rate]
min = 0.5
[rating]
min = -20
[metrics.metric0]
max_regression = 0.05
[model_metrics.fid]
max_regression = 2.0
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--images", type=int, default=160_000)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    from arena.storage.store import Store

    data = benchmark_arena(args.votes, args.models, args.images, 6)
    folder = Path(tempfile.mkdtemp(prefix="arena-bench-"))
    try:
        store = Store.open(folder / "ws", bootstrap_rounds=args.rounds)
        populate_store(store, data)
        names = store.model_names()
        for k, name in enumerate(names):
            store.put_model_metric(
                store.model_id(name), "fid", "real", 20.0 - k, None, 20_000, higher_is_better=False
            )
        store.close()
        (folder / "gate.toml").write_text(GATE, encoding="utf-8")
        candidate, baseline = names[1], names[0]
        gate, out = str(folder / "gate.toml"), str(folder / "out")
        argv = ["-w", str(folder / "ws"), "report", "--candidate", candidate, "--baseline",
                baseline, "--thresholds", gate, "--out", out]  # fmt: skip
        print(
            f"{args.votes:,} votes, {len(data.images):,} images, {args.rounds} rounds; "
            f"load average {os.getloadavg()[0]:.1f}; arena report {candidate} vs {baseline}"
        )
        wall, cpu = time.perf_counter(), time.process_time()
        status = arena(argv)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        print(f"arena report: wall {wall:.2f} s, cpu {cpu:.2f} s (target <= 30 s), exit {status}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
