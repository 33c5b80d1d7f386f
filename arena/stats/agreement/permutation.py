"""Permutation p-values of a rank correlation across models.

With a handful of models the prompt bootstrap says little: it holds the models fixed, so
ρ over 4 models can come out as 0.4 with the interval [0.4, 0.4]. The question a reader
asks, "could an order this close arise by chance?", is answered by the permutation test:
under no association every pairing of the metric's values with the human ratings is
equally likely. Up to :data:`EXACT_MAX_MODELS` models all n! pairings are enumerated (the
exact p-value); above, :data:`DRAWS` random pairings from a seeded generator estimate it.
The p-value is two-sided as in ``scipy.stats.permutation_test``: twice the smaller
one-sided tail, at most 1; the Monte-Carlo one counts the observed pairing (``(k + 1) /
(draws + 1)``), so it is never 0.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import permutations

import numpy as np

#: Enumerate all pairings up to this many models (8! = 40,320); draw them above.
EXACT_MAX_MODELS = 8
#: Random pairings above EXACT_MAX_MODELS: p is resolved to 1e-4 (its s.e. ≤ 0.005).
DRAWS = 9_999
#: Pairings evaluated per block (bounded memory for Kendall's n² pair signs).
BLOCK = 1 << 21
#: Relative tolerance when comparing a permuted statistic with the observed one.
TOLERANCE = 1e-12


def permutation_pvalue(
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    exact_max: int = EXACT_MAX_MODELS,
    draws: int = DRAWS,
) -> float:
    """Two-sided permutation p-value of ``statistic(x[None], y[None])`` over pairings.

    ``statistic`` maps rows (R, n), (R, n) to (R,) (``spearman_rows``,
    ``kendall_rows``). NaN with fewer than 2 values or a constant side.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = len(x)
    observed = float(statistic(x[None, :], y[None, :])[0])
    if n < 2 or not np.isfinite(observed):
        return float("nan")
    exact = n <= exact_max
    every = np.array(list(permutations(range(n))), dtype=np.int64) if exact else None
    total = len(every) if exact else draws
    rows = max(1, BLOCK // (n * n))
    tol = TOLERANCE * max(1.0, abs(observed))
    greater = less = 0
    for start in range(0, total, rows):
        count = min(rows, total - start)
        if exact:
            order = every[start : start + count]
        else:
            order = rng.permuted(np.broadcast_to(np.arange(n), (count, n)), axis=1)
        values = statistic(np.broadcast_to(x, order.shape), y[order])
        greater += int(np.sum(values >= observed - tol))
        less += int(np.sum(values <= observed + tol))
    if exact:
        p_greater, p_less = greater / total, less / total
    else:
        p_greater, p_less = (greater + 1) / (total + 1), (less + 1) / (total + 1)
    return float(min(1.0, 2.0 * min(p_greater, p_less)))
