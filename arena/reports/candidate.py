"""Candidate vs baseline: does a new checkpoint beat the one it would replace?

One report, four pillars, each a table over the same filtered frames
(:func:`arena.reports.frames.load_report_frames`), and a verdict per threshold:

* **sample quality** -- the model-level numbers (FID, KID, CMMD, ...) of both models
  against the same reference, with the sample-size warnings stored with them;
* **prompt adherence** -- each per-image metric (CLIP score, tag accuracy, the proxies)
  on the (prompt, seed) cells both models have an image for, the mean difference with a
  prompt-bootstrap interval (seeded);
* **human preference** -- the head-to-head votes between the two (win rate, ties
  counting half, with a Wilson interval) and the leaderboard's rating difference with
  its interval and the direct votes still needed to separate them;
* **failure analysis** -- the reviewers' failure-flag rates, where the workspace has
  them.

Thresholds (:mod:`arena.reports.thresholds`) turn numbers into verdicts; a CI job gates
on ``passed``. Directions travel with the data: a metric's ``higher_is_better`` decides
which way is a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from arena.reports.frames import Filters, ReportError, ReportFrames, load_report_frames
from arena.reports.leaderboard import LeaderboardService, current_versions, separation
from arena.stats.agreement.intervals import wilson_interval
from arena.stats.clusters import prompt_clusters

#: Fewer paired cells than this: the metric difference is shown with a warning.
MIN_CELLS = 30
#: Fewer head-to-head votes than this: the win rate is shown with a warning.
MIN_HEAD_TO_HEAD = 30


@dataclass
class CandidateReport:
    candidate: str
    baseline: str
    filters: Filters
    quality: pd.DataFrame
    adherence: pd.DataFrame
    preference: dict
    failures: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)
    verdicts: pd.DataFrame | None = None

    @property
    def passed(self) -> bool:
        """Every threshold passed (no thresholds: True)."""
        return self.verdicts is None or bool((self.verdicts["verdict"] == "pass").all())


def _check_models(frames: ReportFrames, store, candidate: str, baseline: str) -> None:
    known = store.model_names()
    for role, name in (("candidate", candidate), ("baseline", baseline)):
        if name not in known:
            raise ReportError(
                f"--{role} {name!r} is not a model of this workspace; pick one of "
                f"{', '.join(known) or '(none yet)'}."
            )
    if candidate == baseline:
        raise ReportError("--candidate and --baseline name the same model; pick two models.")


def sample_quality(model_metrics: pd.DataFrame, candidate: str, baseline: str) -> pd.DataFrame:
    """One row per (metric, reference) both models have: values, sizes, warnings, and the
    difference candidate - baseline with which model it favours."""
    columns = [
        "metric", "reference", "candidate", "baseline", "difference", "better",
        "higher_is_better", "n_candidate", "n_baseline", "warning",
    ]  # fmt: skip
    mm = model_metrics[model_metrics["model"].isin([candidate, baseline])]
    rows = []
    for (metric, reference), group in mm.groupby(["metric", "reference"], sort=True):
        by_model = group.set_index("model")
        if candidate not in by_model.index or baseline not in by_model.index:
            continue
        c, b = by_model.loc[candidate], by_model.loc[baseline]
        higher = bool(c["higher_is_better"])
        diff = float(c["value"]) - float(b["value"])
        better = "equal" if diff == 0 else ("candidate" if (diff > 0) == higher else "baseline")
        warnings = [w for w in (c.get("warning", ""), b.get("warning", "")) if w]
        rows.append(
            [metric, reference, float(c["value"]), float(b["value"]), diff, better, higher,
             int(c["n"]), int(b["n"]), "; ".join(dict.fromkeys(warnings))]
        )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def paired_cells(images: pd.DataFrame, candidate: str, baseline: str) -> pd.DataFrame:
    """The (prompt, seed) cells where both models have a (non-broken) image: prompt_id,
    seed, candidate_image, baseline_image (the first image by pixel hash where a model has
    several in a cell, so the pairing does not depend on ids)."""
    both = images[images["model"].isin([candidate, baseline]) & images["prompt_id"].notna()]
    both = both.assign(seed=both["seed"].fillna(-1).astype(np.int64))
    both = both.sort_values("sha256").drop_duplicates(["model", "prompt_id", "seed"])
    wide = both.pivot(index=["prompt_id", "seed"], columns="model", values="image_id")
    if candidate not in wide.columns or baseline not in wide.columns:
        return pd.DataFrame(columns=["prompt_id", "seed", "candidate_image", "baseline_image"])
    wide = wide.dropna(subset=[candidate, baseline]).reset_index()
    return pd.DataFrame(
        {
            "prompt_id": wide["prompt_id"].astype(np.int64),
            "seed": wide["seed"].astype(np.int64),
            "candidate_image": wide[candidate].astype(np.int64),
            "baseline_image": wide[baseline].astype(np.int64),
        }
    )


def prompt_adherence(
    scores: pd.DataFrame,
    versions: pd.DataFrame,
    cells: pd.DataFrame,
    rng: np.random.Generator,
    rounds: int = 1000,
    level: float = 0.95,
    prompts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per metric (its version of ``versions``: the leaderboard's, ``current_versions``),
    over the paired cells both images have a score in:
    both means, the mean difference candidate - baseline in the metric's own units, its
    prompt-bootstrap interval (cells resampled by prompt, the same draws for every metric),
    and which model it favours (``undecided`` when the interval holds 0). ``prompts``
    (``Store.prompts_frame()``) orders the prompts the bootstrap draws by their content,
    so that relabelling prompts moves nothing (without it: by prompt id)."""
    columns = [
        "metric", "cells", "prompts", "candidate", "baseline", "difference", "lower", "upper",
        "higher_is_better", "better", "warning",
    ]  # fmt: skip
    if cells.empty or scores.empty:
        return pd.DataFrame(columns=columns)
    wanted = np.union1d(cells["candidate_image"], cells["baseline_image"])
    scores = scores[scores["image_id"].isin(wanted)].merge(versions, on=["metric", "version"])
    prompt_codes, n_prompts = prompt_clusters(cells["prompt_id"].to_numpy(np.int64), prompts)
    weights = _prompt_weights(rng, n_prompts, rounds)
    rows = []
    for metric, group in scores.groupby("metric", sort=True):
        value = group.set_index("image_id")["value"].astype(float)
        higher = bool(group["higher_is_better"].iloc[0])
        c = value.reindex(cells["candidate_image"]).to_numpy()
        b = value.reindex(cells["baseline_image"]).to_numpy()
        ok = np.isfinite(c) & np.isfinite(b)
        if not ok.any():
            continue
        d, codes = c[ok] - b[ok], prompt_codes[ok]
        sums = np.bincount(codes, weights=d, minlength=n_prompts)
        counts = np.bincount(codes, minlength=n_prompts).astype(float)
        diff = float(d.mean())
        lower = upper = np.nan
        if rounds > 0 and np.count_nonzero(counts) > 1:
            boot = (weights @ sums) / np.maximum(weights @ counts, 1e-12)
            tail = (1 - level) / 2
            lower, upper = (float(x) for x in np.quantile(boot, [tail, 1 - tail]))
        if np.isfinite(lower) and (lower > 0 or upper < 0):
            better = "candidate" if (diff > 0) == higher else "baseline"
        else:
            better = "undecided"
        n = int(ok.sum())
        warning = f"only {n} paired cells (< {MIN_CELLS})" if n < MIN_CELLS else ""
        rows.append(
            [metric, n, int(np.count_nonzero(counts)), float(c[ok].mean()), float(b[ok].mean()),
             diff, lower, upper, higher, better, warning]
        )  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def _prompt_weights(rng: np.random.Generator, n_prompts: int, rounds: int) -> np.ndarray:
    """(rounds, prompts) multinomial counts: each round redraws the prompts with replacement."""
    if rounds <= 0 or n_prompts == 0:
        return np.zeros((0, n_prompts))
    return rng.multinomial(n_prompts, np.full(n_prompts, 1.0 / n_prompts), size=rounds).astype(
        float
    )


