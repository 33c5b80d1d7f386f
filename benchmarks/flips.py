"""Flip counts benchmark: how many votes hold each rank, at 100 models and 1M votes.

What is timed: ``arena.stats.flips.adjacent_flips`` and ``top_flip`` on the pair counts of
a simulated arena (the plain BT fit included, as a caller without ``Ratings.theta`` pays
it). Votes: BT truth θ ~ Normal(0, 1) (about 700 Elo points between the 5th and 95th
percentile), uniform random pairs, 10% ties of which a third both-bad. Aggregating the
votes into counts is timed apart (the leaderboard has the counts already).

Run: ``.venv/bin/python benchmarks/flips.py`` (``--models``, ``--votes``, ``--seed``).
Target: <= 5 s at 100 models / 1M votes on the 2-core sandbox.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from arena.stats.bradley_terry import bt_fit
from arena.stats.flips import adjacent_flips, fragile, top_flip
from arena.stats.pairs import aggregate


def simulated_counts(n_models: int, n_votes: int, seed: int = 0, tie_rate: float = 0.10):
    """Pair counts of ``n_votes`` simulated votes among ``n_models`` (see the module doc)."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0, n_models)
    left = rng.integers(0, n_models, n_votes)
    right = (left + rng.integers(1, n_models, n_votes)) % n_models
    p = 0.5 * (1.0 + np.tanh(0.5 * (theta[left] - theta[right])))
    tie = rng.random(n_votes) < tie_rate
    outcome = np.where(
        tie, np.where(rng.random(n_votes) < 1 / 3, 3, 2), np.where(rng.random(n_votes) < p, 0, 1)
    )
    return aggregate(n_models, left, right, outcome)


def time_flips(n_models: int = 100, n_votes: int = 1_000_000, seed: int = 0) -> dict:
    """Simulate, time adjacent_flips + top_flip, print and return the figures."""
    start = time.perf_counter()
    counts = simulated_counts(n_models, n_votes, seed)
    aggregate_s = time.perf_counter() - start
    ranked = np.ones(n_models, dtype=bool)
    start = time.perf_counter()
    cpu = time.process_time()
    flips = adjacent_flips(counts, "split", ranked)
    top = top_flip(counts, "split", ranked)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    votes = np.array([f.votes for f in flips], dtype=float)
    exact = sum(f.method == "exact" for f in flips)
    figures = {
        "models": n_models,
        "votes": n_votes,
        "aggregate_s": aggregate_s,
        "flips_wall_s": wall,
        "flips_cpu_s": cpu,
        "adjacent_exact": exact,
        "adjacent_median_votes": float(np.median(votes)),
        "adjacent_min_votes": float(votes.min()),
        "adjacent_fragile": sum(fragile(f) for f in flips),
        "top_votes": top.votes,
        "top_method": top.method,
    }
    print(
        f"{n_models} models, {n_votes:,} votes: adjacent_flips + top_flip {wall:.2f} s wall "
        f"({cpu:.2f} s CPU); aggregation {aggregate_s:.2f} s.\n"
        f"  adjacent pairs: {len(flips)} ({exact} exact), votes to flip median "
        f"{figures['adjacent_median_votes']:.0f}, min {figures['adjacent_min_votes']:.0f}, "
        f"{figures['adjacent_fragile']} fragile; top: {top.votes} votes ({top.method}, "
        f"model {top.upper} by {top.lower})"
    )
    return figures


def check_verified(n_models: int = 100, n_votes: int = 1_000_000, seed: int = 0) -> None:
    """Untimed: every reported removal flips its pair on a cold refit."""
    counts = simulated_counts(n_models, n_votes, seed)
    ranked = np.ones(n_models, dtype=bool)
    for f in [*adjacent_flips(counts, "split", ranked), top_flip(counts, "split", ranked)]:
        r = f.removed
        left = type(counts)(
            counts.wins - r.wins, counts.ties - r.ties, counts.both_bad - r.both_bad
        )
        theta = bt_fit(left.win_matrix("split"))
        assert theta[f.lower] >= theta[f.upper] - 1e-9, f
    print("  every removal verified by a cold refit")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--verify", action="store_true", help="also refit every removal cold")
    args = parser.parse_args()
    for _ in range(args.repeats):
        time_flips(args.models, args.votes, args.seed)
    if args.verify:
        check_verified(args.models, args.votes, args.seed)


if __name__ == "__main__":
    main()
