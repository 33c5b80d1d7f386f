"""Rating methods benchmark: style control, sandwich intervals and flip counts, side by side
with LMArena's ``arena-rank`` in the same run.

What is timed (ours): :func:`arena.stats.ratings.compute_ratings` from model names and
outcome strings (names -> indices, counts, online Elo, the fit, the interval), i.e. the
same work as arena-rank's ``from_pandas`` + ``compute_ratings_and_cis``:

- plain BT + sandwich, at 100 and 300 models;
- style-controlled BT (5 features) + sandwich, and + 1,000 bootstrap rounds;
- the flip counts (:mod:`arena.stats.flips`) on the plain fit.

arena-rank runs in its own venv (``make reference-env``) through
``tests/reference/arena_rank_run.py``, twice per configuration: the first run includes
JAX's compilation, the second is reported as its time (``first`` shows the cold one).
Both tools get the same battles; the table prints the largest rating difference.

Run: ``.venv/bin/python benchmarks/rating_methods.py`` (``--quick`` for a smoke run,
``--no-reference`` without arena-rank, ``--style-rounds N`` to shorten the bootstrap).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.stats.flips import adjacent_flips, top_flip
from arena.stats.pairs import OUTCOMES, aggregate
from arena.stats.ratings import compute_ratings


def simulate(n_models: int, n_votes: int, n_features: int, seed: int = 0, skew: bool = False):
    """Battles with a BT truth (θ ~ N(0, 1)), 5 per-image features whose difference drives
    wins a little, and 8% ties. ``skew``: pairs shown with Dirichlet(0.4) frequencies (a
    matchmaker that favours some pairs), what reweighting is for."""
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.0, n_models)
    if skew:
        i, j = np.triu_indices(n_models, 1)
        pick = rng.choice(i.size, size=n_votes, p=rng.dirichlet(np.full(i.size, 0.4)))
        left, right = i[pick], j[pick]
    else:
        left = rng.integers(0, n_models, n_votes)
        right = (left + rng.integers(1, n_models, n_votes)) % n_models
    features = rng.normal(size=(n_votes, n_features)) * rng.uniform(0.5, 3.0, n_features)
    # exactly mean 0: arena-rank centres the differences, we only scale them (a difference
    # flips sign with the sides); on centred differences the two fit the same model
    features -= features.mean(axis=0)
    beta = rng.normal(0.0, 0.2, n_features) / features.std(axis=0)
    eta = theta[left] - theta[right] + features @ beta
    outcome = np.where(rng.random(n_votes) < 1.0 / (1.0 + np.exp(-eta)), 0, 1)
    outcome[rng.random(n_votes) < 0.08] = 2
    return left, right, outcome, features


def ours(left, right, outcome, n_models, **kw):
    """Timed from the votes as the store gives them (string columns of a frame), like
    arena-rank's from a pandas frame."""
    import pandas as pd

    names = np.array([f"m{i:04d}" for i in range(n_models)], dtype=object)
    columns = [pd.Series(names[left]), pd.Series(names[right])]
    columns.append(pd.Series(np.array(OUTCOMES, dtype=object)[outcome]))
    start = time.perf_counter()
    result = compute_ratings(
        *columns,
        np.random.default_rng(0),
        names=list(names),
        min_votes=1,
        **kw,
    )
    return time.perf_counter() - start, result


def reference(left, right, outcome, n_models, **kw):
    from tests.arena_rank_reference import run_arena_rank

    out = run_arena_rank(left, right, outcome, n_models, repeat=2, **kw)
    return out