def head_to_head(votes: pd.DataFrame, candidate: str, baseline: str, level: float = 0.95) -> dict:
    """The direct votes between the two: counts, the win rate of the candidate with ties
    and both-bad counting half (Wilson interval on that count), and the decisive win rate
    (ties left out)."""
    left, right = votes["left_model"], votes["right_model"]
    c_left = (left == candidate) & (right == baseline)
    c_right = (left == baseline) & (right == candidate)
    out = votes.loc[c_left | c_right, "outcome"]
    on_left = c_left[c_left | c_right].to_numpy()
    outcome = out.to_numpy()
    wins = int(((outcome == "left") & on_left).sum() + ((outcome == "right") & ~on_left).sum())
    losses = int(((outcome == "right") & on_left).sum() + ((outcome == "left") & ~on_left).sum())
    ties = int((outcome == "tie").sum())
    both_bad = int((outcome == "both_bad").sum())
    n = wins + losses + ties + both_bad
    result = {
        "votes": n, "wins": wins, "losses": losses, "ties": ties, "both_bad": both_bad,
        "win_rate": np.nan, "win_rate_lower": np.nan, "win_rate_upper": np.nan,
        "decisive_win_rate": np.nan, "decisive_lower": np.nan, "decisive_upper": np.nan,
    }  # fmt: skip
    if n:
        score = wins + 0.5 * (ties + both_bad)
        low, high = wilson_interval(np.array([score]), np.array([n]), level)
        result.update(
            win_rate=score / n, win_rate_lower=float(low[0]), win_rate_upper=float(high[0])
        )
    if wins + losses:
        low, high = wilson_interval(np.array([wins]), np.array([wins + losses]), level)
        result.update(
            decisive_win_rate=wins / (wins + losses),
            decisive_lower=float(low[0]),
            decisive_upper=float(high[0]),
        )
    return result


