"""Model-level distribution metrics as pure functions of feature arrays (numpy only).

Every function takes ``(n, d)`` feature matrices (one row per image) and returns
plain floats; seeded ``numpy.random.Generator`` objects are passed in where there
is randomness. Feature extraction and caching live in ``scoring/distribution/features.py``.

* **KID** (Bińkowski et al. 2018, the torch-fidelity/clean-fid definition): the
  unbiased estimator of MMD² with the cubic polynomial kernel
  ``k(x, y) = (x·y / d + 1)^3``, averaged over ``n_subsets`` random subsets of
  ``min(n_x, n_y, subset_size)`` rows drawn without replacement from each set;
  reported as mean ± standard deviation (ddof 0) over the subsets.
* **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to
  the two sets (mean and unbiased covariance). The matrix square root term
  ``tr sqrt(Σ1 Σ2)`` is computed as the sum of square roots of the eigenvalues of
  the symmetric PSD matrix ``Σ1^½ Σ2 Σ1^½`` (two ``eigh`` calls): stable for
  singular covariances, with no complex round-off to discard.
* **CMMD** (Jayasumana et al. 2024, google-research/cmmd): MMD² with a Gaussian RBF
  kernel of bandwidth σ = 10 on CLIP ViT-L/14@336 embeddings, the reference's
  estimator (the biased V-statistic: means over all pairs, diagonal included),
  scaled by 1000.
* **FD-DINO** (Stein et al. 2023): ``frechet_distance`` on DINOv2 ViT-L/14 features.
* **Diversity**: per prompt, the mean pairwise cosine distance ``1 - cos`` between
  one model's images of that prompt (different seeds), averaged over prompts.
* **2-D Kolmogorov–Smirnov distance** (Fasano & Franceschini 1987, as in the
  ``ndtest`` package the Anomaly Score reference code uses): the model-level
  Anomaly Score is this distance between the (complexity, vulnerability) points of
  real and generated images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
# Sample sizes below which an estimate is known to be biased / unreliable.
FID_MIN_N = 10_000  # FID is biased upwards for n < ~10k (Chong & Forsyth 2020; Bińkowski 2018)
KID_MIN_SUBSET = 1_000  # KID's subset size in the reference setup


@dataclass(frozen=True)
class Estimate:
    """A model-level number with its spread, sample size and sample-size warning."""

    value: float
    std: float | None = None
    n: int = 0
    warning: str = ""
    details: dict = field(default_factory=dict)


def _as_features(x: np.ndarray, name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, d) feature matrix; got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: features contain NaN or infinite values.")
    return arr


def _check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}; both sets must come "
            "from the same extractor."
        )


# -- KID -------------------------------------------------------------------------------


def _poly_kernel_sum(a: np.ndarray, b: np.ndarray | None, exclude_diagonal: bool) -> float:
    """Sum of ``(a_i·b_j + 1)^3`` over all pairs (``b=None``: ``a`` with itself).

    ``a`` and ``b`` are pre-scaled by ``1/sqrt(d)``; float64 throughout here (used by
    ``mmd2_poly_unbiased``; ``kid`` has its own float32 path).
    """
    gram = a @ (a if b is None else b).T
    if b is None and exclude_diagonal:
        diag = np.einsum("ij,ij->i", a, a, dtype=np.float64)
    gram += 1.0
    cube = gram * gram
    cube *= gram
    total = float(cube.sum(dtype=np.float64))
    if b is None and exclude_diagonal:
        total -= float(np.sum((diag + 1.0) ** 3))
    return total


def mmd2_poly_unbiased(x: np.ndarray, y: np.ndarray, d: int | None = None) -> float:
    """Unbiased MMD² with ``k(x, y) = (x·y/d + 1)^3`` between two (m, d) arrays (float64 math).

    ``d`` defaults to the feature dimension. Used by ``kid``; also the function the
    tests compare against a direct double loop.
    """
    x = _as_features(x, "x")
    y = _as_features(y, "y")
    _check_pair(x, y)
    d = x.shape[1] if d is None else d
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError(f"the unbiased MMD needs at least 2 rows per set; got {m} and {n}.")
    s = 1.0 / np.sqrt(d)
    xs, ys = x * s, y * s
    kxx = _poly_kernel_sum(xs, None, exclude_diagonal=True) / (m * (m - 1))
    kyy = _poly_kernel_sum(ys, None, exclude_diagonal=True) / (n * (n - 1))
    kxy = _poly_kernel_sum(xs, ys, exclude_diagonal=False) / (m * n)
    return kxx + kyy - 2.0 * kxy


def _torch_poly_kernel_sum(a, b, exclude_diagonal: bool) -> float:
    """``_poly_kernel_sum`` on torch tensors (any device): float32 Gram, float64 sums."""
    import torch

    gram = a @ (a if b is None else b).T
    gram += 1.0
    total = float(gram.pow(3).sum(dtype=torch.float64))
    if b is None and exclude_diagonal:
        diag = (a.double() * a.double()).sum(dim=1)
        total -= float(((diag + 1.0) ** 3).sum())
    return total


# Rows of a Gram matrix cubed and summed per step: ~64k float32 values (256 KiB), so the
# four elementwise passes run in the core's L2 cache instead of streaming the matrix.
_CUBE_CHUNK = 1 << 16


def _cube_sum(gram: np.ndarray, inv_d: np.float32, work: np.ndarray, symmetric: bool) -> float:
    """float64 sum of ``(g/d + 1)^3`` over the float32 ``gram``, in cache-sized row chunks.

    ``inv_d`` is ``1/d`` in float32: folding it in here (exact when d is a power of two,
    as 2048 is) spares scaling copies of the whole feature matrices.

    ``symmetric=True``: ``gram`` is a square symmetric Gram matrix ``a·aᵀ`` and only
    its off-diagonal pairs are summed, reading the lower triangle: per chunk of rows
    ``[r0, r1)`` the columns ``[0, r1)`` (the rectangle left of the chunk's diagonal
    block, counted twice, plus the block, whose two triangles are both there), minus
    the diagonal, cubed in float32 exactly as in the chunks. ``work`` is float32
    scratch of at least ``2 * max(_CUBE_CHUNK, gram.shape[1])`` values.
    """
    n_rows, n_cols = gram.shape
    rows = max(1, min(n_rows, _CUBE_CHUNK // n_cols))
    half = len(work) // 2
    total = blocks = 0.0
    for r0 in range(0, n_rows, rows):
        r1 = min(r0 + rows, n_rows)
        cols = r1 if symmetric else n_cols
        size = (r1 - r0) * cols
        t = work[:size].reshape(r1 - r0, cols)
        u = work[half : half + size].reshape(r1 - r0, cols)
        np.multiply(gram[r0:r1, :cols], inv_d, out=t)
        t += np.float32(1.0)
        np.multiply(t, t, out=u)
        u *= t
        total += float(np.add.reduce(u.reshape(-1), dtype=np.float64))
        if symmetric:
            blocks += float(np.add.reduce(u[:, r0:r1], axis=None, dtype=np.float64))
    if not symmetric:
        return total
    diag = np.diagonal(gram) * inv_d + np.float32(1.0)
    diag_sum = float(np.add.reduce(diag * diag * diag, dtype=np.float64))
    return 2.0 * total - blocks - diag_sum


def _kid_sums_worker(x, y, idx_x, idx_y, sums, need_yy, next_subset) -> None:
    """Kernel sums (xx, yy, xy) of the subsets that ``next_subset()`` hands this thread.

    ``a @ a.T`` runs as a BLAS ``syrk`` (half the multiply-adds of a GEMM; numpy
    mirrors the triangle), ``a @ b.T`` as a GEMM; both release the GIL. The buffers
    belong to this thread and are reused across its subsets.
    """
    m, d = len(idx_x[0]), x.shape[1]
    inv_d = np.float32(1.0 / d)
    a = np.empty((m, d), dtype=np.float32)
    b = np.empty((m, d), dtype=np.float32)
    gram = np.empty((m, m), dtype=np.float32)
    work = np.empty(2 * max(_CUBE_CHUNK, m), dtype=np.float32)
    while (s := next_subset()) is not None:
        np.take(x, idx_x[s], axis=0, out=a, mode="clip")
        np.take(y, idx_y[s], axis=0, out=b, mode="clip")
        sums[s, 0] = _cube_sum(np.matmul(a, a.T, out=gram), inv_d, work, symmetric=True)
        if need_yy:
            sums[s, 1] = _cube_sum(np.matmul(b, b.T, out=gram), inv_d, work, symmetric=True)
        sums[s, 2] = _cube_sum(np.matmul(a, b.T, out=gram), inv_d, work, symmetric=False)


def _blas_threads() -> int:
    """Threads the BLAS may use right now (``threadpool_limits``, ``OPENBLAS_NUM_THREADS``)."""
    from threadpoolctl import threadpool_info

    counts = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return max(1, min(counts, default=1))


def _kid_sums_cpu(x, y, idx_x, idx_y, kyy, threads: int) -> np.ndarray:
    """Per-subset kernel sums ``(n_subsets, 3)``: xx, yy, xy (off-diagonal for xx, yy).

    ``threads`` workers each take whole subsets with a single-threaded BLAS (inside
    ``threadpool_limits(1)``): the same number of threads as a threaded BLAS would use,
    with no synchronisation inside each product, and the elementwise cube-and-sum runs
    in parallel too. Each subset's sums do not depend on which thread computed them.
    """
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    n_subsets = len(idx_x)
    sums = np.zeros((n_subsets, 3), dtype=np.float64)
    if kyy is not None:
        sums[:, 1] = kyy
    order = iter(range(n_subsets))
    lock = threading.Lock()

    def next_subset():
        with lock:
            return next(order, None)

    args = (x, y, idx_x, idx_y, sums, kyy is None, next_subset)
    threads = max(1, min(threads, n_subsets))
    with threadpool_limits(1, user_api="blas"):
        if threads == 1:
            _kid_sums_worker(*args)
        else:
            with ThreadPoolExecutor(threads) as pool:
                for job in [pool.submit(_kid_sums_worker, *args) for _ in range(threads)]:
                    job.result()
    return sums


def _kid_sums_torch(x, y, idx_x, idx_y, kyy, device: str) -> np.ndarray:
    """``_kid_sums_cpu`` with torch on ``device`` (e.g. "cuda"): float32 Gram, float64 sums.

    The features are scaled by ``1/sqrt(d)`` on the device before the products.
    """
    import torch

    scale = float(1.0 / np.sqrt(x.shape[1]))
    xs = torch.from_numpy(x).to(device) * scale
    ys = torch.from_numpy(y).to(device) * scale
    sums = np.zeros((len(idx_x), 3), dtype=np.float64)
    for s, (ix, iy) in enumerate(zip(idx_x, idx_y, strict=True)):
        a = xs[torch.from_numpy(ix).to(device)]
        b = ys[torch.from_numpy(iy).to(device)]
        sums[s, 0] = _torch_poly_kernel_sum(a, None, True)
        sums[s, 1] = _torch_poly_kernel_sum(b, None, True) if kyy is None else kyy[s]
        sums[s, 2] = _torch_poly_kernel_sum(a, b, False)
    return sums


def kid(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    device: str | None = None,
    reference_cache: dict | None = None,
    threads: int | None = None,
) -> Estimate:
    """KID between generated features ``x`` and reference features ``y``: mean ± std over subsets.

    Each subset draws ``m = min(n_x, n_y, subset_size)`` rows without replacement from
    each set; the reference rows come from their own child stream of ``rng`` (spawned
    first), so for one seed every model meets the same reference subsets. Pass a dict
    as ``reference_cache`` (one per reference feature matrix) to reuse the reference's
    per-subset kernel sums across models: a quarter of the work.

    The Gram matrices are float32 (CPU: of the features, times ``1/d`` in the cubing
    step; torch: of the features pre-scaled by ``1/sqrt(d)``); the cubic kernel's sums
    accumulate in float64. On 2048-d uniform features like the benchmark's (KID ~1.7e-4,
    1e-4 of the kernel mean) KID is within ~1e-7 relative of a float64 computation
    (pre-scaling the features instead, as torch does, gives ~1e-6).

    ``device`` (e.g. "cuda") runs the products with torch on that device. ``None`` uses
    numpy's BLAS on the CPU (``a @ a.T`` as ``syrk``, ``a @ b.T`` as GEMM), split by
    subsets over ``threads`` threads (default: as many as the BLAS may use now, so
    ``threadpool_limits`` / ``OPENBLAS_NUM_THREADS`` bound it; the BLAS itself runs
    single-threaded meanwhile). The result does not depend on ``threads``.
    """
    x = _as_features(x, "generated features", np.float32)
    y = _as_features(y, "reference features", np.float32)
    _check_pair(x, y)
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be at least 1; got {n_subsets}.")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1 (or None for the BLAS's); got {threads}.")
    m = min(len(x), len(y), subset_size)
    if m < 2:
        raise ValueError(
            f"KID needs at least 2 images in each set; got {len(x)} generated and "
            f"{len(y)} reference."
        )
    rng_y, rng_x = rng.spawn(2)
    idx_y = [rng_y.choice(len(y), m, replace=False) for _ in range(n_subsets)]
    idx_x = [rng_x.choice(len(x), m, replace=False) for _ in range(n_subsets)]
    # The subsets' indices are part of the key: another seed or size never hits.
    key = (y.shape, hashlib.sha1(np.stack(idx_y).tobytes()).hexdigest())
    kyy = None if reference_cache is None else reference_cache.get(key)
    if device is not None:
        sums = _kid_sums_torch(x, y, idx_x, idx_y, kyy, device)
    else:
        n_threads = _blas_threads() if threads is None else threads
        sums = _kid_sums_cpu(x, y, idx_x, idx_y, kyy, n_threads)
    if reference_cache is not None:
        reference_cache[key] = sums[:, 1].copy()
    values = (sums[:, 0] + sums[:, 1]) / (m * (m - 1)) - 2.0 * sums[:, 2] / (m * m)
    warning = ""
    if m < KID_MIN_SUBSET:
        warning = (
            f"KID subsets of {m} images (fewer than {KID_MIN_SUBSET}): the estimate is noisier "
            f"than the reference setup and not comparable with published values"
        )
    return Estimate(
        value=float(values.mean()),
        std=float(values.std()),
        n=min(len(x), len(y)),
        warning=warning,
        details={
            "subsets": n_subsets,
            "subset_size": m,
            "n_generated": len(x),
            "n_reference": len(y),
        },
    )


# -- FID / FD-DINO ---------------------------------------------------------------------


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof 1) of the rows of ``x``, float64."""
    x = _as_features(x, "features")
    if len(x) < 2:
        raise ValueError(f"a covariance needs at least 2 images; got {len(x)}.")
    mu = x.mean(axis=0)
    centred = x - mu
    sigma = centred.T @ centred / (len(x) - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((sigma + sigma.T) / 2.0)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr sqrtm(Σ1 Σ2)`` for symmetric PSD matrices via the eigenvalues of ``Σ1^½ Σ2 Σ1^½``.

    ``Σ1 Σ2`` is similar to the symmetric PSD ``Σ1^½ Σ2 Σ1^½``, so its eigenvalues are
    real and non-negative and the trace of its principal square root is the sum of
    their square roots. Tiny negative eigenvalues from round-off are clipped to zero.
    """
    root = _psd_sqrt(sigma1)
    inner = root @ sigma2 @ root
    w = np.linalg.eigvalsh((inner + inner.T) / 2.0)
    return float(np.sqrt(np.clip(w, 0.0, None)).sum())


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray
) -> float:
    """``||μ1 - μ2||² + tr(Σ1) + tr(Σ2) - 2 tr sqrt(Σ1 Σ2)`` (never below 0)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise ValueError(f"mismatched statistics: {mu1.shape}/{sigma1.shape} vs {mu2.shape}")
    diff = mu1 - mu2
    value = (
        float(diff @ diff)
        + float(np.trace(sigma1))
        + float(np.trace(sigma2))
        - 2.0 * trace_sqrt_product(sigma1, sigma2)
    )
    return max(value, 0.0)


def fid_from_features(x: np.ndarray, y: np.ndarray, name: str = "FID") -> Estimate:
    """Fréchet distance between generated ``x`` and reference ``y`` with its sample-size warning."""
    x = _as_features(x, "generated features")
    y = _as_features(y, "reference features")
    _check_pair(x, y)
    value = frechet_distance(*gaussian_stats(x), *gaussian_stats(y))
    n = min(len(x), len(y))
    warning = ""
    if n < FID_MIN_N:
        warning = (
            f"{name} on {n} images (fewer than {FID_MIN_N:,}): the Fréchet distance is biased "
            "upwards at this size and depends on n; compare models only at equal n"
        )
    return Estimate(
        value=value,
        n=n,
        warning=warning,
        details={"n_generated": len(x), "n_reference": len(y), "dim": x.shape[1]},
    )


# -- CMMD ------------------------------------------------------------------------------


def _rbf_kernel_mean(a: np.ndarray, b: np.ndarray, gamma: float, block: int = 2048) -> float:
    """Mean of ``exp(-gamma ||a_i - b_j||²)`` over all pairs, in row blocks (float64)."""
    an = np.einsum("ij,ij->i", a, a)
    bn = np.einsum("ij,ij->i", b, b)
    total = 0.0
    for start in range(0, len(a), block):
        rows = a[start : start + block]
        sq = an[start : start + block, None] + bn[None, :] - 2.0 * (rows @ b.T)
        np.maximum(sq, 0.0, out=sq)
        sq *= -gamma
        np.exp(sq, out=sq)
        total += float(sq.sum())
    return total / (len(a) * len(b))


def mmd2_rbf(x: np.ndarray, y: np.ndarray, sigma: float = CMMD_SIGMA) -> float:
    """The CMMD reference's MMD² with ``exp(-||x-y||²/(2σ²))``: all pairs, diagonal included."""
    x = _as_features(x, "x")
    y = _as_features(y, "y")
    _check_pair(x, y)
    gamma = 1.0 / (2.0 * sigma**2)
    return (
        _rbf_kernel_mean(x, x, gamma)
        + _rbf_kernel_mean(y, y, gamma)
        - 2.0 * _rbf_kernel_mean(x, y, gamma)
    )


def cmmd(x: np.ndarray, y: np.ndarray) -> Estimate:
    """CMMD = 1000 · MMD²_RBF(σ=10) between CLIP ViT-L/14@336 embeddings (L2-normalised)."""
    x = _as_features(x, "generated embeddings")
    y = _as_features(y, "reference embeddings")
    value = CMMD_SCALE * mmd2_rbf(x, y)
    n = min(len(x), len(y))
    warning = ""
    if n < 2:
        warning = "CMMD on a single image per set is meaningless"
    return Estimate(
        value=value,
        n=n,
        warning=warning,
        details={"n_generated": len(x), "n_reference": len(y), "sigma": CMMD_SIGMA},
    )


# -- diversity -------------------------------------------------------------------------


def mean_pairwise_cosine_distance(x: np.ndarray) -> float:
    """Mean of ``1 - cos(x_i, x_j)`` over the pairs i < j of the rows of ``x`` (≥ 2 rows)."""
    x = _as_features(x, "features")
    if len(x) < 2:
        raise ValueError(f"pairwise distances need at least 2 images; got {len(x)}.")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    cos = unit @ unit.T
    iu = np.triu_indices(len(x), k=1)
    return float(np.mean(1.0 - cos[iu]))


def diversity(features: np.ndarray, groups: Sequence) -> Estimate:
    """Mean over groups (prompts) of the mean pairwise cosine distance within the group.

    ``groups[i]`` is the prompt of row ``i``; groups with fewer than two images are
    skipped (no pair). ``std`` is the standard deviation over prompts, ``n`` the
    number of prompts used.
    """
    features = _as_features(features, "features")
    groups = np.asarray(groups)
    if len(groups) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(groups)} group labels.")
    per_group = []
    for g in np.unique(groups):
        rows = features[groups == g]
        if len(rows) >= 2:
            per_group.append(mean_pairwise_cosine_distance(rows))
    if not per_group:
        return Estimate(
            value=float("nan"),
            n=0,
            warning="no prompt has two or more images of this model (different seeds)",
        )
    values = np.asarray(per_group)
    warning = ""
    if len(values) < 10:
        warning = f"diversity over only {len(values)} prompt(s) with two or more seeds"
    return Estimate(
        value=float(values.mean()),
        std=float(values.std()),
        n=len(values),
        warning=warning,
        details={"prompts": len(values), "images": len(features)},
    )