def reference_checks(left, right, outcome, n, result, ref, features=None) -> str:
    """Why the two tools differ where they do: each solution's loss per vote and largest
    gradient (arena-rank's L-BFGS stops at a relative loss change of 1e-9), and for the
    plain sandwich, our width with arena-rank's extra 1e-5·N on H's diagonal."""
    from arena.stats import contextual as C
    from arena.stats.elo import THETA_TO_ELO
    from arena.stats.pairs import aggregate

    score = np.where(outcome == 0, 1.0, np.where(outcome == 1, 0.0, 0.5))
    if features is None:
        rows = C.rows_from_counts(aggregate(n, left, right, outcome), "split")
        fit = C.ContextualFit((result.rating - 1000) / THETA_TO_ELO, np.zeros(0), 0)
        ridge = 0.5e-5 * len(left)  # H gets 2·ridge: arena-rank's hessian_reg·N
        cov = C.sandwich(rows, n, fit, ridge=ridge, penalty=0.0)
        width = np.sqrt(np.diag(cov)) * THETA_TO_ELO * 2 * 1.959964
        gap = np.abs(width / (ref["upper"] - ref["lower"]) - 1).max()
        return f"with arena-rank's 1e-5·N on H: widths within {100 * gap:.3f}%"
    x = features / np.sqrt(np.mean(features**2, axis=0))  # = arena-rank's (centred) scaling
    rows = C.make_rows(left, right, score, x)
    ours_p = ((result.rating - 1000) / THETA_TO_ELO, result.style.coefficient / THETA_TO_ELO)
    ref_p = ((ref["ratings"] - 1000) / THETA_TO_ELO, ref["coeffs"])
    parts = []
    for name, (theta, beta) in (("ours", ours_p), ("arena-rank", ref_p)):
        loss = C.objective(rows, theta, beta, 0.0, C.FEATURE_PENALTY) / len(left)
        grad = C._gradient(rows, n, theta, beta, 0.0, C.FEATURE_PENALTY)[0]
        parts.append((name, loss, np.abs(grad).max() / len(left)))
    (_, l0, g0), (_, l1, g1) = parts
    return (
        f"loss per vote: arena-rank's solution {l1 - l0:+.1e} above ours; largest gradient "
        f"per vote {g0:.0e} (ours) vs {g1:.0e} (arena-rank)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 models, 20k votes")
    parser.add_argument("--no-reference", action="store_true", help="skip arena-rank")
    parser.add_argument("--style-rounds", type=int, default=1000)
    args = parser.parse_args()
    votes = 20_000 if args.quick else 1_000_000
    sizes = (10,) if args.quick else (100, 300)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores; {votes:,} votes")
    warm = simulate(5, 2000, 5, seed=1)  # imports and first-call costs, not timed
    ours(*warm[:3], 5, ci="sandwich", features=warm[3], flips=True)
    rows = []
    for n in sizes:
        left, right, outcome, features = simulate(n, votes, 5)
        seconds, plain = ours(left, right, outcome, n, ci="sandwich", rounds=0)
        ref = None if args.no_reference else reference(left, right, outcome, n)
        why = "" if ref is None else reference_checks(left, right, outcome, n, plain, ref)
        rows.append(("plain BT + sandwich", n, seconds, ref, plain, why))
        if n != sizes[0]:
            continue
        seconds, styled = ours(
            left, right, outcome, n, ci="sandwich", features=features, feature_names=list("abcde")
        )
        ref = None
        if not args.no_reference:
            ref = reference(left, right, outcome, n, features=features, reg=1e-3)
        why = (
            "" if ref is None else reference_checks(left, right, outcome, n, styled, ref, features)
        )
        rows.append(("style BT + sandwich", n, seconds, ref, styled, why))
        seconds, boot = ours(
            left, right, outcome, n, rounds=args.style_rounds, features=features,
            feature_names=list("abcde"),
        )  # fmt: skip
        rows.append(
            (f"style BT + bootstrap ({args.style_rounds} rounds)", n, seconds, None, boot, "")
        )
        sk = simulate(n, votes, 0, seed=3, skew=True)[:3]
        _, even = ours(*sk, n, ci="sandwich", rounds=0)
        seconds, weighted = ours(*sk, n, ci="sandwich", rounds=0, reweight=50)
        ref = None if args.no_reference else reference(*sk, n, reweighted=True)
        ratio = np.median((weighted.upper - weighted.lower) / (even.upper - even.lower))
        what = f"reweighted BT + sandwich (widths x{ratio:.2f})"
        rows.append((what, n, seconds, ref, weighted, ""))
        counts = aggregate(n, left, right, outcome)
        ranked = np.ones(n, bool)
        start = time.perf_counter()
        flips = adjacent_flips(counts, "split", ranked)
        top = top_flip(counts, "split", ranked)
        seconds = time.perf_counter() - start
        rows.append((f"flip counts ({len(flips)} adjacent pairs + top)", n, seconds, None, top, ""))
    print(f"\n{'what':<42} {'models':>6} {'ours s':>8} {'arena-rank s':>13} {'x':>4}  max |ΔElo|")
    for what, n, seconds, ref, result, why in rows:
        if ref is None:
            print(f"{what:<42} {n:>6} {seconds:>8.2f} {'-':>13} {'-':>9}")
            continue
        warm, cold = float(ref["seconds"][-1]), float(ref["seconds"][0])
        diff = float(np.max(np.abs(result.rating - ref["ratings"])))
        width = np.abs((result.upper - result.lower) / (ref["upper"] - ref["lower"]) - 1).max()
        print(
            f"{what:<42} {n:>6} {seconds:>8.2f} {warm:>8.2f} ({cold:.1f} first) "
            f"{warm / seconds:>6.1f}x  {diff:.4f} Elo; widths within {100 * width:.3f}%"
        )
        if why:
            print(f"{'':<42} {why}")


if __name__ == "__main__":
    main()
