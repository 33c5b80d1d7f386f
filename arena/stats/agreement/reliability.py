"""Whether the raters can be relied on as a group: Krippendorff's α and the arena's position bias.

α (nominal) is read on image pairs with several votes, answers oriented to the pair's
canonical image order (:mod:`arena.stats.image_pairs`) and the coincidences symmetrised
over that orientation (:func:`pair_coincidences`). Position bias here is the
arena-wide left-win rate among decisive votes; the per-rater signal of always choosing
one side is :func:`arena.stats.rater_quality.side_preference`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from arena.stats.image_pairs import HIGHER, LOWER
from arena.stats.pairs import BOTH_BAD, LEFT, RIGHT, TIE

#: Answers about an image pair (:func:`arena.stats.image_pairs.orient`): lower id won,
#: higher won, tie, both bad; and the same answers with the pair's images swapped.
PAIR_VALUES = 4
SWAPPED = np.array([HIGHER, LOWER, TIE, BOTH_BAD])

POSITION_COLUMNS = [
    "decisive_votes",
    "left_wins",
    "left_win_rate",
    "ci_low",
    "ci_high",
    "p_value",
]


def krippendorff_alpha_nominal(units, values) -> float:
    """Krippendorff's α for nominal data, from long-format (unit, value) pairs.

    Each pair is one coder's value for one unit (missing values are simply
    absent). Units with fewer than two values are not pairable and are left
    out. Coincidences ``o_ck = Σ_u n_uc n_uk / (m_u - 1)`` (c ≠ k; for c = k
    ``n_uc (n_uc - 1)``), ``n_c = Σ_k o_ck``, ``n = Σ n_c`` and
    ``α = 1 - (n - 1) Σ_{c≠k} o_ck / Σ_{c≠k} n_c n_k`` (Krippendorff 2011,
    "Computing Krippendorff's Alpha-Reliability"). NaN without variation.
    """
    return alpha_from_coincidences(coincidences(units, values)[0])


def coincidences(units, values) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-unit coincidence contributions: (O (C, C), unit codes, counts (U, C), 1/(m-1))."""
    unit_codes, _ = pd.factorize(np.asarray(units), sort=False)
    value_codes, _ = pd.factorize(np.asarray(values), sort=True)
    n_units = int(unit_codes.max()) + 1 if unit_codes.size else 0
    n_values = int(value_codes.max()) + 1 if value_codes.size else 0
    counts = np.bincount(
        unit_codes * max(n_values, 1) + value_codes, minlength=n_units * n_values
    ).reshape(n_units, n_values)
    m = counts.sum(axis=1)
    inv = np.where(m >= 2, 1.0 / np.maximum(m - 1, 1), 0.0)
    weighted = counts * inv[:, None]
    o = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    return o, unit_codes, counts, inv


def pair_coincidences(unit, answer) -> tuple[np.ndarray, np.ndarray]:
    """Per image pair, its nominal coincidences averaged over both orientations of the pair.

    Which image of a pair counts as first follows the image ids, i.e. import order: an
    arbitrary label. Coded one way only, the pooled frequencies of "first won" and
    "second won" (and with them the expected disagreement, hence α) change with it.
    Each unit's matrix ``O_u`` is therefore replaced by ``(O_u + S O_u S) / 2``, S
    swapping :data:`LOWER` and :data:`HIGHER` (ties and both-bad map to themselves):
    the observed disagreement is unchanged, the totals stay the number of pairable
    values, and α no longer depends on the labelling. ``unit``: pair index per answer
    (0..U-1, as from :func:`~arena.stats.image_pairs.orient`), ``answer``: 0..3.
    Returns (contributions (P, 4, 4), unit index (P,)) for the P units with ≥ 2 answers.
    """
    unit = np.asarray(unit, dtype=np.int64)
    answer = np.asarray(answer, dtype=np.int64)
    n_units = int(unit.max()) + 1 if unit.size else 0
    counts = np.bincount(unit * PAIR_VALUES + answer, minlength=n_units * PAIR_VALUES)
    counts = counts.reshape(n_units, PAIR_VALUES).astype(np.float64)
    m = counts.sum(axis=1)
    pairable = np.flatnonzero(m >= 2)
    c = counts[pairable]
    o = c[:, :, None] * c[:, None, :]
    diag = np.arange(PAIR_VALUES)
    o[:, diag, diag] -= c
    o /= (m[pairable] - 1.0)[:, None, None]
    return 0.5 * (o + o[:, SWAPPED][:, :, SWAPPED]), pairable


def krippendorff_alpha_pairs(unit, answer) -> float:
    """Nominal α of answers about image pairs, invariant to which image of a pair is first
    (:func:`pair_coincidences`)."""
    return alpha_from_coincidences(pair_coincidences(unit, answer)[0].sum(axis=0))


def alpha_from_coincidences(o: np.ndarray) -> float:
    """α from a coincidence matrix (summed per-unit contributions, or a bootstrap draw of them)."""
    o = np.asarray(o, dtype=np.float64)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    expected = n * n - np.sum(n_c**2)
    if n <= 1 or expected <= 0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (n - np.trace(o)) / expected)


def position_bias(outcome: np.ndarray, level: float = 0.95) -> pd.DataFrame:
    """Left-win rate among decisive votes, exact binomial test against 1/2 and its
    Clopper-Pearson interval (``scipy.stats.binomtest``)."""
    outcome = np.asarray(outcome)
    n = int((outcome <= RIGHT).sum())
    k = int((outcome == LEFT).sum())
    if n == 0:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    test = stats.binomtest(k, n, 0.5)
    ci = test.proportion_ci(confidence_level=level)
    return pd.DataFrame(
        [
            {
                "decisive_votes": n,
                "left_wins": k,
                "left_win_rate": k / n,
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
                "p_value": float(test.pvalue),
            }
        ],
        columns=POSITION_COLUMNS,
    )
