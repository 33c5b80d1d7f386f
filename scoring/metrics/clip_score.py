"""CLIP score (Hessel et al. 2021, the torchmetrics definition): 100 · max(cos(image, text), 0).

Model: OpenAI CLIP ViT-L/14 through open_clip (see ``scoring/metrics/openai_clip.py`` for the
weights, QuickGELU and preprocessing). Text: open_clip's tokenizer with the 77-token
context; a longer prompt is cut to 76 tokens and the end-of-text token is put back in
the last position, so the text embedding (taken at the end-of-text token) still exists.
Each distinct prompt is encoded once per job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from scoring.metrics.base import LoadRequest, WeightFile, register_metric
from scoring.metrics.openai_clip import VITL14_OPENAI, EncoderMetric, load_shared_encoder


def clip_scores(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise 100 · max(cos, 0) of paired (n, d) embeddings (normalised or not), float64."""
    img = np.asarray(image_embeddings, dtype=np.float64)
    txt = np.asarray(text_embeddings, dtype=np.float64)
    if img.shape != txt.shape or img.ndim != 2:
        raise ValueError(
            f"clip_scores needs paired (n, d) embeddings; got {img.shape}, {txt.shape}"
        )
    cos = np.einsum("nd,nd->n", img, txt) / (
        np.linalg.norm(img, axis=1) * np.linalg.norm(txt, axis=1)
    )
    return 100.0 * np.maximum(cos, 0.0)


@register_metric
class ClipScore(EncoderMetric):
    name: ClassVar[str] = "clip"
    version: ClassVar[str] = "vit-l-14-openai.1"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "CLIP score: 100 * max(cos(image, text), 0) with open_clip ViT-L/14 (OpenAI weights)"
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (VITL14_OPENAI,)

    @classmethod
    def load(cls, request: LoadRequest) -> ClipScore:
        """Load (or reuse from ``shared``) the ViT-L/14 encoder; ``weights``: its checkpoint."""
        return cls(load_shared_encoder(cls.name, request))

    def score_features(self, features, prompts: Sequence[str] | None = None) -> np.ndarray:
        self.check_prompts(features, prompts)
        text = self.encoder.encode_texts(list(prompts))
        return clip_scores(features.cpu().numpy(), text.cpu().numpy())
