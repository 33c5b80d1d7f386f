"""The Anomaly Score (Hwang, Lee and Lee, CVPR 2024, arXiv 2312.10634).

Two properties of the feature network around an image x (pixels in [0, 1]):

* **Complexity** C(x): how non-linear the representation is around x. Walk from x
  along one random direction n (Gaussian, scaled to unit L2 norm over all pixels) in
  K steps of size ε: x_k = clip(x + kεn, 0, 1), k = 0..K. With features f_k and unit
  displacement vectors u_k = (f_k - f_{k-1}) / ||f_k - f_{k-1}||, C is the mean angle
  arccos(u_{k+1}·u_k) over the K-1 consecutive pairs. A linear representation gives 0.
* **Vulnerability** V(x): how far the feature moves under an adversarial input change.
  PGD with an L∞ budget: start at x plus uniform noise of ±1e-6, take T steps
  x' ← clip(x + clip(x' + α·sign(∇ ||f(x') - f(x)||²/D) - x, -ε_v, ε_v), 0, 1),
  then V = ||f(x') - f(x)||₂.
* **AS_i** = V / C for one image: a high value is an image whose representation is
  vulnerable and locally flat -- what the paper finds for unnatural generated images.
  Lower is better.
* **AS** (model level) = the two-sample 2-D Kolmogorov-Smirnov statistic between the
  (C, V) points of the reference images and of a model's images
  (``scoring.distribution.stats.ks2d``). Lower is better.

Hyper-parameters (the authors' reference code): K = 10 steps of ε = 0.01 with Gaussian
directions; PGD ε_v = 8/255, α = 2/255, T = 10 steps on the feature MSE; features are
the CLS token of DINOv2 (the reference example uses ViT-S/14; we use the ViT-L/14
loaded for FD-DINO -- any ``Dinov2Model`` folder can be given with ``--weights``) on
224 x 224 inputs. Two choices are ours and differ from that code: (1) the PGD step
*ascends* the feature distance, as the paper's definition ("how easily the extracted
feature changes by adversarial input changes") says, where the published code steps
along the sign of the gradient of the negated loss; (2) ImageNet normalisation is the
first layer of the network, so perturbations and clipping act on [0, 1] pixels. The
random direction and the PGD start of each image are seeded from the image's pixels,
so AS_i does not depend on batch composition or order.

Memory: the metric works on chunks of at most ``chunk_size`` images (16 by default),
and no forward pass -- the complexity walk's 11 points per image included -- sees more
images than that, so peak memory is bounded whatever the scoring job's batch size. The
network's parameters are frozen (``DinoExtractor.load``): the attack needs gradients
with respect to the input only, and frozen weights save no activations for their own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from scoring.devices import full_fp32
from scoring.distribution.features import DINOV2_LARGE, DinoExtractor
from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric

CHUNK_SIZE = 16
COMPLEXITY_STEPS = 10
COMPLEXITY_EPS = 0.01
PGD_EPS = 8 / 255
PGD_ALPHA = 2 / 255
PGD_STEPS = 10


def image_seed(pixels) -> int:
    """A 63-bit seed from a (3, H, W) tensor's bytes."""
    data = pixels.detach().float().cpu().contiguous().numpy().tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


def features_in_chunks(fn: Callable, x, chunk_size: int | None = None):
    """``fn`` over ``x`` in slices of at most ``chunk_size`` images (None: one call)."""
    import torch

    if chunk_size is None or len(x) <= chunk_size:
        return fn(x)
    return torch.cat([fn(x[i : i + chunk_size]) for i in range(0, len(x), chunk_size)])


def complexity(
    fn: Callable,
    x,
    directions=None,
    steps: int = COMPLEXITY_STEPS,
    eps: float = COMPLEXITY_EPS,
    chunk_size: int | None = None,
):
    """Mean turning angle (radians) of the feature path along a random line; one per image.

    ``fn`` maps (n, 3, H, W) pixels in [0, 1] to (n, d) features; ``directions`` are
    (n, 3, H, W) directions (normalised here to unit L2 norm per image); by default
    Gaussian directions seeded from each image. The n·(steps + 1) points of the paths
    go through ``fn`` at most ``chunk_size`` at a time (None: all at once).
    """
    import torch

    if directions is None:
        directions = torch.stack(
            [
                torch.randn(img.shape, generator=torch.Generator().manual_seed(image_seed(img))).to(
                    x.device, x.dtype
                )
                for img in x
            ]
        )
    norms = torch.linalg.vector_norm(directions.flatten(1), dim=1).clamp_min(1e-12)
    directions = directions / norms[:, None, None, None]
    k = torch.arange(steps + 1, device=x.device, dtype=x.dtype)
    path = (x[:, None] + eps * k[None, :, None, None, None] * directions[:, None]).clamp(0, 1)
    n = len(x)
    with torch.no_grad():
        feats = features_in_chunks(fn, path.flatten(0, 1), chunk_size)
        feats = feats.float().reshape(n, steps + 1, -1)
    vecs = feats[:, 1:] - feats[:, :-1]
    vecs = vecs / torch.linalg.vector_norm(vecs, dim=2, keepdim=True).clamp_min(1e-12)
    cos = (vecs[:, 1:] * vecs[:, :-1]).sum(dim=2).clamp(-1.0, 1.0)
    return torch.arccos(cos).mean(dim=1)


