"""Kernel two-sample statistics of two feature sets: KID and CMMD (numpy, torch optional).

* **KID** (Bińkowski et al. 2018, the torch-fidelity/clean-fid definition): the
  unbiased estimator of MMD² with the cubic polynomial kernel
  ``k(x, y) = (x·y / d + 1)^3``, averaged over ``n_subsets`` random subsets of
  ``min(n_x, n_y, subset_size)`` rows drawn without replacement from each set;
  reported as mean ± standard deviation (ddof 0) over the subsets.
* **CMMD** (Jayasumana et al. 2024, google-research/cmmd): MMD² with a Gaussian RBF
  kernel of bandwidth σ = 10 on CLIP ViT-L/14@336 embeddings, the reference's
  estimator (the biased V-statistic: means over all pairs, diagonal included),
  scaled by 1000.
"""

from __future__ import annotations

import hashlib

import numpy as np

from scoring.distribution.stats import Estimate, as_features, check_pair

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_MIN_SUBSET = 1_000  # KID's subset size in the reference setup
CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0


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
    x = as_features(x, "x")
    y = as_features(y, "y")
    check_pair(x, y)
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
    x = as_features(x, "generated features", np.float32)
    y = as_features(y, "reference features", np.float32)
    check_pair(x, y)
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
    x = as_features(x, "x")
    y = as_features(y, "y")
    check_pair(x, y)
    gamma = 1.0 / (2.0 * sigma**2)
    return (
        _rbf_kernel_mean(x, x, gamma)
        + _rbf_kernel_mean(y, y, gamma)
        - 2.0 * _rbf_kernel_mean(x, y, gamma)
    )


def cmmd(x: np.ndarray, y: np.ndarray) -> Estimate:
    """CMMD = 1000 · MMD²_RBF(σ=10) between CLIP ViT-L/14@336 embeddings (L2-normalised)."""
    x = as_features(x, "generated embeddings")
    y = as_features(y, "reference embeddings")
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