FAILURE_COLUMNS = [
    "source", "flag", "candidate", "candidate_low", "candidate_high", "candidate_reviewed",
    "baseline", "baseline_low", "baseline_high", "baseline_reviewed",
    "increase", "increase_low", "increase_high",
]  # fmt: skip


def failure_comparison(rates: pd.DataFrame, candidate: str, baseline: str) -> pd.DataFrame:
    """Per source (blind sample, all reviews) and failure mode both models were reviewed
    for: each model's rate with its Wilson interval, and the increase candidate - baseline
    with Newcombe's hybrid score interval for a difference of independent proportions
    (method 10 of Newcombe 1998, built from the two Wilson intervals)."""
    rows = []
    both = rates[rates["model"].isin([candidate, baseline]) & (rates["reviewed"] > 0)]
    for (source, mode), group in both.groupby(["source", "mode"], sort=False):
        by_model = group.set_index("model")
        if candidate not in by_model.index or baseline not in by_model.index:
            continue
        c, b = by_model.loc[candidate], by_model.loc[baseline]
        d = float(c["rate"] - b["rate"])
        low = d - math.sqrt((c["rate"] - c["ci_low"]) ** 2 + (b["ci_high"] - b["rate"]) ** 2)
        high = d + math.sqrt((c["ci_high"] - c["rate"]) ** 2 + (b["rate"] - b["ci_low"]) ** 2)
        rows.append(
            [source, mode, c["rate"], c["ci_low"], c["ci_high"], int(c["reviewed"]),
             b["rate"], b["ci_low"], b["ci_high"], int(b["reviewed"]), d, low, high]
        )  # fmt: skip
    return pd.DataFrame(rows, columns=FAILURE_COLUMNS)


def review_failures(store, frames: ReportFrames, candidate: str, baseline: str):
    """The failure pillar from the workspace's review flags (None without any)."""
    from arena.reports.failures import rates_for

    if store.image_flags_frame().empty:
        return None
    return failure_comparison(rates_for(store, frames), candidate, baseline)


def candidate_report(
    store,
    candidate: str,
    baseline: str,
    filters: Filters | None = None,
    rounds: int | None = None,
    seed: int | None = None,
    failures=review_failures,
) -> CandidateReport:
    """Every pillar for ``candidate`` against ``baseline`` under ``filters``.

    ``failures``: ``(store, frames, candidate, baseline) -> DataFrame | None``, the
    failure pillar (default: from the review flags; None where there are none).
    """
    settings = store.settings
    rounds = settings.bootstrap_rounds if rounds is None else int(rounds)
    seed = settings.seed if seed is None else int(seed)
    frames = load_report_frames(store, filters)
    _check_models(frames, store, candidate, baseline)
    notes = []
    quality = sample_quality(frames.model_metrics, candidate, baseline)
    if quality.empty:
        notes.append(
            "sample quality: no model-level number for both models against the same "
            "reference (run `arena distribution --models ...`)."
        )
    cells = paired_cells(frames.images, candidate, baseline)
    rng = np.random.default_rng(seed)
    versions = current_versions(frames.scores)
    # bootstrap clusters in the prompts' content order, not their ids
    adherence = prompt_adherence(
        frames.image_scores, versions, cells, rng, rounds, prompts=frames.prompts
    )
    if cells.empty:
        notes.append("prompt adherence: the two models share no (prompt, seed) cell.")
    preference = head_to_head(frames.votes, candidate, baseline)
    board = LeaderboardService(store).get(frames=frames, rounds=rounds, seed=seed)
    preference.update(_rating_gap(board, candidate, baseline))
    if preference["votes"] < MIN_HEAD_TO_HEAD:
        notes.append(
            f"human preference: {preference['votes']} direct votes between the two "
            f"(< {MIN_HEAD_TO_HEAD}); the win rate's interval is wide."
        )
    table = failures(store, frames, candidate, baseline) if failures is not None else None
    return CandidateReport(
        candidate, baseline, frames.filters, quality, adherence, preference, table, notes
    )


def _rating_gap(board, candidate: str, baseline: str) -> dict:
    """The leaderboard's view: rating difference, its interval, votes still needed."""
    empty = {"rating_difference": np.nan, "rating_lower": np.nan, "rating_upper": np.nan,
             "more_votes": np.nan, "board_votes": board.votes_used}  # fmt: skip
    ratings = board.ratings
    if ratings is None or candidate not in ratings.names or baseline not in ratings.names:
        return empty
    gap = separation(ratings, candidate, baseline)
    return {
        "rating_difference": gap["difference"],
        "rating_lower": gap["lower"],
        "rating_upper": gap["upper"],
        "more_votes": gap["more_votes"],
        "board_votes": board.votes_used,
    }
