"""Opening a report tab: what a Leaderboard or Agreement tab costs when it is selected.

Tabs recompute when they are opened (so a vote shows without pressing Refresh); the
report services cache on the store's data signature, so opening a tab on unchanged data
should cost the signature query and the redraw of the figures, not the computation.

Timed on a real SQLite workspace with a simulated arena (``--models`` x ``--prompts``,
``--votes`` votes, two metrics), the tab functions the Gradio select event runs:
- ``first``: the first open (the report is computed: BT fit, bootstrap, agreement);
- ``open again``: a second open on the same data (cache hit: signature + figures);
- ``after a vote``: an open after one more vote (the signature changed: recomputed);
- ``signature``: the data-signature query alone.

Run: ``.venv/bin/python benchmarks/tab_open.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from arena.config import load_settings
from arena.reports.agreement import AgreementService
from arena.reports.leaderboard import LeaderboardService
from arena.storage.store import Store
from arena.ui.agreement_tab import agreement_outputs
from arena.ui.leaderboard_tab import board_outputs
from tests.agreement_data import populate_store, synthetic_arena


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def one_more_vote(store: Store, data) -> None:
    """One more (simulated) vote through the store's verb: the data signature changes."""
    from arena.storage.rater_verbs import VotedBattle

    first = data.votes.iloc[0]
    now = datetime.now(UTC).replace(tzinfo=None)
    rater = store.rater_id("bench-rater", kind="simulated")
    battle = VotedBattle(
        int(first.prompt_id),
        int(first.left_image_id),
        int(first.right_image_id),
        rater,
        "left",
        2000,
        now,
        now,
    )
    assert store.add_voted_battles([battle]) == 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--prompts", type=int, default=500)
    parser.add_argument("--votes", type=int, default=100_000)
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="4 models, 50 prompts, 2,000 votes")
    args = parser.parse_args()
    if args.quick:
        args.models, args.prompts, args.votes = 4, 50, 2_000
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            env={},
            workspace=folder,
            bootstrap_rounds=args.bootstrap,
        )
        store = Store(settings)
        data = synthetic_arena(
            np.random.default_rng(0),
            n_models=args.models,
            n_prompts=args.prompts,
            n_votes=args.votes,
        )
        populate_store(store, data)
        print(
            f"{args.models} models, {args.prompts} prompts, {args.votes:,} votes, "
            f"{args.bootstrap} bootstrap rounds; {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores, Python {platform.python_version()}"
        )
        tabs = {
            "Leaderboard": (LeaderboardService(store), board_outputs),
            "Agreement": (AgreementService(store), agreement_outputs),
        }
        print(f"{'tab':<12} {'first':>8} {'open again':>11} {'after a vote':>13} {'signature':>10}")
        for name, (service, outputs) in tabs.items():
            first = timed(lambda: outputs(service))  # noqa: B023
            again = timed(lambda: outputs(service))  # noqa: B023
            one_more_vote(store, data)
            after = timed(lambda: outputs(service))  # noqa: B023
            signature = timed(service.signature)
            print(
                f"{name:<12} {first:>7.2f}s {again:>10.3f}s {after:>12.2f}s "
                f"{signature * 1000:>8.1f}ms"
            )
        store.close()


if __name__ == "__main__":
    main()
