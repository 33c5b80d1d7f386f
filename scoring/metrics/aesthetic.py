"""LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor).

An MLP 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with no activations (the "linearMSE"
variant: the ReLUs of the reference class are commented out; dropout 0.2, 0.2, 0.1
after the first three layers, inactive at inference) on the **L2-normalised** OpenAI
CLIP ViT-L/14 image embedding (an all-zero embedding is left as is, as the reference's
``normalized`` does). The state dict is the reference's ``nn.Sequential`` named
``layers``: keys ``layers.{0,2,4,6,7}.{weight,bias}``; it is loaded strictly.
Scores are on the AVA-like 1-10 scale (most images fall in 4-7).

Weights: ``sac+logos+ava1-l14-linearMSE.pth`` (a plain state dict), mirrored on the hub
in ``camenduru/improved-aesthetic-predictor``; plus the ViT-L/14 checkpoint of CLIP score
(``encoder_weights``, or ``--weights clip=...`` on the command line).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from scoring.metrics.base import LoadRequest, WeightFile, register_metric
from scoring.metrics.openai_clip import (
    VITL14_OPENAI,
    ClipEncoder,
    EncoderMetric,
    load_shared_encoder,
)
from scoring.weights import resolve

if TYPE_CHECKING:
    import torch

AESTHETIC_MLP = WeightFile(
    "camenduru/improved-aesthetic-predictor", "sac+logos+ava1-l14-linearMSE.pth"
)
# (in, out) of the Linear layers and the Sequential index of each (dropouts in between).
LAYERS = ((0, 768, 1024), (2, 1024, 128), (4, 128, 64), (6, 64, 16), (7, 16, 1))
DROPOUTS = ((1, 0.2), (3, 0.2), (5, 0.1))


def build_mlp() -> torch.nn.Module:
    """The reference architecture: a module with ``layers = nn.Sequential(...)``."""
    from torch import nn

    class AestheticMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            items: dict[int, nn.Module] = {i: nn.Linear(a, b) for i, a, b in LAYERS}
            items.update({i: nn.Dropout(p) for i, p in DROPOUTS})
            self.layers = nn.Sequential(*(items[i] for i in sorted(items)))

        def forward(self, x):
            return self.layers(x)

    return AestheticMLP()


def aesthetic_from_embeddings(embeddings: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """The predictor as plain matrix algebra over numpy arrays (float64): pure reference."""
    x = np.asarray(embeddings, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norm == 0, 1.0, norm)
    for i, _a, _b in LAYERS:
        x = x @ np.asarray(state[f"layers.{i}.weight"], np.float64).T + state[f"layers.{i}.bias"]
    return x[:, 0]


def load_mlp(path: Path, device: str = "cpu") -> torch.nn.Module:
    """Load the predictor's state dict strictly, with a clear error for any other file."""
    import pickle

    import torch

    problem = None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as exc:
        state, problem = None, f"not a readable torch file ({str(exc).splitlines()[0][:200]})"
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # saved from a Lightning checkpoint
    mlp = build_mlp()
    if problem is None:
        try:
            mlp.load_state_dict(state, strict=True)
        except (RuntimeError, TypeError, AttributeError) as exc:
            problem = f"not the predictor's state dict ({str(exc).splitlines()[0][:200]})"
    if problem is not None:
        raise ValueError(
            f"metric 'aesthetic': {path} is {problem}. Expected {AESTHETIC_MLP.filename} "
            f"(keys layers.0/2/4/6/7 .weight/.bias) from {AESTHETIC_MLP.repo_id}."
        )
    return mlp.to(device).eval()


@register_metric
class Aesthetic(EncoderMetric):
    name: ClassVar[str] = "aesthetic"
    version: ClassVar[str] = "sac-logos-ava1-l14-linearmse.1"
    needs_prompt: ClassVar[bool] = False
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "LAION improved aesthetic predictor (sac+logos+ava1 linear MLP) on the normalised "
        "OpenAI ViT-L/14 image embedding; ~1-10"
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (AESTHETIC_MLP, VITL14_OPENAI)

    def __init__(self, mlp: torch.nn.Module, encoder: ClipEncoder):
        super().__init__(encoder)
        self.mlp = mlp

    @classmethod
    def load(cls, request: LoadRequest) -> Aesthetic:
        """``weights``: the MLP file (or a folder holding both files); ``encoder_weights``:
        the ViT-L/14 checkpoint (default: ``weights`` when it is a folder, else the usual
        search); ``shared`` lets CLIP score and this metric use one loaded encoder."""
        weights = request.weights
        mlp_path = resolve(cls.name, AESTHETIC_MLP, weights, request.sources)
        encoder_weights = request.encoder_weights
        if encoder_weights is None and weights is not None and Path(weights).is_dir():
            encoder_weights = weights
        encoder = load_shared_encoder(cls.name, replace(request, weights=encoder_weights))
        return cls(load_mlp(mlp_path, request.device), encoder)

    def score_features(self, features, prompts: Sequence[str] | None = None) -> np.ndarray:
        import torch

        device_type = str(self.device).split(":", 1)[0]
        # The reference runs the MLP in fp32. The scoring job's fp16/bf16 autocast would
        # still make its Linear layers half precision (`.to(float32)` does not escape
        # autocast), so it is switched off here: the job and a direct score() agree.
        with torch.inference_mode(), torch.autocast(device_type, enabled=False):
            # The embeddings arrive normalised (scoring.metrics.openai_clip.l2_normalise).
            out = self.mlp(features.to(self.device, torch.float32))
        return out[:, 0].double().cpu().numpy()
