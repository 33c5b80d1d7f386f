"""Intervals for agreement statistics: Wilson score intervals and the prompt (cluster) bootstrap.

Every agreement statistic is a ratio of per-prompt sums, so one ``(rounds × prompts)``
weight matrix times one ``(prompts × statistics)`` sum matrix gives every statistic of
every round at once (:func:`cluster_bootstrap`, :class:`SumTable`).
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import stats


def z_value(level: float) -> float:
    """The two-sided normal quantile of a coverage ``level``; rejects levels outside (0, 1)."""
    if not 0 < level < 1:
        raise ValueError(f"level={level}: expected a coverage in (0, 1), e.g. 0.95.")
    return float(stats.norm.ppf(0.5 + level / 2))


def wilson_interval(successes, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a proportion ``successes / n`` (arrays broadcast).

    ``successes`` may be fractional (half credits). NaN where ``n == 0``.
    """
    x = np.asarray(successes, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z = z_value(level)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = x / n
        denom = 1.0 + z * z / n
        centre = (p + z * z / (2 * n)) / denom
        half = z / denom * np.sqrt(np.maximum(p * (1 - p), 0.0) / n + z * z / (4 * n * n))
    lo = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
    hi = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return lo, hi


def nan_percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per column, ignoring NaN rounds (e.g. a slice drawn empty)."""
    tail = 50.0 * (1.0 - level)
    samples = np.asarray(samples, dtype=np.float64)
    if samples.shape[0] == 0:
        nan = np.full(samples.shape[1:], np.nan)
        return nan, nan
    finite = np.isfinite(samples)
    out = np.full((2, *samples.shape[1:]), np.nan)
    ok = finite.any(axis=0)
    if ok.any():
        with np.errstate(invalid="ignore"):
            out[:, ok] = np.nanpercentile(samples[:, ok], [tail, 100.0 - tail], axis=0)
    return out[0], out[1]


def cluster_weights(rng: np.random.Generator, n_clusters: int, rounds: int) -> np.ndarray:
    """(rounds, n_clusters) multiplicities of drawing n_clusters clusters with replacement."""
    idx = rng.integers(0, n_clusters, size=(rounds, n_clusters), dtype=np.int32)
    out = np.empty((rounds, n_clusters), dtype=np.float32)
    for r in range(rounds):  # one small bincount per row stays in cache (a flat one does not)
        out[r] = np.bincount(idx[r], minlength=n_clusters)
    return out


def cluster_bootstrap(
    sums: np.ndarray, rng: np.random.Generator, rounds: int = 1000, chunk: int | None = None
) -> np.ndarray:
    """Resampled column totals of a per-cluster sum matrix: (rounds, K).

    ``sums[p, k]`` is statistic k summed over the items of cluster p. A round
    draws the clusters with replacement and adds up their sums: ``w @ sums``
    with ``w`` the draw multiplicities. Done in chunks of rounds, as float32
    matrix products (the sums are counts and half counts, exact in float32 up
    to 2^24, or real-valued sums whose relative rounding of ~1e-7 is far below
    bootstrap noise).
    """
    sums = np.asarray(sums)
    n_clusters, k = sums.shape
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: need at least 1 bootstrap round.")
    out = np.zeros((rounds, k))
    if n_clusters == 0 or k == 0:
        return out
    s32 = np.ascontiguousarray(sums, dtype=np.float32)
    if chunk is None:  # ~16 MB of weights per chunk
        chunk = int(max(1, min(rounds, 4_000_000 // n_clusters)))
    for start in range(0, rounds, chunk):
        size = min(chunk, rounds - start)
        out[start : start + size] = cluster_weights(rng, n_clusters, size) @ s32
    return out


class SumTable:
    """Collects per-cluster sums of many statistics, to be resampled together.

    Columns that are all zero, or identical to an earlier column (the same
    counts for several metrics), are resampled once: the matrix product is
    the cost of the whole bootstrap.
    """

    def __init__(self, n_clusters: int):
        self.n_clusters = n_clusters
        self.columns: list[np.ndarray] = []  # distinct non-zero columns (float32)
        self.where: list[int] = []  # logical column -> distinct column, -1 for zeros
        self.totals: list[float] = []
        self._seen: dict[bytes, int] = {}  # digest of a column -> its distinct column

    def add(self, cluster: np.ndarray, weights: np.ndarray | None = None, groups=None, n_groups=1):
        """Sum ``weights`` (default 1) per cluster, or per (cluster, group): a slice of columns."""
        key = cluster if groups is None else cluster * n_groups + groups
        size = self.n_clusters * n_groups
        m = np.bincount(key, weights=weights, minlength=size).reshape(self.n_clusters, n_groups)
        start = len(self.where)
        for g in range(n_groups):
            column = np.ascontiguousarray(m[:, g], dtype=np.float32)
            self.totals.append(float(m[:, g].sum()))
            if not column.any():
                self.where.append(-1)
                continue
            digest = hashlib.blake2b(column, digest_size=16).digest()
            known = self._seen.get(digest)
            if known is None or not np.array_equal(self.columns[known], column):
                known = len(self.columns)
                self._seen.setdefault(digest, known)
                self.columns.append(column)
            self.where.append(known)
        return slice(start, start + n_groups)

    def resample(self, rng: np.random.Generator, rounds: int) -> tuple[np.ndarray, np.ndarray]:
        """(totals (K,), resampled totals (rounds, K))."""
        totals = np.asarray(self.totals, dtype=np.float64)
        distinct = (
            cluster_bootstrap(np.stack(self.columns, axis=1), rng, rounds)
            if self.columns
            else np.zeros((rounds, 0))
        )
        padded = np.concatenate([distinct, np.zeros((rounds, 1))], axis=1)
        return totals, padded[:, np.asarray(self.where, dtype=np.int64)]


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den is not positive (an empty slice or bootstrap draw)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
