"""Coverage of the leaderboard's 95% intervals in simulation: bootstrap against sandwich.

Each arena draws a truth, simulates votes from the model being fitted, fits it, and
checks whether every model's interval holds its true rating (centred like the fit).
Three models: plain BT (no ties), BT with style covariates (the true coefficients too),
and Davidson BT (ties with ν = 0.4). The target for nominal 95% is 93-97%; the ± is the
binomial standard error over all (arena, model) checks.

Run: ``.venv/bin/python benchmarks/coverage.py`` (``--arenas N``, ``--rounds R``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arena.stats.elo import THETA_TO_ELO
from arena.stats.ratings import compute_ratings

N_MODELS, N_VOTES = 8, 3000


def arena(kind: str, rng: np.random.Generator):
    theta = rng.normal(0.0, 0.6, N_MODELS)
    left = rng.integers(0, N_MODELS, N_VOTES)
    right = (left + rng.integers(1, N_MODELS, N_VOTES)) % N_MODELS
    features, beta = None, np.array([0.4, 0.0])
    eta = theta[left] - theta[right]
    if kind == "style":
        features = rng.normal(size=(N_VOTES, 2)) + 0.5 * (theta[left] - theta[right])[:, None]
        standard = (features - features.mean(0)) / features.std(0)
        eta = eta + standard @ beta
    if kind == "davidson":
        a, b, nu = np.exp(theta[left]), np.exp(theta[right]), 0.4
        total = a + b + nu * np.sqrt(a * b)
        u = rng.random(N_VOTES)
        outcome = np.where(u < a / total, "left", np.where(u < (a + b) / total, "right", "tie"))
    else:
        p = 1.0 / (1.0 + np.exp(-eta))
        outcome = np.where(rng.random(N_VOTES) < p, "left", "right")
    names = np.array([f"m{i}" for i in range(N_MODELS)])
    return theta, beta, names[left], names[right], outcome, features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arenas", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.arenas} arenas of {N_MODELS} models x {N_VOTES} votes; bootstrap {args.rounds}")
    print(f"{'model':<10} {'interval':<10} {'coverage':>14} {'mean width':>11} {'seconds':>8}")
    for kind in ("plain", "style", "davidson"):
        for ci in ("bootstrap", "sandwich"):
            rng = np.random.default_rng(2026)
            hits, beta_hits, widths = [], [], []
            start = time.perf_counter()
            for k in range(args.arenas):
                theta, beta, left, right, outcome, features = arena(kind, rng)
                res = compute_ratings(
                    left,
                    right,
                    outcome,
                    np.random.default_rng(k),
                    rounds=args.rounds,
                    min_votes=1,
                    ci=ci,
                    ties="davidson" if kind == "davidson" else "split",
                    features=features,
                )
                truth = 1000 + THETA_TO_ELO * (theta - theta.mean())
                hits.extend((res.lower <= truth) & (truth <= res.upper))
                widths.extend(res.upper - res.lower)
                if res.style is not None:
                    b = THETA_TO_ELO * beta
                    beta_hits.extend((res.style.lower <= b) & (b <= res.style.upper))
            seconds = time.perf_counter() - start
            rate = float(np.mean(hits))
            se = float(np.sqrt(rate * (1 - rate) / len(hits)))
            line = (
                f"{kind:<10} {ci:<10} {100 * rate:>8.1f}% ±{100 * se:.1f} {np.mean(widths):>11.1f}"
            )
            line += f" {seconds:>8.1f}"
            if beta_hits:
                line += f"   coefficients: {100 * np.mean(beta_hits):.1f}%"
            print(line, flush=True)


if __name__ == "__main__":
    main()
