"""Rater-quality signals on small hand-made vote tables whose answers are worked out here."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from arena.stats.rater_quality import (
    QualityThresholds,
    gold_accuracy,
    leave_one_out_agreement,
    rater_report,
    side_preference,
)


def _votes(rows):
    frame = pd.DataFrame(
        rows,
        columns=[
            "rater_id",
            "left_image_id",
            "right_image_id",
            "outcome",
            "battle_kind",
            "gold_answer",
            "decision_ms",
        ],
    )
    return frame


def test_agreement_is_leave_one_out_and_orientation_free():
    # Pair (1, 2): raters 1 and 2 prefer image 1 (rater 2 saw it on the right), rater 3 image 2.
    rows = [
        (1, 1, 2, "left", "normal", None, 2000),
        (2, 2, 1, "right", "normal", None, 2000),
        (3, 1, 2, "right", "normal", None, 2000),
    ]
    result = leave_one_out_agreement(_votes(rows)).set_index("rater_id")
    # Rater 1 vs others {2: a, 3: b}: a tie between answers -> skipped. Same for rater 2.
    # Rater 3 vs others {a, a}: majority a, rater 3 said b -> disagrees.
    assert list(result.index) == [3]
    assert result.loc[3, "agreement"] == 0.0


def test_gold_accuracy_counts_the_intact_side():
    rows = [
        (1, 1, 2, "left", "gold", "left", 1500),
        (1, 3, 4, "right", "gold", "left", 1500),
        (1, 5, 6, "tie", "gold", "right", 1500),
        (2, 1, 2, "left", "gold", "left", 1500),
        (2, 1, 2, "left", "normal", None, 1500),
    ]
    result = gold_accuracy(_votes(rows)).set_index("rater_id")
    assert result.loc[1, "gold_votes"] == 3 and result.loc[1, "gold_accuracy"] == pytest.approx(
        1 / 3
    )
    assert result.loc[2, "gold_accuracy"] == 1.0


def test_side_preference_matches_scipy_binomtest():
    outcomes = ["left"] * 18 + ["right"] * 4 + ["tie"] * 3
    rows = [(7, 1, 2, o, "normal", None, 1000) for o in outcomes]
    result = side_preference(_votes(rows)).iloc[0]
    assert result["decisive"] == 22 and result["left_rate"] == pytest.approx(18 / 22)
    assert result["side_p"] == pytest.approx(binomtest(18, 22, 0.5).pvalue)


def test_report_flags_always_left_and_careless_raters_but_not_good_ones():
    rng = np.random.default_rng(0)
    rows = []
    for rater in (1, 2, 3):
        for k in range(40):
            lo, hi = 10 + k, 100 + k
            truth_left = rng.random() < 0.5
            left, right = (lo, hi) if truth_left else (hi, lo)
            if rater == 2:
                outcome = "left"  # always left
            else:
                outcome = "left" if left == lo else "right"  # prefers the lower id, like others
            rows.append((rater, left, right, outcome, "normal", None, 3000))
        for k in range(10):
            answer = "left" if k % 2 else "right"
            given = answer if rater != 3 else ("right" if answer == "left" else "left")
            if rater == 2:
                given = "left"
            rows.append((rater, 500 + k, 600 + k, given, "gold", answer, 3000))
    report = rater_report(_votes(rows), min_decision_ms=700).set_index("rater_id")
    assert report.loc[1, "flag_reasons"] == ""
    assert "chooses left" in report.loc[2, "flag_reasons"]
    assert "gold accuracy 0%" in report.loc[3, "flag_reasons"]


def test_fast_voters_are_flagged_only_past_the_threshold():
    rows = [
        (1, k, k + 1, "left" if k % 2 else "right", "normal", None, 100 if k < 15 else 2000)
        for k in range(30)
    ]
    report = rater_report(
        _votes(rows), min_decision_ms=700, thresholds=QualityThresholds(max_fast_fraction=0.4)
    )
    assert "faster than the minimum" in report.loc[0, "flag_reasons"]
    report = rater_report(
        _votes(rows), min_decision_ms=700, thresholds=QualityThresholds(max_fast_fraction=0.6)
    )
    assert report.loc[0, "flag_reasons"] == ""