def vulnerability(
    fn: Callable,
    x,
    eps: float = PGD_EPS,
    alpha: float = PGD_ALPHA,
    steps: int = PGD_STEPS,
):
    """L2 feature change under an L∞ PGD attack that maximises the feature MSE; one per image."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        clean = fn(x).float()
    start = torch.stack(
        [
            torch.rand(img.shape, generator=torch.Generator().manual_seed(image_seed(img) ^ 1))
            for img in x.cpu()
        ]
    ).to(x.device, x.dtype)
    adv = (x + (start * 2 - 1) * 1e-6).clamp(0, 1).detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        # Summed per-image MSE: each image's gradient is its own MSE's gradient.
        loss = F.mse_loss(fn(adv).float(), clean, reduction="none").mean(dim=1).sum()
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + alpha * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
    with torch.no_grad():
        moved = fn(adv).float()
    return torch.linalg.vector_norm(moved - clean, dim=1)


def complexity_vulnerability(
    fn: Callable, x, chunk_size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(C, V) of a batch as float64 arrays, with autograd on (even inside inference mode)
    and without TF32 (:func:`scoring.devices.full_fp32`): the complexity walk moves a
    pixel by ~2.6e-5 per step, below TF32's rounding step, so with TF32 its feature path
    would be rounding noise (complexity 0.02-0.035 rad becomes ~1 rad, AS_i ~1000 becomes
    ~25; emulated on CPU in ``tests/test_anomaly.py``).

    With ``chunk_size`` the images are taken that many at a time and no call of ``fn``
    sees more than ``chunk_size`` images, so the attack's saved activations and the
    complexity walk's features are bounded by it; each image's (C, V) is seeded from its
    own pixels, so the chunks give the numbers of one pass.
    """
    import torch

    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"anomaly chunk size must be at least 1 image, got {chunk_size}.")
    step = chunk_size or max(len(x), 1)
    cs, vs = [], []
    with torch.inference_mode(False), torch.enable_grad(), full_fp32():
        for start in range(0, len(x), step):
            # A normal tensor even if ``x`` is an inference tensor.
            pixels = x[start : start + step].clone().float()
            cs.append(complexity(fn, pixels, chunk_size=chunk_size).double().cpu().numpy())
            vs.append(vulnerability(fn, pixels).double().cpu().numpy())
    if not cs:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(cs), np.concatenate(vs)


def anomaly_scores(c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """AS_i = V / C; NaN where C is 0 (a locally linear representation: undefined)."""
    c = np.asarray(c, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    out = np.full(c.shape, np.nan)
    ok = c > 0
    out[ok] = v[ok] / c[ok]
    return out


@register_metric
class AnomalyScore(Metric):
    name: ClassVar[str] = "anomaly"
    version: ClassVar[str] = "dinov2-cls.pgd-ascent.1"
    needs_prompt: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = False
    description: ClassVar[str] = (
        "Anomaly Score AS_i = vulnerability / complexity of the DINOv2 representation "
        "(Hwang et al. 2024); lower is more natural"
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (DINOV2_LARGE,)
    # Images per forward pass (attack and complexity walk): bounds peak memory whatever
    # the job's batch size; 16 fits DINOv2-L's attack in a few GB. Results do not depend
    # on it.
    chunk_size: int = CHUNK_SIZE

    def __init__(self, extractor: DinoExtractor, chunk_size: int = CHUNK_SIZE):
        if chunk_size < 1:
            raise ValueError(f"anomaly chunk size must be at least 1 image, got {chunk_size}.")
        self.chunk_size = chunk_size
        self.extractor = extractor
        self.device = extractor.device
        # The weights identity: (C, V) of different networks never mix.
        self.weights_key = extractor.key
        if extractor.tag:  # stand-in weights (the demo's): their scores carry the tag
            self.version = f"{type(self).version}+{extractor.tag}"
        device_type = str(extractor.device).split(":")[0]
        if device_type != "cpu":  # GPU kernels: (C, V) rows kept apart from the CPU's
            self.version = f"{self.version}@{device_type}"

    @classmethod
    def load(cls, request: LoadRequest) -> AnomalyScore:
        """Load the DINOv2 folder (fp32 always: the attack needs accurate gradients)."""
        extractor = DinoExtractor.load(
            request.weights, device=request.device, metric=cls.name, sources=request.sources
        )
        return cls(extractor)

    def preprocessor(self):
        return self.extractor.preprocessor()

    @property
    def preprocess_key(self) -> str:
        return self.extractor.preprocess_key

    def _fn(self, pixels):
        return self.extractor.forward_pixels(pixels)

    def score_with_details(self, inputs, prompts: Sequence[str] | None = None):
        import torch

        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        if len(inputs) == 0:
            return np.zeros(0), []
        with torch.autocast(str(self.device).split(":")[0], enabled=False):
            c, v = complexity_vulnerability(
                self._fn, inputs.to(self.device), chunk_size=self.chunk_size
            )
        values = anomaly_scores(c, v)
        details = [
            {"complexity": float(ci), "vulnerability": float(vi), "features": self.weights_key}
            for ci, vi in zip(c, v, strict=True)
        ]
        return values, details

    def score_inputs(self, inputs, prompts: Sequence[str] | None = None) -> np.ndarray:
        return self.score_with_details(inputs, prompts)[0]
