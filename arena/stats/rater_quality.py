"""Rater quality: gold accuracy, agreement with the majority, speed, side preference,
targeted voting (:mod:`arena.stats.targeted`).

Pure functions over the votes frame (``Store.votes_frame(include_excluded=True,
include_gold=True)``); no database, no Gradio. ``rater_report`` gives one row
per rater with every signal and the reasons it is flagged; the battles module
applies the exclusion policy and the Admin tab shows (and can reverse) it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from arena.stats import image_pairs
from arena.stats.pairs import encode_outcomes
from arena.stats.targeted import targeted_report

DECISIVE = ("left", "right")


@dataclass(frozen=True)
class QualityThresholds:
    """When a rater is flagged. Each rule needs enough evidence before it fires."""

    min_gold: int = 5  # gold battles answered before gold accuracy counts
    min_gold_accuracy: float = 0.7
    min_shared: int = 10  # votes on pairs others also voted on, before agreement counts
    min_agreement: float = 0.5
    min_decisive: int = 20  # decisive votes before side preference counts
    max_side_rate: float = 0.85  # always-left / always-right raters
    side_alpha: float = 1e-3
    max_fast_fraction: float = 0.5
    min_votes_for_fast: int = 20
    targeted_alpha: float = 1e-3  # family-wise level of the targeted-voting test
    targeted_min_votes: int = 10  # decisive votes before a rater or group is tested


def leave_one_out_agreement(votes: pd.DataFrame) -> pd.DataFrame:
    """Per rater: how often their answer equals the majority of the *other* raters' answers.

    Only pairs voted by at least two distinct raters count; a vote is compared with
    the most common answer of the other raters on that pair (ties between answers
    in the others' votes are skipped). Returns rater_id, shared, agreement.
    """
    normal = votes[votes["battle_kind"] == "normal"]
    unit, answer = image_pairs.orient(
        normal["left_image_id"].to_numpy(),
        normal["right_image_id"].to_numpy(),
        encode_outcomes(normal["outcome"].to_numpy()),
    )
    frame = pd.DataFrame(
        {"rater_id": normal["rater_id"].to_numpy(), "pair": unit, "answer": answer}
    )
    rows = []
    for pair, group in frame.groupby("pair", sort=False):
        if group["rater_id"].nunique() < 2:
            continue
        answers = group["answer"].to_numpy()
        raters = group["rater_id"].to_numpy()
        for k in range(len(group)):
            others = answers[raters != raters[k]]
            values, counts = np.unique(others, return_counts=True)
            if len(values) == 0 or (counts == counts.max()).sum() > 1:
                continue
            rows.append((raters[k], pair, answers[k] == values[counts.argmax()]))
    if not rows:
        return pd.DataFrame(columns=["rater_id", "shared", "agreement"])
    result = pd.DataFrame(rows, columns=["rater_id", "pair", "agree"])
    grouped = result.groupby("rater_id")["agree"]
    return pd.DataFrame({"shared": grouped.size(), "agreement": grouped.mean()}).reset_index()


def gold_accuracy(votes: pd.DataFrame) -> pd.DataFrame:
    """Per rater: gold battles answered and the fraction where they chose the intact image."""
    gold = votes[votes["battle_kind"] == "gold"]
    if gold.empty:
        return pd.DataFrame(columns=["rater_id", "gold_votes", "gold_accuracy"])
    correct = gold["outcome"] == gold["gold_answer"]
    grouped = correct.groupby(gold["rater_id"])
    return pd.DataFrame(
        {"gold_votes": grouped.size(), "gold_accuracy": grouped.mean()}
    ).reset_index()


def side_preference(votes: pd.DataFrame) -> pd.DataFrame:
    """Per rater: decisive votes, left-choice rate and a two-sided binomial test against 1/2.

    A rater's habit of choosing one screen side; the arena-wide left-win rate is
    :func:`arena.stats.agreement.position_bias`.
    """
    decisive = votes[votes["outcome"].isin(DECISIVE) & (votes["battle_kind"] == "normal")]
    rows = []
    for rater, group in decisive.groupby("rater_id"):
        n = len(group)
        lefts = int((group["outcome"] == "left").sum())
        rows.append((rater, n, lefts / n, binomtest(lefts, n, 0.5).pvalue))
    return pd.DataFrame(rows, columns=["rater_id", "decisive", "left_rate", "side_p"])


def decision_times(votes: pd.DataFrame, min_decision_ms: int) -> pd.DataFrame:
    """Per rater: vote count, median decision time and the fraction faster than the minimum."""
    times = votes["decision_ms"].astype(float)
    fast = times < min_decision_ms
    grouped = votes.assign(ms=times, fast=fast).groupby("rater_id")
    return pd.DataFrame(
        {
            "votes": grouped.size(),
            "median_decision_ms": grouped["ms"].median(),
            "fast_fraction": grouped["fast"].mean(),
        }
    ).reset_index()


def rater_report(
    votes: pd.DataFrame, min_decision_ms: int, thresholds: QualityThresholds | None = None
) -> pd.DataFrame:
    """One row per rater with every quality signal and ``flag_reasons`` ('' when clean).

    The targeted-voting test runs last: its Bradley-Terry null is fitted without the
    raters already excluded and without those the other rules flag here (an always-left
    bot is no yardstick of what honest raters prefer).
    """
    t = thresholds or QualityThresholds()
    report = decision_times(votes, min_decision_ms)
    for part in (gold_accuracy(votes), leave_one_out_agreement(votes), side_preference(votes)):
        report = report.merge(part, on="rater_id", how="left")
    reasons = [_reasons(row, t) for row in report.itertuples(index=False)]
    flagged = report["rater_id"][[bool(r) for r in reasons]]
    left_out = votes["rater_id"].isin(flagged).to_numpy().copy()
    if "rater_excluded" in votes:
        left_out |= votes["rater_excluded"].to_numpy(dtype=bool)
    fit_votes = votes.assign(rater_excluded=left_out)
    targeted = targeted_report(fit_votes, t.targeted_alpha, t.targeted_min_votes)
    report = report.merge(targeted, on="rater_id", how="left")
    for found, why in zip(reasons, report["targeted_reason"], strict=True):
        if isinstance(why, str) and why:
            found.append(why)
    report["flag_reasons"] = ["; ".join(r) for r in reasons]
    return report.sort_values("rater_id").reset_index(drop=True)


def _reasons(row, t: QualityThresholds) -> list[str]:
    reasons = []
    if _known(row.gold_votes) >= t.min_gold and row.gold_accuracy < t.min_gold_accuracy:
        reasons.append(f"gold accuracy {row.gold_accuracy:.0%} < {t.min_gold_accuracy:.0%}")
    if _known(row.shared) >= t.min_shared and row.agreement < t.min_agreement:
        reasons.append(f"agrees with the majority {row.agreement:.0%} < {t.min_agreement:.0%}")
    if (
        _known(row.decisive) >= t.min_decisive
        and row.side_p < t.side_alpha
        and abs(row.left_rate - 0.5) > t.max_side_rate - 0.5
    ):
        side = "left" if row.left_rate > 0.5 else "right"
        rate = row.left_rate if side == "left" else 1 - row.left_rate
        reasons.append(f"chooses {side} {rate:.0%} of the time")
    if row.votes >= t.min_votes_for_fast and row.fast_fraction > t.max_fast_fraction:
        reasons.append(f"{row.fast_fraction:.0%} of votes faster than the minimum decision time")
    return reasons


def _known(value) -> float:
    return 0.0 if value is None or (isinstance(value, float) and np.isnan(value)) else value
