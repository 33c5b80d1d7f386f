"""The Anomaly Score: complexity and vulnerability against closed forms, AS_i on a
controlled network, and the metric through the real DINOv2 loading code (tiny weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.metrics.anomaly import (
    PGD_EPS,
    AnomalyScore,
    anomaly_scores,
    complexity,
    complexity_vulnerability,
    vulnerability,
)
from scoring.metrics.base import get_metric
from scoring.testing.tiny_extractors import write_tiny_dinov2


def test_vulnerability_of_a_linear_feature_is_the_linf_optimum():
    """For f(x) = w·x the largest change in an L∞ ball of radius ε is ε·||w||₁; PGD that
    ascends the feature distance reaches it (a descending attack would stay near 0)."""
    w = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(0))

    def fn(x):
        return (x * w).flatten(1).sum(dim=1, keepdim=True)

    x = torch.full((2, 3, 8, 8), 0.5)
    v = vulnerability(fn, x)
    expected = PGD_EPS * w.abs().sum()
    assert torch.allclose(v, expected.expand(2), rtol=1e-4)


def test_complexity_on_a_circle_is_the_turning_angle():
    """f(x) = (cos a·s, sin a·s) with s = u·x: along the line each chord turns by a·ε·(u·n)."""
    gen = torch.Generator().manual_seed(1)
    u = torch.randn(3, 6, 6, generator=gen)
    a = 40.0

    def fn(x):
        s = (x * u).flatten(1).sum(dim=1)
        return torch.stack([torch.cos(a * s), torch.sin(a * s)], dim=1)

    x = torch.full((3, 3, 6, 6), 0.5, dtype=torch.float64)
    directions = torch.randn(3, 3, 6, 6, generator=gen, dtype=torch.float64)
    unit = directions / directions.flatten(1).norm(dim=1)[:, None, None, None]
    expected = (a * 0.01 * (unit * u.double()).flatten(1).sum(dim=1)).abs()
    got = complexity(lambda p: fn(p.double()), x, directions=directions)
    assert torch.allclose(got.double(), expected, rtol=1e-4)
    # A linear representation does not turn at all.
    flat = complexity(lambda p: p.flatten(1)[:, :5] * 3.0, x, directions=directions)
    assert float(flat.max()) < 1e-3  # float32 arccos near 1: ~1e-5 round-off


def _smooth_image(size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.3 + 0.4 * xx, 0.5 + 0.2 * torch.sin(6 * yy), 0.2 + 0.5 * xx * yy])


def test_as_i_ranks_an_image_above_its_noise_corrupted_copy():
    """A network built to encode the paper's hypothesis: natural (smooth) images sit where
    the representation is flat but curved (cubic of a high-pass response near 0), noise
    pushes into its steep, nearly linear part. AS_i must then rank the clean image as more
    natural at every noise level; and the order comes from both C and V."""
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).repeat(3, 1, 1, 1)

    def fn(x):
        return torch.nn.functional.conv2d(x, lap, groups=3).pow(3).flatten(1) * 100

    clean = _smooth_image()[None]
    gen = torch.Generator().manual_seed(2)
    for sigma in (0.02, 0.1):
        noisy = (clean + sigma * torch.randn(clean.shape, generator=gen)).clamp(0, 1)
        c, v = complexity_vulnerability(fn, torch.cat([clean, noisy]))
        scores = anomaly_scores(c, v)
        assert c[0] > c[1] and v[0] < v[1]
        assert scores[0] < scores[1] / 5


def test_anomaly_scores_undefined_where_complexity_is_zero():
    out = anomaly_scores(np.array([0.5, 0.0]), np.array([1.0, 2.0]))
    assert out[0] == 2.0 and np.isnan(out[1])


@pytest.fixture(scope="module")
def dino_folder(tmp_path_factory):
    return write_tiny_dinov2(tmp_path_factory.mktemp("dino") / "facebook" / "dinov2-large")


def test_metric_loads_tiny_dinov2_and_is_order_independent(dino_folder):
    assert get_metric("anomaly") is AnomalyScore
    metric = AnomalyScore.from_pretrained(dino_folder)
    rng = np.random.default_rng(3)
    images = [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)) for _ in range(2)]
    inputs = metric.prepare(images)
    # As the runner calls it: inside inference mode.
    with torch.inference_mode():
        values, details = metric.score_with_details(inputs)
    reordered = metric.score(images[::-1])
    assert values.shape == (2,) and np.all(np.isfinite(values)) and np.all(values > 0)
    assert np.allclose(reordered, values[::-1], rtol=1e-5)
    for value, d in zip(values, details, strict=True):
        assert d["vulnerability"] / d["complexity"] == pytest.approx(value)
        assert d["features"].startswith("dinov2-l14@")


def _tf32(x: torch.Tensor) -> torch.Tensor:
    """Round float32 to TF32 (10 mantissa bits, round to nearest), as cuDNN's TF32
    convolutions read their inputs."""
    bits = x.detach().contiguous().view(torch.int32)
    rounded = ((bits + 0x1000) & ~0x1FFF).view(torch.float32)
    return x + (rounded - x).detach()  # the gradient passes through, as on the GPU


def test_complexity_is_computed_without_tf32():
    """An emulated GPU convolution that rounds its input to TF32 whenever cuDNN's TF32 flag
    is on (PyTorch's default): the complexity walk's steps are below TF32's rounding step,
    so unguarded the path is rounding noise; the metric's computation turns the flag off
    and gets the fp32 answer."""
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]).repeat(3, 1, 1, 1)

    def gpu_like(x):
        if torch.backends.cudnn.allow_tf32:
            x = _tf32(x)
        return torch.nn.functional.conv2d(x, lap, groups=3).pow(3).flatten(1) * 100

    image = _smooth_image()[None]
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
        exact = complexity(gpu_like, image)
    with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=True):
        rounded = complexity(gpu_like, image)  # what an unguarded job computed
        guarded, _ = complexity_vulnerability(gpu_like, image)
        assert torch.backends.cudnn.allow_tf32  # the guard restores the caller's flag
    assert float(rounded[0]) > 5 * float(exact[0])
    np.testing.assert_allclose(guarded, exact.double().numpy(), rtol=1e-6)


def _saved_activation_bytes(fn, x) -> int:
    """Bytes autograd keeps for the backward of one attack step (parameters not counted:
    they are kept anyway)."""
    seen: set[tuple] = set()
    total = 0

    def pack(t):
        nonlocal total
        key = (t.untyped_storage().data_ptr(), tuple(t.shape))
        if not isinstance(t, torch.nn.Parameter) and key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        vulnerability(fn, x, steps=1)
    return total


def test_dinov2_weights_are_frozen_and_the_attack_keeps_input_gradients(dino_folder):
    """Loaded DINOv2 has no trainable parameter (directly and through the metric): the
    attack's backward passes then keep only what the input gradient needs, and its
    result is the same as with trainable weights."""
    from scoring.distribution.features import DinoExtractor

    extractor = DinoExtractor.load(dino_folder)
    metric = AnomalyScore.from_pretrained(dino_folder)
    for model in (extractor.model, metric.extractor.model):
        assert not any(p.requires_grad for p in model.parameters())
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    frozen_bytes = _saved_activation_bytes(extractor.forward_pixels, x)
    frozen_v = vulnerability(extractor.forward_pixels, x, steps=2)
    assert float(frozen_v.min()) > 0  # the input gradient flows: the attack moves features
    extractor.model.requires_grad_(True)
    trainable_bytes = _saved_activation_bytes(extractor.forward_pixels, x)
    trainable_v = vulnerability(extractor.forward_pixels, x, steps=2)
    assert frozen_bytes < 0.85 * trainable_bytes  # measured: 2.3 vs 3.2 MiB
    torch.testing.assert_close(frozen_v, trainable_v, rtol=1e-6, atol=0)
    assert all(p.grad is None for p in extractor.model.parameters())


def test_chunks_bound_every_forward_and_do_not_change_the_numbers(dino_folder):
    """With chunk_size 2, no forward pass sees more than 2 images (unchunked, the
    complexity walk alone sends 11 x 5 = 55 through one), and every (C, V) and AS_i
    equals the one-pass numbers."""
    metric = AnomalyScore.from_pretrained(dino_folder)
    assert metric.chunk_size == 16
    rng = np.random.default_rng(5)
    images = [Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)) for _ in range(5)]
    inputs = metric.prepare(images)
    sizes: list[int] = []
    metric.extractor.model.register_forward_pre_hook(
        lambda module, args, kwargs: sizes.append(len(kwargs["pixel_values"])), with_kwargs=True
    )
    runs = {}
    for chunk in (1000, 2):
        metric.chunk_size = chunk
        sizes.clear()
        with torch.inference_mode():
            runs[chunk] = metric.score_with_details(inputs)
        runs[chunk] += (max(sizes),)
    assert runs[1000][2] == 55 and runs[2][2] == 2
    np.testing.assert_allclose(runs[2][0], runs[1000][0], rtol=1e-6)  # bit-equal on CPU
    for key in ("complexity", "vulnerability"):
        one = [d[key] for d in runs[1000][1]]
        chunked = [d[key] for d in runs[2][1]]
        np.testing.assert_allclose(chunked, one, rtol=1e-6)
    with pytest.raises(ValueError, match="chunk size must be at least 1"):
        AnomalyScore(metric.extractor, chunk_size=0)
