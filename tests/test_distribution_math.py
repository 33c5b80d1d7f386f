"""KID, FID, CMMD, diversity and the 2-D KS distance against independent computations.

References: direct double loops over pairs for the MMD estimators, scipy's ``sqrtm``
for the Fréchet distance, and a per-point loop of the Fasano-Franceschini statistic
(the ``ndtest`` package's algorithm, written out here).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg

from scoring.distribution import mmd
from scoring.distribution import stats as dist


def _poly(a, b, d):
    return (float(np.dot(a, b)) / d + 1.0) ** 3


def _mmd2_poly_loop(x, y):
    """Unbiased MMD² with the cubic kernel, one pair at a time."""
    m, n, d = len(x), len(y), x.shape[1]
    kxx = sum(_poly(x[i], x[j], d) for i in range(m) for j in range(m) if i != j)
    kyy = sum(_poly(y[i], y[j], d) for i in range(n) for j in range(n) if i != j)
    kxy = sum(_poly(x[i], y[j], d) for i in range(m) for j in range(n))
    return kxx / (m * (m - 1)) + kyy / (n * (n - 1)) - 2 * kxy / (m * n)


def _mmd2_rbf_loop(x, y, sigma=10.0):
    """google-research/cmmd's estimator: means over all pairs, diagonal included."""

    def k(a, b):
        return math.exp(-float(np.sum((a - b) ** 2)) / (2 * sigma**2))

    kxx = np.mean([k(a, b) for a in x for b in x])
    kyy = np.mean([k(a, b) for a in y for b in y])
    kxy = np.mean([k(a, b) for a in x for b in y])
    return kxx + kyy - 2 * kxy


def test_mmd2_poly_matches_double_loop():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(9, 6))
    y = rng.normal(0.4, 1.2, size=(11, 6))
    assert mmd.mmd2_poly_unbiased(x, y) == pytest.approx(_mmd2_poly_loop(x, y), rel=1e-5)


def test_kid_with_full_subsets_is_the_full_estimator():
    rng = np.random.default_rng(1)
    x = rng.random((10, 5))
    y = rng.random((10, 5)) + 0.3
    est = mmd.kid(x, y, np.random.default_rng(0), n_subsets=4, subset_size=10)
    assert est.value == pytest.approx(_mmd2_poly_loop(x, y), rel=1e-5, abs=1e-7)
    assert est.std == pytest.approx(0.0, abs=1e-5)
    assert est.details["subset_size"] == 10
    assert "fewer than 1000" in est.warning


def test_kid_subsets_match_an_independent_loop():
    """Same seeded draws (reference stream spawned first), each subset by a double loop."""
    data = np.random.default_rng(2)
    x = data.random((30, 4))
    y = data.random((25, 4)) * 1.3
    est = mmd.kid(x, y, np.random.default_rng(7), n_subsets=5, subset_size=8)
    rng_y, rng_x = np.random.default_rng(7).spawn(2)
    iy = [rng_y.choice(25, 8, replace=False) for _ in range(5)]
    ix = [rng_x.choice(30, 8, replace=False) for _ in range(5)]
    ref = np.array([_mmd2_poly_loop(x[a], y[b]) for a, b in zip(ix, iy, strict=True)])
    assert est.value == pytest.approx(ref.mean(), rel=1e-4, abs=1e-7)
    assert est.std == pytest.approx(ref.std(), rel=1e-3, abs=1e-7)


def test_kid_self_is_zero_and_shift_is_positive():
    rng = np.random.default_rng(3)
    x = rng.random((400, 32))
    twin = rng.random((400, 32))  # an independent draw from the same distribution
    same = mmd.kid(x, x, np.random.default_rng(0), n_subsets=50, subset_size=200)
    draw = mmd.kid(x, twin, np.random.default_rng(0), n_subsets=50, subset_size=200)
    shifted = mmd.kid(x, x + 0.2, np.random.default_rng(0), n_subsets=50, subset_size=200)
    assert shifted.value > 0 and shifted.value > 20 * draw.std
    # Against itself only the overlap of the two subsets (shared points) is left.
    assert abs(same.value) < 0.02 * shifted.value
    assert abs(draw.value) < 2 * draw.std


