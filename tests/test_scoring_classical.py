"""Classical metrics against independent references (scipy.ndimage, hand-written formulas)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from scoring.metrics.base import expand_metric_names, get_metric
from scoring.metrics.classical import colorfulness, laplacian, luma, rms_contrast, sharpness


def random_rgb(seed: int, shape=(13, 17)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3)).astype(np.float64)


@pytest.mark.parametrize("seed", range(5))
def test_sharpness_is_variance_of_scipy_laplace(seed):
    rgb = random_rgb(seed)
    gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    reference = ndimage.laplace(gray, mode="reflect")
    np.testing.assert_allclose(laplacian(gray), reference, atol=1e-9)
    assert sharpness(rgb) == pytest.approx(float(np.var(reference)), rel=1e-12)


def test_laplacian_by_hand_on_a_3x3_impulse():
    gray = np.zeros((3, 3))
    gray[1, 1] = 1.0
    expected = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float)
    np.testing.assert_array_equal(laplacian(gray), expected)
    # Symmetric borders: a constant image has no Laplacian anywhere, even at the edges.
    assert sharpness(np.full((4, 5, 3), 77.0)) == 0.0


def test_luma_matches_bt601_weights():
    rgb = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=float)
    np.testing.assert_allclose(luma(rgb), [[76.245, 149.685, 29.07]])


def _colorfulness_by_hand(rgb: np.ndarray) -> float:
    r, g, b = (rgb[..., c].ravel().tolist() for c in range(3))
    n = len(r)
    rg = [r[i] - g[i] for i in range(n)]
    yb = [(r[i] + g[i]) / 2 - b[i] for i in range(n)]
    mean_rg, mean_yb = sum(rg) / n, sum(yb) / n
    var_rg = sum((x - mean_rg) ** 2 for x in rg) / n
    var_yb = sum((x - mean_yb) ** 2 for x in yb) / n
    return (var_rg + var_yb) ** 0.5 + 0.3 * (mean_rg**2 + mean_yb**2) ** 0.5


@pytest.mark.parametrize("seed", range(5))
def test_colorfulness_matches_the_paper_formula_by_hand(seed):
    rgb = random_rgb(seed, (4, 3))
    assert colorfulness(rgb) == pytest.approx(_colorfulness_by_hand(rgb), rel=1e-12)


def test_colorfulness_known_values():
    grey = np.full((2, 2, 3), 128.0)
    assert colorfulness(grey) == 0.0
    red = np.zeros((2, 2, 3))
    red[..., 0] = 255.0
    # rg = 255, yb = 127.5, no variance: M = 0.3 * sqrt(255^2 + 127.5^2)
    assert colorfulness(red) == pytest.approx(0.3 * np.hypot(255.0, 127.5))


def test_rms_contrast_is_population_std_of_normalised_luma():
    rgb = np.zeros((1, 2, 3))
    rgb[0, 1] = 255.0  # one black, one white pixel: luma 0 and 1 -> std 0.5
    assert rms_contrast(rgb) == pytest.approx(0.5)
    rgb = random_rgb(3)
    gray = (rgb @ np.array([0.299, 0.587, 0.114])) / 255.0
    assert rms_contrast(rgb) == pytest.approx(float(np.sqrt(np.mean((gray - gray.mean()) ** 2))))


def test_metric_classes_score_pil_images_and_group_expands():
    assert expand_metric_names(["classical"]) == ["sharpness", "colorfulness", "contrast"]
    assert expand_metric_names(["contrast", "classical"]) == [
        "contrast",
        "sharpness",
        "colorfulness",
    ]
    rgb = random_rgb(9).astype(np.uint8)
    images = [Image.fromarray(rgb), Image.fromarray(rgb).convert("L")]
    for name, func in [
        ("sharpness", sharpness),
        ("colorfulness", colorfulness),
        ("contrast", rms_contrast),
    ]:
        metric = get_metric(name).from_pretrained()
        values = metric.score(images)
        assert values.dtype == np.float64 and values.shape == (2,)
        assert values[0] == pytest.approx(func(rgb.astype(float)))
        grey3 = np.repeat(np.asarray(images[1])[..., None], 3, axis=2).astype(float)
        assert values[1] == pytest.approx(func(grey3))


def test_unknown_metric_lists_known_ones_and_classical_rejects_weights():
    with pytest.raises(KeyError, match=r"available metrics: .*sharpness"):
        expand_metric_names(["sharpnes"])
    with pytest.raises(ValueError, match="has no weights"):
        get_metric("sharpness").from_pretrained("/some/file")