# -- 2-D Kolmogorov-Smirnov ------------------------------------------------------------


def _quadrant_fractions(points: np.ndarray, sample: np.ndarray, block: int = 1024) -> np.ndarray:
    """Per point: fractions of ``sample`` in its quadrants (≤x≤y, ≤x>y, >x≤y, >x>y)."""
    n = len(sample)
    sx, sy = np.sort(sample[:, 0]), np.sort(sample[:, 1])
    le_x = np.searchsorted(sx, points[:, 0], side="right")
    le_y = np.searchsorted(sy, points[:, 1], side="right")
    both = np.empty(len(points), dtype=np.int64)
    for start in range(0, len(points), block):
        p = points[start : start + block]
        mask = (sample[None, :, 0] <= p[:, None, 0]) & (sample[None, :, 1] <= p[:, None, 1])
        both[start : start + block] = mask.sum(axis=1)
    a = both / n
    b = (le_x - both) / n
    c = (le_y - both) / n
    return np.stack([a, b, c, 1.0 - a - b - c], axis=1)


def _max_quadrant_distance(p1: np.ndarray, p2: np.ndarray) -> float:
    diff = _quadrant_fractions(p1, p1) - _quadrant_fractions(p1, p2)
    # The point itself sits in its own first quadrant: move it to whichever side
    # maximises the difference (Press et al., Numerical Recipes 14.8; ndtest).
    diff[:, 0] -= 1.0 / len(p1)
    return max(-diff.min(), diff.max() + 1.0 / len(p1))


