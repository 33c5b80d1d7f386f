"""Metric × metric agreement: do two automatic metrics order the images (and the models) alike?

Two metrics that rank the images the same way measure one thing twice; two that disagree
measure different things, or one of them is noise. Spearman's ρ (Pearson's r of the
average ranks) for every pair of metrics, over images (pairwise complete: the images both
metrics scored) and over models (their per-model means, and the model-level numbers). The
values are oriented so that higher is better for every metric before ranking, so ρ > 0
means the two agree on what is better. Pure functions of arrays and frames.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import pandas as pd
from scipy import stats

from arena.stats.agreement.permutation import DRAWS, EXACT_MAX_MODELS, TOLERANCE

COLUMNS = ["level", "metric_a", "metric_b", "spearman", "n", "p_value"]


def _centred_ranks(x: np.ndarray) -> np.ndarray:
    r = stats.rankdata(x)
    return r - r.mean()


def spearman_pairwise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ρ, n): Spearman's ρ and the number of rows for every pair of columns of ``values``
    (rows × metrics), each pair over the rows where both are finite, ranked on those rows
    (average ranks for ties). NaN with fewer than 2 rows or a constant column there; the
    diagonal is 1 where a column varies."""
    values = np.asarray(values, dtype=np.float64)
    k = values.shape[1]
    rho = np.full((k, k), np.nan)
    count = np.zeros((k, k), dtype=np.int64)
    finite = np.isfinite(values)
    own = [_centred_ranks(values[finite[:, a], a]) for a in range(k)]  # over its own rows
    for a in range(k):
        for b in range(a, k):
            both = finite[:, a] & finite[:, b]
            n = int(both.sum())
            count[a, b] = count[b, a] = n
            if n < 2:
                continue
            if n == finite[:, a].sum() == finite[:, b].sum():  # the usual case: no re-rank
                x, y = own[a], own[b]
            else:
                x, y = _centred_ranks(values[both, a]), _centred_ranks(values[both, b])
            denom = np.sqrt((x * x).sum() * (y * y).sum())
            if denom > 0:
                rho[a, b] = rho[b, a] = float((x * y).sum() / denom)
    return rho, count


_EXACT: dict[int, np.ndarray] = {}


def _pairings(n: int, rng: np.random.Generator) -> tuple[np.ndarray, bool]:
    """Every ordering of n rows (n ≤ EXACT_MAX_MODELS; cached), else DRAWS random ones."""
    if n <= EXACT_MAX_MODELS:
        if n not in _EXACT:
            _EXACT[n] = np.array(list(permutations(range(n))), dtype=np.int64)
        return _EXACT[n], True
    return rng.permuted(np.broadcast_to(np.arange(n), (DRAWS, n)), axis=1), False


def spearman_pvalue(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """Two-sided permutation p-value of Spearman's ρ between ``x`` and ``y``: every pairing
    up to 8 rows (exact), else 9,999 random ones, as
    :func:`arena.stats.agreement.permutation.permutation_pvalue` (twice the smaller tail,
    at most 1; a random draw counts the observed pairing). Ranks are fixed under a
    pairing, so one product of the centred ranks per pairing gives all ρ at once."""
    rx, ry = _centred_ranks(np.asarray(x, np.float64)), _centred_ranks(np.asarray(y, np.float64))
    n = len(rx)
    observed = float(rx @ ry)
    if n < 2 or not (rx.any() and ry.any()):
        return float("nan")
    order, exact = _pairings(n, rng)
    values = ry[order] @ rx
    tol = TOLERANCE * max(1.0, abs(observed))
    greater = int(np.sum(values >= observed - tol))
    less = int(np.sum(values <= observed + tol))
    total = len(order)
    if exact:
        p_greater, p_less = greater / total, less / total
    else:
        p_greater, p_less = (greater + 1) / (total + 1), (less + 1) / (total + 1)
    return float(min(1.0, 2.0 * min(p_greater, p_less)))


def correlation_table(
    values: pd.DataFrame, level: str, rng: np.random.Generator | None = None
) -> pd.DataFrame:
    """The long table of :func:`spearman_pairwise` over the columns of ``values`` (rows:
    images or models, columns: metrics, oriented), one row per pair a < b (by name).

    ``p_value``: with ``rng``, the two-sided permutation p-value of ρ over the rows both
    metrics have (:func:`spearman_pvalue`); without, empty. Over images it is left out:
    images of one prompt are not independent, so no test that treats them so is offered.
    """
    names = sorted(str(c) for c in values.columns)
    matrix = values[names].to_numpy(np.float64) if names else np.zeros((len(values), 0))
    rho, count = spearman_pairwise(matrix)
    rows = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            p = float("nan")
            if rng is not None and np.isfinite(rho[a, b]):
                both = np.isfinite(matrix[:, a]) & np.isfinite(matrix[:, b])
                p = spearman_pvalue(matrix[both, a], matrix[both, b], rng)
            rows.append((level, names[a], names[b], rho[a, b], int(count[a, b]), p))
    return pd.DataFrame(rows, columns=COLUMNS)


def metric_correlations(
    image_values: pd.DataFrame, model_values: pd.DataFrame, rng: np.random.Generator
) -> pd.DataFrame:
    """Metric × metric Spearman ρ over images (``image_values``: one row per image, one
    oriented column per metric) and over models (``model_values``: one row per model: the
    per-model means and the model-level numbers, oriented), with ``level`` ``image`` or
    ``model``; the model level carries permutation p-values drawn from ``rng``."""
    parts = [
        correlation_table(image_values, "image"),
        correlation_table(model_values, "model", rng),
    ]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(parts, ignore_index=True)


def correlation_matrix(table: pd.DataFrame, level: str) -> pd.DataFrame:
    """The square matrix (metrics × metrics, 1 on the diagonal) of one ``level`` of a
    :func:`metric_correlations` table, for a heatmap."""
    part = table[table["level"] == level]
    names = sorted(set(part["metric_a"]) | set(part["metric_b"]))
    out = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for r in part.itertuples(index=False):
        out.loc[r.metric_a, r.metric_b] = out.loc[r.metric_b, r.metric_a] = r.spearman
    return out