def test_kid_reference_cache_and_torch_path_agree():
    rng = np.random.default_rng(4)
    x, y = rng.random((60, 16)), rng.random((50, 16)) + 0.05
    plain = mmd.kid(x, y, np.random.default_rng(5), n_subsets=6, subset_size=20)
    cache: dict = {}
    first = mmd.kid(x, y, np.random.default_rng(5), 6, 20, reference_cache=cache)
    again = mmd.kid(x, y, np.random.default_rng(5), 6, 20, reference_cache=cache)
    on_torch = mmd.kid(x, y, np.random.default_rng(5), 6, 20, device="cpu")
    assert len(cache) == 1
    assert first.value == plain.value == again.value
    assert on_torch.value == pytest.approx(plain.value, rel=1e-5, abs=1e-8)


def test_kid_rejects_bad_input():
    with pytest.raises(ValueError, match="dimensions differ"):
        mmd.kid(np.ones((5, 3)), np.ones((5, 4)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="at least 2"):
        mmd.kid(np.ones((1, 3)), np.ones((5, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="NaN"):
        mmd.kid(np.full((3, 3), np.nan), np.ones((5, 3)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="threads must be at least 1"):
        mmd.kid(np.ones((5, 3)), np.ones((5, 3)), np.random.default_rng(0), threads=0)


def _kernel_sums_loop(a, b, d):
    """(Σ_{i≠j} k(a_i, a_j), Σ_{i≠j} k(b_i, b_j), Σ_{i,j} k(a_i, b_j)), one pair at a time."""
    m = len(a)
    kxx = sum(_poly(a[i], a[j], d) for i in range(m) for j in range(m) if i != j)
    kyy = sum(_poly(b[i], b[j], d) for i in range(m) for j in range(m) if i != j)
    kxy = sum(_poly(a[i], b[j], d) for i in range(m) for j in range(m))
    return kxx, kyy, kxy


# The default chunk (each Gram matrix in one piece here) and 300 values: 6 rows of 45
# per chunk, the last chunk partial, so the triangle bookkeeping runs on every chunk.
@pytest.mark.parametrize("chunk", [None, 300])
def test_kid_cpu_kernel_sums_match_double_loop(monkeypatch, chunk):
    """The threaded syrk/GEMM path, sum by sum, against float64 loops (n < 1000, d = 37)."""
    if chunk is not None:
        monkeypatch.setattr(mmd, "_CUBE_CHUNK", chunk)
    data = np.random.default_rng(11)
    x = data.random((70, 37))
    y = data.random((64, 37)) * 1.2 + 0.1
    m, k, d = 45, 3, 37
    rng_y, rng_x = np.random.default_rng(8).spawn(2)
    iy = [rng_y.choice(64, m, replace=False) for _ in range(k)]
    ix = [rng_x.choice(70, m, replace=False) for _ in range(k)]
    xs, ys = x.astype(np.float32), y.astype(np.float32)
    sums = mmd._kid_sums_cpu(xs, ys, ix, iy, None, threads=2)
    for s in range(k):
        ref = _kernel_sums_loop(x[ix[s]], y[iy[s]], d)
        assert sums[s] == pytest.approx(ref, rel=1e-6)
    cached = mmd._kid_sums_cpu(xs, ys, ix, iy, sums[:, 1], threads=1)
    assert np.array_equal(cached, sums)

    est = mmd.kid(x, y, np.random.default_rng(8), n_subsets=k, subset_size=m)
    ref_values = [_mmd2_poly_loop(x[a], y[b]) for a, b in zip(ix, iy, strict=True)]
    assert est.value == pytest.approx(np.mean(ref_values), rel=1e-6)
    assert est.std == pytest.approx(np.std(ref_values), rel=1e-5)


def test_kid_does_not_depend_on_threads_and_cache_is_keyed_by_subsets():
    data = np.random.default_rng(12)
    x, y = data.random((300, 50)), data.random((280, 50)) + 0.02
    runs = [mmd.kid(x, y, np.random.default_rng(3), 7, 120, threads=t) for t in (1, 2, 3)]
    assert runs[0].value == runs[1].value == runs[2].value
    assert runs[0].std == runs[1].std == runs[2].std
    cache: dict = {}
    mmd.kid(x, y, np.random.default_rng(3), 7, 120, reference_cache=cache)
    other_seed = mmd.kid(x, y, np.random.default_rng(4), 7, 120, reference_cache=cache)
    assert len(cache) == 2  # another seed draws other reference subsets: no stale hit
    assert other_seed.value == mmd.kid(x, y, np.random.default_rng(4), 7, 120).value


def _fid_scipy(x, y):
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n", [200, 12])  # full-rank and singular (n < d) covariances
def test_fid_matches_scipy_sqrtm(n):
    rng = np.random.default_rng(n)
    mix = rng.normal(size=(16, 16))
    x = rng.normal(size=(n, 16)) @ mix
    y = rng.normal(0.5, 1.0, size=(n + 5, 16)) @ mix.T
    est = dist.fid_from_features(x, y)
    assert est.value == pytest.approx(_fid_scipy(x, y), rel=1e-6, abs=1e-6)
    assert est.n == n and "fewer than 10,000" in est.warning


def test_fid_of_a_set_with_itself_is_zero_and_translation_shows():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(300, 8))
    assert dist.fid_from_features(x, x).value == pytest.approx(0.0, abs=1e-8)
    shift = np.zeros(8)
    shift[0] = 3.0
    assert dist.fid_from_features(x, x + shift).value == pytest.approx(9.0, rel=1e-9)


def test_cmmd_matches_reference_double_loop():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(14, 6))
    y = rng.normal(1.0, 2.0, size=(9, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    assert mmd.mmd2_rbf(x, y) == pytest.approx(_mmd2_rbf_loop(x, y), rel=1e-9, abs=1e-15)
    est = mmd.cmmd(x, y)
    assert est.value == pytest.approx(1000 * _mmd2_rbf_loop(x, y), rel=1e-9)
    # Unscaled features far apart: blocks of rows must give the same sums.
    a, b = rng.normal(size=(50, 3)) * 20, rng.normal(size=(40, 3)) * 20
    blocked = mmd._rbf_kernel_mean(a, b, 1 / 200, block=7)
    assert blocked == pytest.approx(mmd._rbf_kernel_mean(a, b, 1 / 200), rel=1e-12)


def test_diversity_matches_loop_and_orders_sets():
    rng = np.random.default_rng(11)
    feats = rng.normal(size=(10, 5))
    groups = ["a", "a", "a", "b", "b", "b", "b", "c", "d", "d"]
    ref = []
    for g in ("a", "b", "d"):
        rows = feats[[i for i, h in enumerate(groups) if h == g]]
        pair = [
            1 - rows[i] @ rows[j] / (np.linalg.norm(rows[i]) * np.linalg.norm(rows[j]))
            for i in range(len(rows))
            for j in range(i + 1, len(rows))
        ]
        ref.append(np.mean(pair))
    est = dist.diversity(feats, groups)
    assert est.value == pytest.approx(np.mean(ref), rel=1e-12)
    assert est.n == 3 and est.std == pytest.approx(np.std(ref), rel=1e-12)
    # Near-copies of one image per prompt are less diverse than independent draws.
    base = rng.normal(size=(4, 5))
    copies = np.repeat(base, 3, axis=0) + rng.normal(scale=0.01, size=(12, 5))
    labels = np.repeat(np.arange(4), 3)
    spread = rng.normal(size=(12, 5))
    assert dist.diversity(copies, labels).value < dist.diversity(spread, labels).value
    assert math.isnan(dist.diversity(feats[:2], ["x", "y"]).value)


def _ks2d_loop(a, b):
    """The Fasano-Franceschini statistic as ndtest computes it, point by point."""

    def quad(x0, y0, pts):
        n = len(pts)
        ix1, ix2 = pts[:, 0] <= x0, pts[:, 1] <= y0
        q1 = np.sum(ix1 & ix2) / n
        q2 = np.sum(ix1 & ~ix2) / n
        q3 = np.sum(~ix1 & ix2) / n
        return np.array([q1, q2, q3, 1 - q1 - q2 - q3])

    def maxdist(p1, p2):
        diff = np.array([quad(x0, y0, p1) - quad(x0, y0, p2) for x0, y0 in p1])
        diff[:, 0] -= 1 / len(p1)
        return max(-diff.min(), diff.max() + 1 / len(p1))

    return (maxdist(a, b) + maxdist(b, a)) / 2


def test_ks2d_matches_point_loop_and_detects_shift():
    rng = np.random.default_rng(12)
    a = rng.normal(size=(60, 2))
    b = rng.normal(size=(45, 2)) + np.array([1.0, -0.5])
    d, p = dist.ks2d(a, b)
    assert d == pytest.approx(_ks2d_loop(a, b), abs=1e-12)
    d_same, p_same = dist.ks2d(a, rng.normal(size=(50, 2)))
    assert d > d_same and p < 0.01 < p_same
    # Ties (integer-valued points) follow the same <= convention.
    c = rng.integers(0, 4, size=(30, 2)).astype(float)
    e = rng.integers(0, 5, size=(20, 2)).astype(float)
    assert dist.ks2d(c, e)[0] == pytest.approx(_ks2d_loop(c, e), abs=1e-12)
