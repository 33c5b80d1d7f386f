"""Anime aesthetic: skytnt's ONNX anime-aesthetic predictor (hub ``skytnt/anime-aesthetic``).

What is computed, exactly (facts from the reference, the ``predict`` function of the
Space ``skytnt/anime-aesthetic-predict``, ``app.py``, and the repo's ``export.py``):

* Model: ``model.onnx``, exported with a fixed input ``img`` of shape (1, 3, 768, 768)
  and one output ``score``; run through onnxruntime. The value is the model's output
  as is (the Space shows it as the score; about 0-1). The input size is read from the
  graph (768 for the real model); a graph with a fixed batch of one is run one image
  at a time, a graph with a free batch dimension once per batch.
* Preprocessing (``prepare_anime_image``): RGB (alpha dropped, as Gradio's RGB image
  input does), float32 divided by 255; resized keeping the aspect ratio so that the
  long side is the input size and the short side ``int(size * short / long)``
  (truncated; a square image goes to size x size) with OpenCV's ``cv2.resize``
  default, bilinear (``INTER_LINEAR``: half-pixel centres, edge pixels repeated, no
  antialiasing even when shrinking); pasted into a zero (black) size x size canvas
  at offset ``((size - h) // 2, (size - w) // 2)`` (centred, the odd pixel at the
  bottom/right); HWC -> CHW. OpenCV is not needed: the resize is re-implemented here
  in numpy with OpenCV's coordinates and float32 weights.
* One departure: a short side that would truncate to 0 pixels (aspect ratio above
  768:1, where the reference's ``cv2.resize`` raises) is kept at 1 pixel.
* The onnxruntime device handling (``cuda:N``, the CPU build's error, a CUDA provider
  that did not start) is the tagger's (``scoring.metrics.tags``); it computes in fp32
  whatever ``dtype`` is asked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric
from scoring.metrics.tags import providers_for, session_provider
from scoring.weights import resolve

ANIME_AESTHETIC = WeightFile("skytnt/anime-aesthetic", "model.onnx")
INPUT_SIZE = 768  # the reference's canvas; used when the graph leaves the size free


def _linear_taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV ``INTER_LINEAR`` taps along one axis: (first index, second index, weight of
    the second) per output position, with OpenCV's coordinates and clamping."""
    scale = 1.0 / (dst / src)  # cv2: scale_x = 1 / inv_scale_x, inv_scale_x = dst / src
    pos = ((np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5).astype(np.float32)
    first = np.floor(pos).astype(np.int64)
    frac = pos - first.astype(np.float32)
    before = first < 0  # left of the first pixel centre: the first pixel
    first[before], frac[before] = 0, 0.0
    after = first >= src - 1  # right of the last pixel centre: the last pixel
    first[after], frac[after] = src - 1, 0.0
    return first, np.minimum(first + 1, src - 1), frac


def resize_linear(chw: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cv2.resize(image, (width, height))`` (bilinear) of a float32 image held as a
    (c, h, w) array, returned as (c, height, width)."""
    if chw.shape[1:] == (height, width):
        return chw  # OpenCV copies the pixels unchanged
    x0, x1, fx = _linear_taps(chw.shape[2], width)
    y0, y1, fy = _linear_taps(chw.shape[1], height)
    # OpenCV interpolates along x first, then y: a * (1 - f) + b * f in float32. In place
    # and with np.take (~10x faster than fancy indexing along an axis): the same values.
    rows = np.take(chw, x0, axis=2)
    rows *= 1.0 - fx
    right = np.take(chw, x1, axis=2)
    right *= fx
    rows += right
    fy = fy[:, None]
    out = np.take(rows, y0, axis=1)
    out *= 1.0 - fy
    below = np.take(rows, y1, axis=1)
    below *= fy
    out += below
    return out


def fitted_size(height: int, width: int, size: int) -> tuple[int, int]:
    """(h, w) with the long side ``size`` and the short side truncated, as the reference."""
    if height > width:
        h, w = size, int(size * width / height)
    else:
        h, w = int(size * height / width), size
    return max(h, 1), max(w, 1)


def prepare_anime_image(image: PILImage.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """One image -> (3, size, size) float32 in 0..1: fitted, bilinear, centred on black."""
    # The reference's float32 / 255, on the pixels already in CHW order (the same values).
    chw = np.ascontiguousarray(np.asarray(image.convert("RGB")).transpose(2, 0, 1))
    chw = chw.astype(np.float32)
    chw /= 255
    h, w = fitted_size(chw.shape[1], chw.shape[2], size)
    canvas = np.zeros((3, size, size), dtype=np.float32)
    top, left = (size - h) // 2, (size - w) // 2
    canvas[:, top : top + h, left : left + w] = resize_linear(chw, h, w)
    return canvas


@register_metric
class AnimeAesthetic(Metric):
    name: ClassVar[str] = "anime-aesthetic"
    version: ClassVar[str] = "skytnt-768.1"
    needs_prompt: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = False
    description: ClassVar[str] = (
        "skytnt anime aesthetic predictor (ONNX, onnxruntime): image fitted into a black "
        "768x768 canvas; the model's score, about 0-1."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (ANIME_AESTHETIC,)

    def __init__(self, session: Any, device: str = "cpu"):
        self.session = session
        self.device = device
        self.provider = session_provider(session, device, self.name)
        self.runtime = f"onnxruntime {self.provider}"
        self.size, self._batch_dim = self._check_io(session)
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    @staticmethod
    def _check_io(session: Any) -> tuple[int, Any]:
        shape = list(session.get_inputs()[0].shape)
        sides = shape[2:] if len(shape) == 4 else [1, 2]
        fixed = [isinstance(d, int) for d in sides]
        # A fixed square size, or a free one (then the reference's 768).
        square = sides[0] == sides[1] if all(fixed) else not any(fixed)
        if len(shape) != 4 or shape[1] != 3 or not square:
            raise ValueError(
                f"metric 'anime-aesthetic': the model's input has shape {shape}; expected NCHW "
                f"[batch, 3, size, size] (1, 3, 768, 768 for {ANIME_AESTHETIC.repo_id}'s "
                f"{ANIME_AESTHETIC.filename})."
            )
        out = list(session.get_outputs()[0].shape)
        per_image = [d for d in out[1:] if d != 1]
        if per_image:
            raise ValueError(
                f"metric 'anime-aesthetic': the model's output has shape {out}; expected one "
                f"value per image ([batch, 1]), as {ANIME_AESTHETIC.repo_id} gives."
            )
        return (sides[0] if all(fixed) else INPUT_SIZE), shape[0]

    @classmethod
    def load(cls, request: LoadRequest) -> AnimeAesthetic:
        """Load ``model.onnx`` (``weights``: the file, or a folder holding it); fp32 always,
        CUDA device N on ``cuda:N``."""
        import onnxruntime

        providers = providers_for(request.device, metric=cls.name)  # a wrong build fails fast
        path = resolve(cls.name, ANIME_AESTHETIC, request.weights, request.sources)
        try:
            session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(
                f"metric 'anime-aesthetic': {path} is not a loadable ONNX model: "
                f"{str(exc).splitlines()[0]}. Expected {ANIME_AESTHETIC.filename} from the "
                f"hub repo {ANIME_AESTHETIC.repo_id}."
            ) from None
        return cls(session, device=request.device)

    def preprocessor(self) -> Callable[[PILImage.Image], np.ndarray]:
        """Runs in the job's DataLoader workers: image -> (3, size, size) float32."""
        return functools.partial(prepare_anime_image, size=self.size)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(out, dtype=np.float64).reshape(batch.shape[0])

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        """Scores of preprocessed (3, size, size) arrays (see ``preprocessor``)."""
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        batch = np.ascontiguousarray(np.stack(list(inputs)).astype(np.float32, copy=False))
        if self._batch_dim == 1:  # the real export: a fixed batch of one
            return np.concatenate([self._run(batch[i : i + 1]) for i in range(len(batch))])
        return self._run(batch)
