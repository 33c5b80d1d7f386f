"""Model-level distribution metrics as pure functions of feature arrays (numpy only).

Every function takes ``(n, d)`` feature matrices (one row per image) and returns
plain floats; seeded ``numpy.random.Generator`` objects are passed in where there
is randomness. Feature extraction and caching live in ``scoring/distribution/features.py``; the two
kernel two-sample statistics (KID and CMMD) in ``scoring/distribution/mmd.py``.

* **FID** (Heusel et al. 2017): the Fréchet distance between Gaussians fitted to
  the two sets (mean and unbiased covariance). The matrix square root term
  ``tr sqrt(Σ1 Σ2)`` is computed as the sum of square roots of the eigenvalues of
  the symmetric PSD matrix ``Σ1^½ Σ2 Σ1^½`` (two ``eigh`` calls): stable for
  singular covariances, with no complex round-off to discard.
* **FD-DINO** (Stein et al. 2023): ``frechet_distance`` on DINOv2 ViT-L/14 features.
* **Diversity**: per prompt, the mean pairwise cosine distance ``1 - cos`` between
  one model's images of that prompt (different seeds), averaged over prompts.
* **Inception Score** (Salimans et al. 2016), as torch-fidelity computes it: 10
  splits of the shuffled logits, ``exp E[KL(p(y|x) || p(y))]`` per split, mean ± std.
* **2-D Kolmogorov–Smirnov distance** (Fasano & Franceschini 1987, as in the
  ``ndtest`` package the Anomaly Score reference code uses): the model-level
  Anomaly Score is this distance between the (complexity, vulnerability) points of
  real and generated images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

# Sample sizes below which an estimate is known to be biased / unreliable.
FID_MIN_N = 10_000  # FID is biased upwards for n < ~10k (Chong & Forsyth 2020; Bińkowski 2018)
# The Inception Score as Salimans et al. (2016) report it: 50,000 images in 10 splits;
# torch-fidelity shuffles the rows with this seed first.
IS_MIN_N = 50_000
IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020


@dataclass(frozen=True)
class Estimate:
    """A model-level number with its spread, sample size and sample-size warning."""

    value: float
    std: float | None = None
    n: int = 0
    warning: str = ""
    details: dict = field(default_factory=dict)


def as_features(x: np.ndarray, name: str, dtype=np.float64) -> np.ndarray:
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name}: expected a non-empty (n, d) feature matrix; got {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: features contain NaN or infinite values.")
    return arr


def check_pair(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"feature dimensions differ: {x.shape[1]} vs {y.shape[1]}; both sets must come "
            "from the same extractor."
        )


# -- FID / FD-DINO ---------------------------------------------------------------------


def gaussian_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (ddof 1) of the rows of ``x``, float64."""
    x = as_features(x, "features")
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
    x = as_features(x, "generated features")
    y = as_features(y, "reference features")
    check_pair(x, y)
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


# -- diversity -------------------------------------------------------------------------


def mean_pairwise_cosine_distance(x: np.ndarray) -> float:
    """Mean of ``1 - cos(x_i, x_j)`` over the pairs i < j of the rows of ``x`` (≥ 2 rows)."""
    x = as_features(x, "features")
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
    features = as_features(features, "features")
    groups = np.asarray(groups)
    if len(groups) != len(features):
        raise ValueError(f"{len(features)} feature rows but {len(groups)} group labels.")
    per_group = []
    for g in np.unique(groups):
        rows = features[groups == g]
        if len(rows) >= 2:
            per_group.append(mean_pairwise_cosine_distance(rows))
    return prompt_average(per_group, len(features), "diversity")


def prompt_average(per_prompt: Sequence[float], images: int, name: str) -> Estimate:
    """The mean over prompts of a within-prompt number (std over prompts, n = prompts),
    with the sample-size warning below 10 prompts; NaN when no prompt had a pair."""
    if not len(per_prompt):
        return Estimate(
            value=float("nan"),
            n=0,
            warning="no prompt has two or more images of this model (different seeds)",
        )
    # sorted: the float sums do not depend on the order of the prompts (their ids)
    values = np.sort(np.asarray(per_prompt, dtype=np.float64))
    warning = ""
    if len(values) < 10:
        warning = f"{name} over only {len(values)} prompt(s) with two or more seeds"
    return Estimate(
        value=float(values.mean()),
        std=float(values.std()),
        n=len(values),
        warning=warning,
        details={"prompts": len(values), "images": images},
    )


# -- Inception Score -------------------------------------------------------------------


def inception_score(
    logits: np.ndarray,
    splits: int = IS_SPLITS,
    shuffle: bool = True,
    seed: int = IS_SHUFFLE_SEED,
) -> Estimate:
    """torch-fidelity's Inception Score of (n, classes) logits: mean ± std over splits.

    As ``torch_fidelity.metric_isc.isc_features_to_metric`` with its defaults: the rows
    permuted by ``np.random.RandomState(2020)`` (``samples_shuffle``), softmax in float64,
    then per split ``i`` (rows ``i·n//splits`` to ``(i+1)·n//splits``)
    ``exp(mean KL(p(y|x) || p(y)))`` with ``p(y)`` the split's mean; the std is numpy's
    (ddof 0). Row order matters through the permutation: the caller passes the rows in
    pixel-hash order.
    """
    x = as_features(logits, "logits", dtype=None)  # float64 one split at a time, below
    n = len(x)
    if n < splits:
        return Estimate(
            value=float("nan"),
            n=n,
            warning=f"the Inception Score needs at least {splits} images (one per split); got {n}",
        )
    order = np.random.RandomState(seed).permutation(n) if shuffle else np.arange(n)
    scores = []
    for i in range(splits):
        rows = x[order[i * n // splits : (i + 1) * n // splits]].astype(np.float64)
        shifted = rows - rows.max(axis=1, keepdims=True)  # softmax, log-softmax as torch's
        e = np.exp(shifted)
        total = e.sum(axis=1, keepdims=True)
        p, log_p = e / total, shifted - np.log(total)
        q = p.mean(axis=0, keepdims=True)
        kl = (p * (log_p - np.log(q))).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    warning = ""
    if n < IS_MIN_N:
        warning = (
            f"IS on {n} images (fewer than {IS_MIN_N:,}, the published protocol): it grows "
            "with n; compare models only at equal n"
        )
    return Estimate(
        value=float(np.mean(scores)),
        std=float(np.std(scores)),
        n=n,
        warning=warning,
        details={"splits": splits, "shuffle_seed": seed if shuffle else None, "images": n},
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

    a = as_features(a, "first sample")
    b = as_features(b, "second sample")
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
