"""Leaderboard benchmark: 1M votes -> the finished leaderboard frame, vs Chatbot Arena's method.

What is timed (ours): ``arena.reports.leaderboard.leaderboard_frame`` on a votes table
held in memory (the columns of ``Store.votes_frame``): names -> indices,
aggregation, online Elo, the Bradley-Terry fit, 1,000 bootstrap rounds,
intervals, rank upper bounds, win-rate / predicted / battle-count matrices,
per-model rates, and the frame.

The baseline is the method of Chatbot Arena's public pipeline (FastChat
``elo_analysis.py`` / ``compute_bootstrap_bt``), reproduced here: merge
identical (model_a, model_b, outcome) battles into counts with ``np.unique``,
draw all rounds with one ``rng.multinomial`` over those rows, and refit each
round with scipy L-BFGS-B on the weighted logistic BT loss (ties = 0.5), in a
``multiprocessing.Pool`` over the cores. Its rounds are independent and cost
the same, so we time a subset (``--baseline-rounds``, default 50) of the
draw and the fits and extrapolate linearly to 1,000; preprocessing and the
point fit are timed in full.

Run: ``.venv/bin/python benchmarks/leaderboard.py`` (add ``--quick`` for a
smoke run). Peak memory is measured with tracemalloc in a separate pass at
several vote counts, so the timed runs are not slowed by tracing.
``--models 300 --ours-only`` times ours alone at an LMArena-sized board (300
models; target 2 s for 1M votes and 1,000 rounds), without the baseline and the
memory pass.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import platform
import resource
import time
import tracemalloc
from functools import partial

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import expit

from arena.reports.leaderboard import leaderboard_frame
from arena.stats.elo import THETA_TO_ELO


# -- synthetic votes -------------------------------------------------------------------------
def synthetic_votes(n_models: int, n_votes: int, seed: int = 0, tie_rate: float = 0.10):
    """A votes table like ``Store.votes_frame()``: BT strengths spread over ~800 Elo points,
    ~10% ties (of which a third both-bad), uniform random pairs and sides."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.2, n_models)
    left = rng.integers(0, n_models, n_votes)
    right = (left + rng.integers(1, n_models, n_votes)) % n_models
    p = expit(theta[left] - theta[right])
    u = rng.random(n_votes)
    outcome = np.where(
        u < tie_rate,
        np.where(rng.random(n_votes) < 1 / 3, "both_bad", "tie"),
        np.where(rng.random(n_votes) < p, "left", "right"),
    ).astype(object)
    names = np.array([f"model-{i:03d}" for i in range(n_models)], dtype=object)
    start = np.datetime64("2025-01-01T00:00:00")
    return pd.DataFrame(
        {
            "vote_id": np.arange(1, n_votes + 1),
            "created_at": start + np.arange(n_votes).astype("timedelta64[s]"),
            "outcome": outcome,
            "rater_kind": "simulated",
            "category": "general",
            "prompt_set": "bench",
            "left_model": names[left],
            "right_model": names[right],
        }
    )


# -- the baseline: Chatbot Arena's public pipeline ------------------------------------------
def cba_preprocess(df: pd.DataFrame):
    n_rows = len(df)
    model_indices, models = pd.factorize(pd.concat([df["left_model"], df["right_model"]]))
    matchups = np.column_stack([model_indices[:n_rows], model_indices[n_rows:]])
    schedule = np.full((n_rows, 3), fill_value=1, dtype=np.int32)
    schedule[:, [0, 1]] = matchups
    schedule[(df["outcome"] == "left").to_numpy(), 2] = 2
    schedule[(df["outcome"] == "right").to_numpy(), 2] = 0
    matchups_outcomes, weights = np.unique(schedule, return_counts=True, axis=0)
    matchups = matchups_outcomes[:, [0, 1]]
    outcomes = matchups_outcomes[:, 2].astype(np.float64) / 2.0
    return matchups, outcomes, weights.astype(np.float64), models


def cba_loss_and_grad(ratings, matchups, outcomes, weights, alpha=1.0):
    matchup_ratings = ratings[matchups]
    logits = alpha * (matchup_ratings[:, 0] - matchup_ratings[:, 1])
    probs = expit(logits)
    loss = -((np.log(probs) * outcomes + np.log(1.0 - probs) * (1.0 - outcomes)) * weights).sum()
    matchups_grads = -alpha * (outcomes - probs) * weights
    model_grad = np.zeros_like(ratings)
    np.add.at(
        model_grad,
        matchups[:, [0, 1]],
        matchups_grads[:, None] * np.array([1.0, -1.0], dtype=np.float64),
    )
    return loss, model_grad


def cba_fit(matchups, outcomes, weights, n_models, alpha, tol=1e-6):
    result = minimize(
        fun=cba_loss_and_grad,
        x0=np.zeros(n_models, dtype=np.float64),
        args=(matchups, outcomes, weights, alpha),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 100, "gtol": tol},
    )
    return result["x"]


def cba_to_elo(ratings, scale=400.0, init=1000.0):
    return ratings * scale + init


