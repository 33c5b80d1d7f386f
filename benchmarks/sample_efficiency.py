"""How many votes each matchmaking policy needs for a trustworthy leaderboard (simulation).

    python benchmarks/sample_efficiency.py [--reps 20] [--sizes 20,50] [--refresh 100] [--quick]
    python benchmarks/sample_efficiency.py --sizes 20 --reps 200 --targets tau --skip-quality
    python benchmarks/sample_efficiency.py --strengths arena --skip-quality
    python benchmarks/sample_efficiency.py --policies uniform,active,chatbot_arena --targets tau

The simulated arena. ``n`` models with true Elo ratings (``--strengths``):

- ``even`` (default): evenly spread over 300 Elo (20 models) or 400 Elo (50
  models): adjacent gaps of ~16 and ~8 Elo, no near-ties.
- ``arena``: drawn like a real leaderboard. Each repetition draws the ``n``
  ratings i.i.d. from the empirical distribution of a published arena
  leaderboard (inverse CDF through the linearly interpolated empirical
  quantiles of its ratings; own seeded stream per repetition, the same for
  every policy), so the draws have the real spread, its long top tail and the
  random near-ties and gaps of a real board. The leaderboard is Chatbot Arena's
  complete rated table of 2023-06-22 ("Table 1. LLM Leaderboard (Timeframe:
  April 24 - June 19, 2023)", 42K votes; all 20 models with an Arena Elo, 826
  to 1227), from the LMSYS blog post "Chatbot Arena Leaderboard Week 8"
  (https://lmsys.org/blog/2023-06-22-leaderboard/, source
  github.com/lm-sys/lm-sys.github.io, blog/2023-06-22-leaderboard.md). It was
  chosen, before any run of this scenario, as the largest complete published
  arena table found in the stored public sources. The text-to-image boards
  found were smaller, with a similar span and uneven gaps (GenAI-Arena's
  text-to-image board, github.com/TIGER-AI-Lab/GenAI-Arena,
  arena_elo/results/latest/t2i_generation_leaderboard.csv: 6 models, 1151 to
  850). The rater-quality part below keeps the evenly spaced ratings.

Each vote is a tie with probability 0.1, else a Bradley-Terry draw from the
true ratings. Ratings are refreshed every
``refresh`` votes (default 100, for every policy and size), and the policy
chooses the pairs of the next ``refresh`` votes from the refreshed fit. The live
app refits in a background thread every 30 s (``ActivePolicy.refresh_seconds``);
a refit at 20-100 models takes milliseconds, so 100 votes between refreshes
stands for an arena receiving ~3 votes/s. The targets are checked after every
refresh, so their resolution is ``refresh`` votes for every policy.

- ``uniform``: every pair equally likely;
- ``balanced``: pairs with the fewest votes first (round-robin);
- ``active``: ``arena.stats.active.pair_probabilities`` (expected reduction of ranking
  uncertainty, with a 10% uniform coverage floor);
- ``oracle`` (a reference, not a policy): the same allocation computed from the
  *true* ratings instead of the fit, i.e. what the design could buy if the
  ratings were already known;
- ``chatbot_arena`` (a reference, only with ``--policies``): Chatbot Arena's
  published active sampling rule (``chatbot_arena_probabilities``), the field's
  baseline for active matchmaking.

Targets, counted in votes until first reached (median and IQR over reps):
- ``tau``: Kendall τ between fitted and true ratings ≥ 0.9;
- ``adjacent``: at least 95% of adjacent (in truth) pairs ordered correctly by
  the fitted ratings: all 19 of 19 at 20 models, 47 of 49 at 50 models;
- ``winrate`` (only with ``--targets``): Chatbot Arena's win-matrix precision, the
  mean width of the pairs' 95% win-rate intervals ≤ 0.2 (``win_matrix_width``).

Then what any fixed design could buy for τ: the best split of votes over pairs,
optimised knowing the true ratings, in the Fisher approximation (expected
misordered pairs ≤ 5%, i.e. τ ≈ 0.9), against the uniform split. With
``--strengths arena`` it is computed for the true ratings of the first
``--bound-reps`` repetitions (median and range printed).

Then the rater-quality experiment (skipped with ``--skip-quality``): 100 raters,
10% adversarial (half always vote left, half always vote for the worse image),
gold battles at 10%; τ of the clean run, of the run with adversaries, and of
that run after excluding the raters ``arena.stats.rater_quality.rater_report`` flags.

Votes are simulated on aggregated counts (a multinomial over pairs, binomials
over outcomes), which has exactly the law of drawing them one by one within a
refresh interval; the fit is the project's own BT fitter (arena.stats.bradley_terry).
"""

