"""CLIP-IQA (Wang, Chan and Loy, AAAI 2023): antonym prompts on CLIP features.

What is computed, exactly (torchmetrics' ``CLIPImageQualityAssessment`` with its default
``prompts=("quality",)``):

* Anchors: the text embeddings of ``"Good photo."`` and ``"Bad photo."``, each
  L2-normalised.
* Per image: the L2-normalised image embedding ``f``; logits ``100 · f · anchor`` (a fixed
  temperature of 100, not the model's ``logit_scale``); softmax over the two; the value
  is the probability of ``"Good photo."`` (0-1, higher is better).
* Backbone: the OpenAI CLIP ViT-L/14 of CLIP score (``scoring/metrics/openai_clip.py``:
  same checkpoint, open_clip with QuickGELU, OpenAI's ``clip.load`` preprocessing), so
  CLIP score, aesthetic and CLIP-IQA share one loaded encoder and one image-tower pass
  per batch. torchmetrics' default backbone is ``"clip_iqa"`` (piq's ResNet-50 without
  positional embedding, the paper's model, which needs the ``piq`` package and its own
  weights); ``openai/clip-vit-large-patch14`` is one of the backbones torchmetrics
  offers for this metric, and the one computed here. The version names it
  (``vit-l-14-openai.quality.1``); numbers are not comparable with the ResNet-50 ones.
* Preprocessing is the shared encoder's (shortest side to 224, bicubic, centre crop).
  transformers' ``CLIPProcessor``, which torchmetrics calls, centres the crop with
  ``(h - 224) // 2`` where OpenAI's ``clip.load`` rounds half to even, so the two crops
  differ by one pixel row or column when the margin is 3 mod 4 pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

import numpy as np

from scoring.metrics.base import LoadRequest, WeightFile, register_metric
from scoring.metrics.openai_clip import VITL14_OPENAI, EncoderMetric, load_shared_encoder

# torchmetrics' "quality" pair: (positive, negative).
QUALITY_PROMPTS = ("Good photo.", "Bad photo.")
TEMPERATURE = 100.0


def clipiqa_scores(
    image_embeddings: np.ndarray, anchors: np.ndarray, temperature: float = TEMPERATURE
) -> np.ndarray:
    """P(positive prompt) per image from (n, d) image and (2, d) anchor embeddings
    (normalised here), as float64: softmax of ``temperature · cos`` over the pair."""
    img = np.asarray(image_embeddings, dtype=np.float64)
    anc = np.asarray(anchors, dtype=np.float64)
    if img.ndim != 2 or anc.shape != (2, img.shape[1]):
        raise ValueError(
            f"clipiqa_scores needs (n, d) image and (2, d) anchor embeddings; got "
            f"{img.shape} and {anc.shape}"
        )
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    anc = anc / np.linalg.norm(anc, axis=1, keepdims=True)
    logits = temperature * img @ anc.T
    # softmax over the pair, first entry: 1 / (1 + exp(l_neg - l_pos)), stable for any gap
    return 1.0 / (1.0 + np.exp(logits[:, 1] - logits[:, 0]))


@register_metric
class ClipIQA(EncoderMetric):
    name: ClassVar[str] = "clipiqa"
    version: ClassVar[str] = "vit-l-14-openai.quality.1"
    needs_prompt: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "CLIP-IQA: softmax of 100 * cos(image, 'Good photo.' / 'Bad photo.'), P(good), on the "
        "OpenAI ViT-L/14 that CLIP score loads (one shared encoder); 0-1"
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (VITL14_OPENAI,)
    prompts: ClassVar[tuple[str, str]] = QUALITY_PROMPTS

    @classmethod
    def load(cls, request: LoadRequest) -> ClipIQA:
        """``weights``: the ViT-L/14 checkpoint (default: the one given for ``clip``, passed
        as ``encoder_weights``, so both share it; else the usual search)."""
        weights = request.weights if request.weights is not None else request.encoder_weights
        return cls(load_shared_encoder(cls.name, replace(request, weights=weights)))

    def anchors(self) -> np.ndarray:
        """(2, d) normalised embeddings of the two prompts (encoded once, by the encoder)."""
        return self.encoder.encode_texts(list(self.prompts)).cpu().numpy()

    def score_features(self, features, prompts: Sequence[str] | None = None) -> np.ndarray:
        return clipiqa_scores(features.cpu().numpy(), self.anchors())