def run_baseline(df: pd.DataFrame, rounds: int, timed_rounds: int, processes: int):
    """Returns (extrapolated seconds for `rounds`, point ratings, rating s.d. over timed rounds)."""
    alpha = math.log(10.0)
    t0 = time.perf_counter()
    matchups, outcomes, weights, models = cba_preprocess(df)
    point = cba_fit(matchups, outcomes, weights, len(models), alpha)
    fixed = time.perf_counter() - t0
    c1, k1, t1 = time.process_time(), _children_cpu(), time.perf_counter()
    rng = np.random.default_rng(seed=0)
    idxs = rng.multinomial(n=len(df), pvals=weights / weights.sum(), size=timed_rounds)
    boot_weights = idxs.astype(np.float64) / len(df)
    fit = partial(cba_fit, matchups, outcomes, n_models=len(models), alpha=alpha)
    with mp.get_context("fork").Pool(processes) as pool:
        samples = np.array(list(pool.imap_unordered(fit, boot_weights)))
    per_round = (time.perf_counter() - t1) / timed_rounds
    cpu_per_round = (time.process_time() - c1 + _children_cpu() - k1) / timed_rounds
    elo = pd.Series(cba_to_elo(point), index=models)
    spread = pd.Series((samples * 400.0).std(axis=0, ddof=1), index=models)
    return fixed + per_round * rounds, fixed, per_round, cpu_per_round, elo, spread


# -- ours ------------------------------------------------------------------------------------
def run_ours(df: pd.DataFrame, rounds: int, repeats: int):
    """Wall times of each repeat, CPU seconds (all threads) of the fastest, frame, ratings."""
    times, cpus, frame, result = [], [], None, None
    for k in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        frame, result = leaderboard_frame(df, np.random.default_rng(k), rounds=rounds)
        times.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return times, cpus[int(np.argmin(times))], frame, result


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def peak_memory(n_models: int, vote_counts: list[int], rounds: int):
    rows = []
    for n_votes in vote_counts:
        df = synthetic_votes(n_models, n_votes, seed=1)
        table = int(df.memory_usage(deep=True).sum())
        tracemalloc.start()
        tracemalloc.reset_peak()
        leaderboard_frame(df, np.random.default_rng(0), rounds=rounds)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rows.append((n_votes, table, peak))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[100, 200])
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--baseline-rounds", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100k votes, 200 rounds, 1 repeat")
    parser.add_argument("--ours-only", action="store_true", help="no baseline, no memory pass")
    args = parser.parse_args()
    if args.quick:
        args.votes, args.rounds, args.repeats, args.baseline_rounds = 100_000, 200, 1, 10
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"machine: {platform.machine()} {cores} cores, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"votes {args.votes:,}, bootstrap rounds {args.rounds}, ~10% ties\n")
    for n_models in args.models:
        df = synthetic_votes(n_models, args.votes)
        times, cpu, frame, result = run_ours(df, args.rounds, args.repeats)
        ours = min(times)
        if args.ours_only:
            print(
                f"== {n_models} models ==\nours: {ours:.2f} s (best of {args.repeats}; all: "
                + ", ".join(f"{t:.2f}" for t in times)
                + f"), CPU {cpu:.2f} s\n"
            )
            continue
        total, fixed, per_round, cpu_round, base_elo, base_sd = run_baseline(
            df, args.rounds, args.baseline_rounds, cores
        )
        ours_sd = pd.Series((result.samples * THETA_TO_ELO).std(axis=0, ddof=1), index=result.names)
        ours_elo = frame.set_index("model")["rating"]
        diff = (ours_elo - ours_elo.mean()) - (base_elo - base_elo.mean())
        print(f"== {n_models} models ==")
        print(
            f"ours: {ours:.2f} s (best of {args.repeats}; all: "
            + ", ".join(f"{t:.2f}" for t in times)
            + f") for BT + bootstrap + matrices + Elo -> leaderboard frame; CPU {cpu:.2f} s"
        )
        print(
            f"baseline (Chatbot Arena method, {cores} processes): preprocess + point fit "
            f"{fixed:.2f} s, {per_round * 1000:.1f} ms per round (timed {args.baseline_rounds} "
            f"rounds) -> {total:.1f} s for {args.rounds} rounds (extrapolated); CPU "
            f"{cpu_round * 1000:.1f} ms per round"
        )
        base_cpu = fixed + cpu_round * args.rounds
        print(
            f"speed-up: {total / ours:.0f}x wall-clock, {base_cpu / cpu:.0f}x CPU time "
            f"({base_cpu:.1f} s vs {cpu:.2f} s)"
        )
        print(
            f"agreement: point ratings differ by at most {diff.abs().max():.2f} Elo; bootstrap "
            f"s.d. ratio ours/baseline median {np.median(ours_sd / base_sd[ours_sd.index]):.2f} "
            f"(baseline s.d. from {args.baseline_rounds} rounds)\n"
        )
    if args.ours_only:
        return
    print("peak memory (tracemalloc, 100 models, 1000 rounds):")
    counts = [args.votes // 4, args.votes // 2, args.votes]
    for n_votes, table, peak in peak_memory(100, counts, args.rounds):
        print(
            f"  {n_votes:>9,} votes: vote table {table / 2**20:7.1f} MiB, peak extra while "
            f"computing {peak / 2**20:6.1f} MiB ({peak / n_votes:.0f} B/vote)"
        )


if __name__ == "__main__":
    main()