from __future__ import annotations

import argparse
import os
import time

# One BLAS thread: OpenBLAS threads spin-wait on the small shared machine (the runs are
# sequential small fits; more threads only burn the other jobs' CPU).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from scipy.optimize import brentq, minimize
from scipy.stats import kendalltau, norm

from arena.stats import active
from arena.stats.pairs import pair_index
from arena.stats.rater_quality import rater_report

TIE_RATE = 0.1
REFRESH = 100
POLICIES = ("uniform", "balanced", "active", "oracle")
REFERENCE_POLICIES = ("chatbot_arena",)  # run only when asked for with --policies
TARGETS = ("tau", "adjacent", "winrate")
WIN_MATRIX_WIDTH = 0.2  # Chatbot Arena's "precision of 0.2" for the win matrix (their §7.1)
ELO = 400 / np.log(10)
# Chatbot Arena, 2023-06-22: the Arena Elo of all 20 rated models (blog post cited above).
ARENA_ELO = np.array(
    [
        [1227, 1178, 1156, 1130, 1065, 1061, 1048, 1038, 1008, 992],
        [986, 956, 950, 930, 924, 905, 897, 871, 850, 826],
    ],
    dtype=float,
).ravel()
STRENGTHS = ("even", "arena")


def _fit(wins: np.ndarray, ties: np.ndarray, initial: np.ndarray | None = None) -> np.ndarray:
    """Log-strengths from win and tie matrices through the project's BT fitter.

    ``initial`` (the previous fit) only speeds Newton up; the optimum is the same.
    """
    from arena.stats.bradley_terry import bt_fit

    return bt_fit(wins + ties / 2.0, initial=initial)


def true_ratings(n: int, strengths: str = "even", rng: np.random.Generator | None = None):
    """True log-strengths of ``n`` models, best first (see the module docstring).

    ``arena`` draws from ``rng``: i.i.d. through the interpolated empirical quantile
    function of ``ARENA_ELO``, centred.
    """
    if strengths == "even":
        span = 300.0 if n <= 20 else 400.0
        return np.linspace(span / 2, -span / 2, n) / ELO  # log-strength scale
    if strengths == "arena":
        board = np.sort(ARENA_ELO)
        levels = np.linspace(0.0, 1.0, len(board))
        elo = np.sort(np.interp(rng.random(n), levels, board))[::-1]
        return (elo - elo.mean()) / ELO
    raise ValueError(strengths)


def truth_rng(seed: int, n: int, rep: int) -> np.random.Generator:
    """The stream the true ratings of one repetition are drawn from (not the votes' stream)."""
    return np.random.default_rng([seed, n, rep, 1])


