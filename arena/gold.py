"""Gold checks: an image against a visibly degraded copy of itself.

Any attentive rater prefers the intact image, so a rater's accuracy on gold
battles measures attention, not taste. Degraded copies are stored like other
images (content-hashed, metadata-free) under the same model, with
``broken="gold"`` so that matchmaking and metrics never use them as ordinary
images, and ``params`` recording the source image and the degradation.
Degradations are strong on purpose (a check, not a test of perception).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

DEGRADATIONS = ("blur", "noise", "colour_shift")


def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    radius = max(img.width, img.height) / rng.uniform(40, 60)
    return img.filter(ImageFilter.GaussianBlur(radius))


def noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(img, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, rng.uniform(60, 80), pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def colour_shift(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotate hues by a third to a half of the circle and wash the image out."""
    hsv = np.asarray(img.convert("HSV"), dtype=np.int32)
    shift = int(rng.integers(85, 128))
    hsv[..., 0] = (hsv[..., 0] + shift) % 256
    hsv[..., 1] = hsv[..., 1] // 2 + 100
    return Image.fromarray(hsv.astype(np.uint8), "HSV").convert("RGB")


_FUNCTIONS = {"blur": blur, "noise": noise, "colour_shift": colour_shift}


def degrade(img: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """A degraded RGB copy of ``img`` of the same size; ``kind`` is one of DEGRADATIONS."""
    try:
        function = _FUNCTIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown degradation {kind!r}; known: {', '.join(DEGRADATIONS)}"
        ) from None
    out = function(img.convert("RGB"), rng)
    assert out.size == img.size
    return out