def ks2d(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample 2-D KS statistic D and its approximate p-value (Fasano & Franceschini).

    ``a`` and ``b`` are (n, 2) arrays of points. D averages the largest quadrant-fraction
    difference seen from the points of each sample; the p-value is Press et al.'s
    approximation (Kolmogorov distribution with a correlation correction), accurate for
    n ≳ 20 and p ≲ 0.2.
    """
    from scipy.stats import kstwobign

    a = _as_features(a, "first sample")
    b = _as_features(b, "second sample")
    if a.shape[1] != 2 or b.shape[1] != 2:
        raise ValueError(f"ks2d needs (n, 2) point sets; got {a.shape} and {b.shape}.")
    if len(a) < 3 or len(b) < 3:
        raise ValueError(f"ks2d needs at least 3 points per sample; got {len(a)} and {len(b)}.")
    d = (_max_quadrant_distance(a, b) + _max_quadrant_distance(b, a)) / 2.0
    n1, n2 = len(a), len(b)
    sqen = np.sqrt(n1 * n2 / (n1 + n2))

    def corr(p: np.ndarray) -> float:
        if np.std(p[:, 0]) == 0 or np.std(p[:, 1]) == 0:
            return 0.0
        return float(np.corrcoef(p[:, 0], p[:, 1])[0, 1])

    r = np.sqrt(1.0 - 0.5 * (corr(a) ** 2 + corr(b) ** 2))
    p_value = float(kstwobign.sf(d * sqen / (1.0 + r * (0.25 - 0.75 / sqen))))
    return float(d), p_value
