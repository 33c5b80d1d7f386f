"""Metric × metric agreement (issue 22, item 6): Spearman ρ between metrics over images
(pairwise complete) and over models, against scipy.stats.spearmanr and by hand, the
permutation p-value against the agreement page's and scipy's permutation tests, the
orientation of lower-is-better metrics, and invariance to row order and ids."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from arena.reports.analyses import AnalysesService
from arena.stats.agreement.correlations import spearman_rows
from arena.stats.agreement.permutation import permutation_pvalue
from arena.stats.metric_correlation import (
    COLUMNS,
    correlation_matrix,
    correlation_table,
    spearman_pairwise,
    spearman_pvalue,
)
from tests import analyses_data as D


def test_spearman_by_hand():
    values = np.array(
        [
            [1.0, 10.0, 3.0, 5.0],
            [2.0, 20.0, 1.0, 5.0],
            [3.0, 30.0, 2.0, 5.0],
        ]
    )
    rho, n = spearman_pairwise(values)
    assert rho[0, 1] == 1.0  # same order
    assert rho[0, 2] == pytest.approx(-0.5)  # ranks (1, 2, 3) vs (3, 1, 2): 1 - 6·6/24
    assert np.isnan(rho[0, 3])  # a constant metric has no ρ
    assert rho[0, 0] == 1.0 and (n == 3).all()


def test_pairwise_complete_against_scipy():
    rng = np.random.default_rng(0)
    base = rng.normal(size=200)
    values = np.column_stack(
        [
            base + rng.normal(scale=0.5, size=200),
            np.round(base * 2),  # ties
            rng.normal(size=200),
            -base,
        ]
    )
    values[rng.random(200) < 0.2, 0] = np.nan  # each metric skips other images
    values[rng.random(200) < 0.1, 1] = np.nan
    values[:5, 3] = np.nan
    rho, n = spearman_pairwise(values)
    for a in range(4):
        for b in range(4):
            both = np.isfinite(values[:, a]) & np.isfinite(values[:, b])
            expected = stats.spearmanr(values[both, a], values[both, b]).statistic
            assert rho[a, b] == pytest.approx(expected, abs=1e-12)
            assert n[a, b] == both.sum()


def test_the_permutation_p_value_is_the_agreement_pages():
    rng = np.random.default_rng(1)
    for n_models in (4, 6, 8):  # exact: every pairing
        x, y = rng.normal(size=n_models), rng.normal(size=n_models)
        y[0] = y[1]  # a tie
        mine = spearman_pvalue(x, y, np.random.default_rng(0))
        theirs = permutation_pvalue(spearman_rows, x, y, np.random.default_rng(0))
        assert mine == pytest.approx(theirs, abs=1e-12)
        if n_models < 8:  # scipy's exact test at 8 takes seconds
            scipy_p = stats.permutation_test(
                (x,),
                lambda a, y=y: stats.spearmanr(a, y).statistic,
                permutation_type="pairings",
                n_resamples=np.inf,
            ).pvalue
            assert mine == pytest.approx(scipy_p, abs=1e-12)
    x, y = rng.normal(size=12), rng.normal(size=12)  # random pairings, the same draws
    mine = spearman_pvalue(x, y, np.random.default_rng(3))
    theirs = permutation_pvalue(spearman_rows, x, y, np.random.default_rng(3))
    assert mine == pytest.approx(theirs, abs=1e-12)
    assert np.isnan(spearman_pvalue(x, np.ones(12), np.random.default_rng(0)))


def test_the_long_table_and_the_matrix():
    frame = pd.DataFrame({"b": [3.0, 1.0, 2.0], "a": [1.0, 2.0, 3.0], "c": [1.0, 2.0, np.nan]})
    table = correlation_table(frame, "model", np.random.default_rng(0))
    assert list(table.columns) == COLUMNS
    assert list(zip(table.metric_a, table.metric_b, strict=True)) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]
    assert table.spearman.tolist() == pytest.approx([-0.5, 1.0, -1.0])
    assert table.n.tolist() == [3, 2, 2]
    assert table.p_value.iloc[0] == 1.0  # 3 models: no order is unlikely
    matrix = correlation_matrix(table, "model")
    assert matrix.loc["b", "a"] == matrix.loc["a", "b"] == -0.5
    assert np.diag(matrix).tolist() == [1.0, 1.0, 1.0]


def test_on_the_workspace_oriented_and_over_the_common_set(store):
    ids = D.build(store)
    analyses = AnalysesService(store.with_settings(bootstrap_rounds=10)).get().analyses
    table = analyses.metric_correlation.set_index(["level", "metric_a", "metric_b"])
    # over images: every non-broken image of the filter (12 common + 4 more: 16)
    usable = [k for k in ids if k != D.BROKEN]
    sharp = [D.SHARPNESS[k] for k in usable]
    anomaly = [-D.ANOMALY[k] for k in usable]  # lower is better: negated
    tags = [np.mean(D.HITS[k]) for k in usable]
    assert table.at[("image", "anomaly", "sharpness"), "spearman"] == pytest.approx(
        stats.spearmanr(anomaly, sharp).statistic
    )
    assert table.at[("image", "sharpness", "tags"), "spearman"] == pytest.approx(
        stats.spearmanr(sharp, tags).statistic
    )
    assert table.at[("image", "anomaly", "sharpness"), "n"] == 16
    # over models: the per-model means on the common set (the board's), oriented
    means = {
        m: (D.mean_over(D.SHARPNESS, m, D.COMMON), -D.mean_over(D.ANOMALY, m, D.COMMON))
        for m in D.MODELS
    }
    expected = stats.spearmanr([v[0] for v in means.values()], [v[1] for v in means.values()])
    row = table.loc[("model", "anomaly", "sharpness")]
    assert row["spearman"] == pytest.approx(expected.statistic) and row["n"] == 3
    assert row["spearman"] == 1.0 and row["p_value"] == pytest.approx(1 / 3)  # 2 of 6 pairings


def test_model_level_numbers_join_the_model_level(store):
    D.build(store)
    for model, fid in (("A", 30.0), ("B", 10.0), ("C", 50.0)):
        store.put_model_metric(store.model_id(model), "fid", "real", fid, higher_is_better=False)
    analyses = AnalysesService(store.with_settings(bootstrap_rounds=10)).get().analyses
    table = analyses.metric_correlation.set_index(["level", "metric_a", "metric_b"])
    # sharpness means on the common set: A 2.75, B 3.5, C 1.875; -FID: -30, -10, -50
    assert table.at[("model", "fid", "sharpness"), "spearman"] == 1.0
    assert ("image", "fid", "sharpness") not in table.index


def test_numbers_do_not_move_with_ids_insert_order_or_model_names(tmp_path):
    from arena.config import load_settings
    from arena.storage.store import Store

    def table(name, **kwargs):
        store = Store(load_settings(env={}, workspace=str(tmp_path / name), bootstrap_rounds=5))
        D.build(store, **kwargs)
        return AnalysesService(store).get().analyses.metric_correlation

    base = table("base")
    order = list(np.random.default_rng(4).permutation(len(D.cells())))
    other = table("other", order=order, id_offset=777, names=["q", "c", "x"])
    pd.testing.assert_frame_equal(base, other)