def pair_outcome_stats(wins: np.ndarray, ties: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pair (upper-triangle order): vote count, and the variance of one vote's outcome.

    The outcome scores 1 for a win of the row model, 0.5 for a tie, 0 for a loss; its
    variance is estimated with one pseudo-win each way, so that a pair with few or
    one-sided votes keeps a positive variance.
    """
    rows, cols = pair_index(len(wins))
    w, t = wins[rows, cols], ties[rows, cols]
    count = w + wins[cols, rows] + t
    mean = (w + t / 2 + 1) / (count + 2)
    second_moment = (w + t / 4 + 1) / (count + 2)
    return count, np.maximum(second_moment - mean**2, 1e-12)


def chatbot_arena_probabilities(wins: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Pair probabilities of Chatbot Arena's active sampling rule (upper-triangle order).

    Chiang et al., "Chatbot Arena: An Open Platform for Evaluating LLMs by Human
    Preference" (ICML 2024, arXiv:2403.04132), Eq. 9: pair ``a`` is drawn with
    probability proportional to ``sqrt(Σ_aa / n_a) - sqrt(Σ_aa / (n_a + 1))``, the
    shrinkage of its win-rate interval from one more vote (``n_a`` the pair's votes,
    ``Σ_aa`` the variance of one vote's outcome, ``pair_outcome_stats``). Pairs with
    no vote yet come first, uniformly.
    """
    count, variance = pair_outcome_stats(wins, ties)
    unseen = count == 0
    if unseen.any():
        return unseen / unseen.sum()
    gain = np.sqrt(variance) * (1 / np.sqrt(count) - 1 / np.sqrt(count + 1))
    return gain / gain.sum()


def win_matrix_width(wins: np.ndarray, ties: np.ndarray) -> float:
    """Mean width of the pairs' 95% win-rate intervals, ``2·1.96·sqrt(Σ_aa / n_a)``.

    Chatbot Arena's precision measure for the win matrix (their θ*, Fig. 7); inf while
    a pair has no vote.
    """
    count, variance = pair_outcome_stats(wins, ties)
    if (count == 0).any():
        return float("inf")
    return float(np.mean(2 * norm.ppf(0.975) * np.sqrt(variance / count)))


def _policy_probabilities(
    policy: str,
    wins: np.ndarray,
    ties: np.ndarray,
    theta: np.ndarray,
    refresh: int,
    truth: np.ndarray,
) -> np.ndarray:
    """Pair probabilities for the next ``refresh`` votes (upper-triangle order)."""
    counts = wins + wins.T + ties
    if policy == "uniform":
        rows, _ = pair_index(len(theta))
        return np.full(len(rows), 1.0 / len(rows))
    if policy == "active":
        return active.pair_probabilities(counts, theta, floor=0.1, horizon=refresh)
    if policy == "oracle":
        return active.pair_probabilities(counts, truth, floor=0.1, horizon=refresh)
    if policy == "chatbot_arena":
        return chatbot_arena_probabilities(wins, ties)
    raise ValueError(policy)


def _draw_batch(policy, wins, ties, theta, truth, size, rng):
    """Aggregated outcomes of ``size`` votes: (wins, ties) increments."""
    n = len(truth)
    rows, cols = pair_index(n)
    if policy == "balanced":
        # Round-robin: spread the batch evenly over the least-voted pairs.
        counts = wins + wins.T + ties
        order = np.lexsort((rng.random(len(rows)), counts[rows, cols]))
        per_pair = np.zeros(len(rows), int)
        full, rest = divmod(size, len(rows))
        per_pair += full
        per_pair[order[:rest]] += 1
    else:
        probabilities = _policy_probabilities(policy, wins, ties, theta, size, truth)
        per_pair = rng.multinomial(size, probabilities)
    tie_n = rng.binomial(per_pair, TIE_RATE)
    p_row_wins = 1.0 / (1.0 + np.exp(truth[cols] - truth[rows]))
    row_wins = rng.binomial(per_pair - tie_n, p_row_wins)
    new_wins = np.zeros((n, n))
    new_ties = np.zeros((n, n))
    new_wins[rows, cols] = row_wins
    new_wins[cols, rows] = per_pair - tie_n - row_wins
    new_ties[rows, cols] = new_ties[cols, rows] = tie_n
    return new_wins, new_ties


def adjacent_correct(theta: np.ndarray, truth: np.ndarray) -> float:
    order = np.argsort(-truth)
    return float(np.mean(theta[order[:-1]] > theta[order[1:]]))


def run_policy(policy, truth, rng, refresh, max_votes, targets=TARGETS):
    """Votes needed for τ ≥ 0.9, for ≥ 95% adjacent pairs right and for a win-matrix
    precision of 0.2 (np.inf if not reached).

    Only the ``targets`` asked for are followed; the run stops when all are reached.
    """
    n = len(truth)
    wins = np.zeros((n, n))
    ties = np.zeros((n, n))
    theta = np.zeros(n)
    reached = {target: np.inf for target in targets}
    votes = 0
    while votes < max_votes and np.isinf(list(reached.values())).any():
        w, t = _draw_batch(policy, wins, ties, theta, truth, refresh, rng)
        wins += w
        ties += t
        votes += refresh
        theta = _fit(wins, ties, initial=theta)
        if np.isinf(reached.get("tau", 0)) and kendalltau(theta, truth).statistic >= 0.9:
            reached["tau"] = votes
        if np.isinf(reached.get("adjacent", 0)) and adjacent_correct(theta, truth) >= 0.95:
            reached["adjacent"] = votes
        if np.isinf(reached.get("winrate", 0)) and win_matrix_width(wins, ties) <= WIN_MATRIX_WIDTH:
            reached["winrate"] = votes
    return reached


def sample_efficiency(
    sizes, reps, seed=0, refresh=REFRESH, policies=POLICIES, targets=TARGETS, strengths="even"
):
    rows = []
    for n in sizes:
        max_votes = 40_000 * n  # far above what any policy needs (uniform: ~6,000 per model)
        for policy in policies:
            for rep in range(reps):
                truth = true_ratings(n, strengths, truth_rng(seed, n, rep))
                rng = np.random.default_rng([seed, n, rep])  # same seeds for every policy
                reached = run_policy(policy, truth, rng, refresh, max_votes, targets)
                rows.append({"models": n, "policy": policy, "rep": rep, **reached})
    return pd.DataFrame(rows)


# -- what any fixed design could buy -------------------------------------------------
def expected_discordant(
    share: np.ndarray, votes: float, truth: np.ndarray
) -> tuple[float, np.ndarray]:
    """Expected misordered pairs when ``votes`` are split by ``share`` over the pairs.

    Fisher approximation: the fit is normal with covariance the pseudo-inverse of
    ``H = Σ votes share_ab q_ab x xᵀ`` at the true ratings, so pair (i, j) is
    misordered with probability Φ(-|Δ_ij| / s_ij). Returns the value and its
    gradient in ``share`` (the same C L C identity as arena.stats.active).
    """
    n = len(truth)
    rows, cols = pair_index(n)
    p = 1.0 / (1.0 + np.exp(truth[cols] - truth[rows]))
    q = p * (1.0 - p)
    w = np.zeros((n, n))
    w[rows, cols] = w[cols, rows] = votes * share * q
    centre = np.full((n, n), 1.0 / n)
    cov = np.linalg.inv(np.diag(w.sum(axis=1)) - w + centre) - centre  # pseudo-inverse
    s = np.sqrt(active.difference_variance(cov)[rows, cols])
    gap = np.abs(truth[rows] - truth[cols])
    value = float(norm.cdf(-gap / s).sum())
    dv = np.zeros((n, n))  # d value / d variance of each difference
    dv[rows, cols] = dv[cols, rows] = norm.pdf(gap / s) * gap / (2.0 * s**3)
    m = cov @ (np.diag(dv.sum(axis=1)) - dv) @ cov
    dm = np.diag(m)
    grad = -votes * q * (dm[rows] + dm[cols] - 2.0 * m[rows, cols])
    return value, grad


def best_fixed_design(votes: float, truth: np.ndarray) -> float:
    """Fewest expected misordered pairs over all fixed splits of ``votes`` (softmax shares)."""

    def objective(logits):
        share = np.exp(logits - logits.max())
        share /= share.sum()
        value, grad = expected_discordant(share, votes, truth)
        return value, share * (grad - share @ grad)

    n = len(truth)
    start = np.zeros(n * (n - 1) // 2)
    return float(minimize(objective, start, jac=True, method="L-BFGS-B").fun)


def fixed_design_bound(truth: np.ndarray, allowed: float = 0.05) -> dict[str, float]:
    """Votes for ≤ ``allowed`` expected misordered pairs (≈ τ ≥ 1 - 2·allowed): uniform vs
    the best fixed design chosen knowing the true ratings ``truth``."""
    n = len(truth)
    pairs = n * (n - 1) // 2
    uniform_share = np.full(pairs, 1.0 / pairs)
    target = allowed * pairs
    uniform = brentq(lambda v: expected_discordant(uniform_share, v, truth)[0] - target, 10, 1e8)
    best = brentq(lambda v: best_fixed_design(v, truth) - target, 0.2 * uniform, uniform)
    return {"models": n, "uniform": uniform, "best_fixed": best, "saving": 1 - best / uniform}


def _percentile(values: np.ndarray, p: float) -> float:
    """Linear-interpolated percentile (numpy's default) that is inf, not nan, between two infs."""
    v = np.sort(values)
    pos = p / 100 * (len(v) - 1)
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    if np.isinf(v[hi]):  # pos > lo puts weight on an infinite end; pos == lo means hi == lo
        return float(v[hi])
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    def q(series, p):
        return _percentile(np.asarray(series, float), p)

    out = []
    for (n, policy), group in frame.groupby(["models", "policy"], sort=False):
        for target in [t for t in TARGETS if t in group]:
            values = group[target].to_numpy()
            out.append(
                {
                    "models": n,
                    "policy": policy,
                    "target": target,
                    "median": q(values, 50),
                    "q25": q(values, 25),
                    "q75": q(values, 75),
                    "not_reached": int(np.isinf(values).sum()),
                }
            )
    table = pd.DataFrame(out)
    uniform = table[table.policy == "uniform"].set_index(["models", "target"])["median"]
    base = np.array([uniform.loc[(row.models, row.target)] for row in table.itertuples()])
    # No saving can be stated against a median that was not reached within the cap.
    table["saving_vs_uniform"] = np.where(np.isinf(base), np.nan, 1 - table["median"] / base)
    return table


# -- rater quality --------------------------------------------------------------------
def simulate_rater_votes(n_models, n_votes, rng, adversarial=0.1, gold_rate=0.1, raters=100):
    """Per-vote frame of a uniform arena with honest and adversarial raters."""
    truth = true_ratings(n_models)
    bad = rng.random(raters) < adversarial
    style = np.where(bad, np.where(rng.random(raters) < 0.5, "left", "worse"), "honest")
    rater = rng.integers(0, raters, n_votes)
    gold = rng.random(n_votes) < gold_rate
    a = rng.integers(0, n_models, n_votes)
    b = (a + rng.integers(1, n_models, n_votes)) % n_models
    # Images: each model has 200 images; an image pair is (model, index) on each side.
    img_a = a * 1000 + rng.integers(0, 200, n_votes)
    img_b = b * 1000 + rng.integers(0, 200, n_votes)
    p_a = 1 / (1 + np.exp(truth[b] - truth[a]))
    honest_a = rng.random(n_votes) < p_a
    tie = rng.random(n_votes) < TIE_RATE
    gold_answer = np.where(rng.random(n_votes) < 0.5, "left", "right")
    outcome = np.where(honest_a, "left", "right").astype(object)
    outcome[tie] = "tie"
    outcome[gold] = gold_answer[gold]
    kinds = style[rater]
    outcome[kinds == "left"] = "left"
    worse_left = np.where(gold, gold_answer == "right", ~(truth[a] > truth[b]))
    outcome[kinds == "worse"] = np.where(worse_left, "left", "right")[kinds == "worse"]
    return pd.DataFrame(
        {
            "rater_id": rater,
            "left_image_id": img_a,
            "right_image_id": img_b,
            "left": a,
            "right": b,
            "outcome": outcome,
            "battle_kind": np.where(gold, "gold", "normal"),
            "gold_answer": np.where(gold, gold_answer, None),
            "decision_ms": rng.integers(1500, 6000, n_votes),
            "style": kinds,
        }
    )


def tau_of(votes: pd.DataFrame, n_models: int) -> float:
    normal = votes[votes["battle_kind"] == "normal"]
    wins = np.zeros((n_models, n_models))
    ties = np.zeros((n_models, n_models))
    left, right, outcome = normal["left"].to_numpy(), normal["right"].to_numpy(), normal["outcome"]
    np.add.at(wins, (left[outcome == "left"], right[outcome == "left"]), 1)
    np.add.at(wins, (right[outcome == "right"], left[outcome == "right"]), 1)
    tied = outcome.isin(["tie", "both_bad"]).to_numpy()
    np.add.at(ties, (left[tied], right[tied]), 1)
    ties = ties + ties.T
    return float(kendalltau(_fit(wins, ties), true_ratings(n_models)).statistic)


def rater_quality_experiment(reps, n_models=20, n_votes=20_000, seed=1):
    rows = []
    for rep in range(reps):
        rng = np.random.default_rng([seed, rep])
        clean = simulate_rater_votes(n_models, n_votes, rng, adversarial=0.0)
        rng = np.random.default_rng([seed, rep])
        dirty = simulate_rater_votes(n_models, n_votes, rng, adversarial=0.1)
        report = rater_report(dirty, min_decision_ms=700)
        flagged = set(report.loc[report["flag_reasons"] != "", "rater_id"])
        truly_bad = set(dirty.loc[dirty["style"] != "honest", "rater_id"])
        filtered = dirty[~dirty["rater_id"].isin(flagged)]
        rows.append(
            {
                "rep": rep,
                "tau_clean": tau_of(clean, n_models),
                "tau_adversarial": tau_of(dirty, n_models),
                "tau_filtered": tau_of(filtered, n_models),
                "adversaries": len(truly_bad),
                "caught": len(flagged & truly_bad),
                "honest_flagged": len(flagged - truly_bad),
            }
        )
    return pd.DataFrame(rows)


def rater_quality_part(reps: int) -> None:
    quality = rater_quality_experiment(reps)
    print(f"\nRater quality, 10% adversarial raters, {reps} reps (mean):")
    print(quality.mean(numeric_only=True).drop("rep").to_string(float_format=lambda v: f"{v:.3f}"))
    gap = (quality["tau_clean"] - quality["tau_filtered"]).abs()
    print(f"|tau_clean - tau_filtered|: mean {gap.mean():.4f}, max {gap.max():.4f}")


def bound_part(n: int, strengths: str, reps: int, seed: int = 0) -> None:
    """Print the fixed-design bound: once for ``even``, per repetition's truth for ``arena``."""
    if strengths == "even":
        truths = [true_ratings(n)]
    else:
        truths = [true_ratings(n, strengths, truth_rng(seed, n, rep)) for rep in range(reps)]
    bounds = pd.DataFrame([fixed_design_bound(truth) for truth in truths])
    if strengths == "even":
        b = bounds.iloc[0]
        print(
            f"  {n} models: uniform {b['uniform']:,.0f}, best fixed {b['best_fixed']:,.0f} "
            f"(saves {b['saving']:.0%})"
        )
        return
    median = bounds.median()
    print(
        f"  {n} models, true ratings of reps 0-{len(bounds) - 1}: uniform median "
        f"{median['uniform']:,.0f}, best fixed median {median['best_fixed']:,.0f}; saves "
        f"median {median['saving']:.0%} (range {bounds['saving'].min():.0%}"
        f"-{bounds['saving'].max():.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sizes", default="20,50")
    parser.add_argument("--refresh", type=int, default=REFRESH, help="votes between refits")
    parser.add_argument("--targets", default="tau,adjacent", help="which targets to follow")
    parser.add_argument("--skip-quality", action="store_true", help="no rater-quality part")
    parser.add_argument(
        "--policies",
        default=",".join(POLICIES),
        help=f"policies to run (uniform is the baseline); also {','.join(REFERENCE_POLICIES)}",
    )
    parser.add_argument("--strengths", choices=STRENGTHS, default="even", help="true ratings")
    parser.add_argument(
        "--bound-reps", type=int, default=5, help="arena: repetitions the fixed-design bound uses"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 reps, 20 models: a smoke test, too noisy to rank"
    )
    args = parser.parse_args()
    sizes = [20] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 3 if args.quick else args.reps
    start, cpu = time.perf_counter(), time.process_time()
    targets = tuple(args.targets.split(","))
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"--targets: unknown {sorted(unknown)}; use a subset of {','.join(TARGETS)}")
    policies = tuple(args.policies.split(","))
    known = POLICIES + REFERENCE_POLICIES
    if "uniform" not in policies or set(policies) - set(known):
        parser.error(
            f"--policies: got {args.policies!r}; use uniform and others of {','.join(known)}"
        )
    frame = sample_efficiency(
        sizes,
        reps,
        refresh=args.refresh,
        policies=policies,
        targets=targets,
        strengths=args.strengths,
    )
    table = summarise(frame)
    pd.set_option("display.width", 140)
    print(
        f"Votes needed ({args.strengths} strengths; median, IQR over {reps} reps, ratings "
        f"refitted every {args.refresh} votes; inf = not reached within the cap)"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    print(
        "\nBest fixed design knowing the true ratings (Fisher approximation), votes for "
        "E[misordered pairs] ≤ 5% (τ ≈ 0.9):"
    )
    for n in sizes:
        bound_part(n, args.strengths, min(args.bound_reps, reps))
    if not args.skip_quality:
        rater_quality_part(reps)
    print(
        f"\ntotal {time.perf_counter() - start:.1f} s wall, {time.process_time() - cpu:.1f} s CPU; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
