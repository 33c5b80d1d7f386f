"""The chance level beside each accuracy: what a metric blind to the images expects."""

from __future__ import annotations

import numpy as np
import pytest

from arena.stats import agreement as ag
from arena.stats.agreement.report import chance_accuracy
from arena.stats.pairs import BOTH_BAD, LEFT, RIGHT, TIE
from tests.agreement_data import synthetic_arena


def test_chance_by_hand():
    outcome = np.array([LEFT, RIGHT, TIE, BOTH_BAD, LEFT])  # 2 of 5 human ties
    assert chance_accuracy(outcome, "decisive") == 0.5
    assert chance_accuracy(outcome, "ties_half") == 0.5
    assert chance_accuracy(outcome, "with_ties") == pytest.approx(0.4)  # always "tie"
    few_ties = np.array([LEFT, RIGHT, LEFT, RIGHT, TIE])  # always a side: 0.8 / 2
    assert chance_accuracy(few_ties, "with_ties") == pytest.approx(0.4)
    assert np.isnan(chance_accuracy(np.array([], dtype=int), "with_ties"))


def test_a_blind_metric_lands_on_the_chance_level():
    """Scores of pure noise, independent of the images: under every protocol the accuracy
    is at the chance column (0.5 for a and b; the best of tie / side for c), not at 0.5."""
    for tie_band, seed in ((3.5, 3), (0.6, 4)):  # many human ties (chance = π), then few
        data = synthetic_arena(
            np.random.default_rng(seed),
            n_models=4,
            n_prompts=1000,
            n_votes=20000,
            rater_sd=0.5,
            tie_band=tie_band,
            metric_noise={"m": 1.0},
        )
        scores = data.scores.copy()
        scores["value"] = np.random.default_rng(seed + 10).normal(size=len(scores))
        report = ag.agreement_report(data.votes, scores, np.random.default_rng(0), rounds=200)
        acc = report.accuracy.set_index("protocol")
        ties = data.votes.outcome.isin(["tie", "both_bad"]).mean()
        assert acc.loc["with_ties", "chance"] == pytest.approx(max(ties, (1 - ties) / 2))
        assert acc.loc["decisive", "chance"] == acc.loc["ties_half", "chance"] == 0.5
        for protocol in ("decisive", "ties_half", "with_ties"):
            row = acc.loc[protocol]
            assert row.ci_low <= row.chance <= row.ci_high, (tie_band, protocol)
            assert row.accuracy == pytest.approx(row.chance, abs=0.03)
        assert abs(acc.loc["with_ties", "chance"] - 0.5) > 0.05  # 0.5 would mislead here
        assert np.isnan(report.accuracy.set_index("metric").loc[ag.CEILING, "chance"])
