import numpy as np
import pytest
from PIL import Image

from arena.voting.gold import DEGRADATIONS, degrade


def _scene():
    rng = np.random.default_rng(0)
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[16:48, 16:48] = (220, 40, 40)
    pixels[:, :8] = rng.integers(0, 255, (64, 8, 3))
    return Image.fromarray(pixels)


@pytest.mark.parametrize("kind", DEGRADATIONS)
def test_degradations_are_strong_deterministic_and_keep_the_size(kind):
    img = _scene()
    a = degrade(img, kind, np.random.default_rng(5))
    b = degrade(img, kind, np.random.default_rng(5))
    assert a.size == img.size and a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b))
    diff = np.abs(np.asarray(a, float) - np.asarray(img, float)).mean()
    assert diff > 10, f"{kind} changed the image by only {diff:.1f} grey levels on average"


def test_unknown_degradation_lists_the_known_ones():
    with pytest.raises(ValueError, match="blur, noise, colour_shift"):
        degrade(_scene(), "sepia", np.random.default_rng(0))
