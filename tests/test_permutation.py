"""Permutation p-values of ρ and τ across models, and the few-models flag of the report."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from arena.stats import agreement as ag
from arena.stats.agreement.correlations import (
    MIN_MODELS_FOR_INTERVAL,
    kendall_rows,
    spearman_rows,
)
from arena.stats.agreement.permutation import permutation_pvalue
from tests.agreement_data import synthetic_arena


def _scipy_spearman_p(x, y, **kwargs):
    return stats.permutation_test(
        (x,),
        lambda a: stats.spearmanr(a, y).statistic,
        permutation_type="pairings",
        **kwargs,
    ).pvalue


@pytest.mark.parametrize("n", [3, 4, 5, 6, 7, 8])
def test_exact_pvalues_equal_scipy(n):
    rng = np.random.default_rng(n)
    for _ in range(3 if n < 8 else 1):  # scipy's exact test at 8 takes seconds
        x = rng.normal(size=n)
        y = x + rng.normal(size=n)
        p_rho = permutation_pvalue(spearman_rows, x, y, rng)
        assert p_rho == pytest.approx(_scipy_spearman_p(x, y, n_resamples=np.inf), abs=1e-12)
        p_tau = permutation_pvalue(kendall_rows, x, y, rng)
        assert p_tau == pytest.approx(stats.kendalltau(x, y, method="exact").pvalue, abs=1e-12)
    # With tied values (average ranks), still the exact permutation distribution.
    x = np.round(rng.normal(size=n), 0)
    y = x + rng.normal(size=n)
    if np.ptp(x) > 0:
        got = permutation_pvalue(spearman_rows, x, y, rng)
        assert got == pytest.approx(_scipy_spearman_p(x, y, n_resamples=np.inf), abs=1e-12)


def test_small_samples_cannot_reach_significance():
    """The numbers behind MIN_MODELS_FOR_INTERVAL: the smallest p at 4 and 5 models, and
    one swapped neighbour at 6."""
    rng = np.random.default_rng(0)
    assert permutation_pvalue(spearman_rows, np.arange(4), np.arange(4), rng) == 1 / 12
    assert permutation_pvalue(spearman_rows, np.arange(5), np.arange(5), rng) == 1 / 60
    swapped = np.array([1, 0, 2, 3, 4, 5])
    assert permutation_pvalue(spearman_rows, np.arange(6), swapped, rng) == pytest.approx(1 / 60)
    assert MIN_MODELS_FOR_INTERVAL == 6


def test_monte_carlo_pvalue_is_seeded_and_close_to_scipy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=14)
    y = 0.5 * x + rng.normal(size=14)
    a = permutation_pvalue(spearman_rows, x, y, np.random.default_rng(7))
    b = permutation_pvalue(spearman_rows, x, y, np.random.default_rng(7))
    assert a == b
    reference = _scipy_spearman_p(x, y, n_resamples=50_000, random_state=1)
    assert a == pytest.approx(reference, abs=0.02)  # s.e. of a at p≈0.1: 0.003
    tau = permutation_pvalue(kendall_rows, x, y, np.random.default_rng(7))
    assert tau == pytest.approx(stats.kendalltau(x, y, method="exact").pvalue, abs=0.02)
    # Never 0: the observed pairing counts.
    assert permutation_pvalue(spearman_rows, x, x, rng) == pytest.approx(2 / 10_000)


def test_report_flags_few_models_and_gives_the_exact_pvalue():
    for n_models, few in ((4, True), (6, False)):
        data = synthetic_arena(
            np.random.default_rng(11),
            n_models=n_models,
            n_prompts=60,
            n_votes=2000,
            rater_sd=1.0,
            metric_noise={"m": 1.0},
            metric_model_bias={"m": 1.0},
        )
        report = ag.agreement_report(
            data.votes, data.scores, np.random.default_rng(0), images=data.images, rounds=50
        )
        corr = report.correlations.iloc[0]
        assert corr.few_models == few
        bounds = corr[["spearman_low", "spearman_high", "kendall_low", "kendall_high"]]
        bounds = bounds.to_numpy(float)
        bounds_bt = corr[["spearman_bt_low", "spearman_bt_high"]].to_numpy(float)
        assert np.isnan(bounds).all() == few and np.isnan(bounds_bt).all() == few
        models = report.models
        h, m = models.human_rating.to_numpy(), models.m_mean.to_numpy()
        assert corr.spearman_p == pytest.approx(_scipy_spearman_p(m, h, n_resamples=np.inf))
        assert corr.kendall_p == pytest.approx(stats.kendalltau(m, h, method="exact").pvalue)
