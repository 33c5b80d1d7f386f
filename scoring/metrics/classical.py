"""Classical, weight-free image statistics: sharpness, colorfulness, RMS contrast.

numpy only (no torch), so the offline demo and the web side can use them. They are
cheap proxies, not judgements of quality: a noisy image is "sharp", a garish one is
"colorful". Each is its own metric (its own row in ``scores``); the command-line
name ``classical`` stands for all three.

Definitions (all on 8-bit RGB values as float64):

* luma ``Y = 0.299 R + 0.587 G + 0.114 B`` (ITU-R BT.601, the weights of PIL's "L").
* sharpness: the variance of the 4-neighbour Laplacian of ``Y`` (values 0..255),
  kernel ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]``, borders extended by mirroring with
  the edge pixel repeated (``d c b a | a b c d``, scipy.ndimage's ``reflect``).
  It grows with resolution detail: compare images of the same size.
* colorfulness (Hasler & Süsstrunk 2003, eq. 3): ``rg = R - G``,
  ``yb = (R + G) / 2 - B``; ``sqrt(var(rg) + var(yb)) + 0.3 sqrt(mean(rg)^2 + mean(yb)^2)``
  with population statistics over all pixels.
* contrast: RMS contrast, the population standard deviation of ``Y / 255``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring.metrics.base import LoadRequest, Metric, register_metric

LUMA = np.array([0.299, 0.587, 0.114])


def as_rgb_array(image: PILImage.Image | np.ndarray) -> np.ndarray:
    """(H, W, 3) float64 array of an RGB image (PIL image or uint8/float array)."""
    if isinstance(image, PILImage.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
    return arr


def luma(rgb: np.ndarray) -> np.ndarray:
    """(H, W) BT.601 luma of an (H, W, 3) RGB array."""
    return rgb @ LUMA


def laplacian(gray: np.ndarray) -> np.ndarray:
    """4-neighbour Laplacian with symmetric (edge-repeating) borders."""
    p = np.pad(gray, 1, mode="symmetric")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * p[1:-1, 1:-1]


def sharpness(rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the luma (0..255 scale)."""
    return float(laplacian(luma(rgb)).var())


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler–Süsstrunk colorfulness M = sigma_rgyb + 0.3 mu_rgyb."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    sigma = np.sqrt(rg.var() + yb.var())
    mu = np.sqrt(rg.mean() ** 2 + yb.mean() ** 2)
    return float(sigma + 0.3 * mu)


def rms_contrast(rgb: np.ndarray) -> float:
    """Population standard deviation of the luma scaled to [0, 1]."""
    return float((luma(rgb) / 255.0).std())


class _Classical(Metric):
    """One statistic of one image; no weights, no prompt, CPU."""

    needs_prompt: ClassVar[bool] = False
    version: ClassVar[str] = "1"
    func: ClassVar[Callable[[np.ndarray], float]]

    @classmethod
    def load(cls, request: LoadRequest) -> _Classical:
        """Nothing to load: refuses ``weights``, ignores the rest."""
        if request.weights is not None:
            raise ValueError(f"metric {cls.name!r} has no weights; do not pass --weights for it.")
        return cls()

    def preprocessor(self) -> Callable[[PILImage.Image | np.ndarray], float]:
        """The whole statistic, per image: the job computes it in its worker processes."""
        return partial(_apply, type(self).func)

    def score_inputs(self, inputs: Sequence[float], prompts: Sequence[str] | None = None):
        return np.asarray(inputs, dtype=np.float64).reshape(-1)

    def score(
        self, images: Sequence[PILImage.Image | np.ndarray], prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        return self.score_inputs(self.prepare(images))


def _apply(func: Callable[[np.ndarray], float], image: PILImage.Image | np.ndarray) -> float:
    return func(as_rgb_array(image))


@register_metric
class Sharpness(_Classical):
    name: ClassVar[str] = "sharpness"
    description: ClassVar[str] = "variance of the Laplacian of the luma (0-255); detail/blur proxy"
    func = staticmethod(sharpness)


@register_metric
class Colorfulness(_Classical):
    name: ClassVar[str] = "colorfulness"
    description: ClassVar[str] = "Hasler-Süsstrunk (2003) colorfulness of the RGB values (0-255)"
    func = staticmethod(colorfulness)


@register_metric
class Contrast(_Classical):
    name: ClassVar[str] = "contrast"
    description: ClassVar[str] = "RMS contrast: standard deviation of the luma in [0, 1]"
    func = staticmethod(rms_contrast)
