"""Tiny, randomly initialised stand-ins for the ViT-L/14 CLIP and aesthetic weights.

For tests and benchmarks; nothing is downloaded. The CLIP model is open_clip's
``ViT-L-14`` architecture family (a ViT image tower, a 12-head-style text transformer
with the real 49,408-token vocabulary and 77-token context, QuickGELU) with tiny widths
and depths but the real 768-wide embedding, so the real aesthetic MLP shape fits on top.
Files are written exactly as the real ones are shipped: the hub repo layout
``open_clip_pytorch_model.bin`` (a plain state dict) + ``open_clip_config.json``, and the
aesthetic ``.pth`` state dict with the reference's keys.
"""

from __future__ import annotations

import json
from pathlib import Path

from scoring import _compat  # noqa: F401  (before open_clip imports torchvision)
from scoring.metrics.aesthetic import AESTHETIC_MLP, build_mlp
from scoring.metrics.openai_clip import CONFIG_NAME, VITL14_OPENAI

TINY_MODEL_CFG = {
    "embed_dim": 768,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def write_tiny_clip(
    folder: Path,
    seed: int = 0,
    model_cfg: dict | None = None,
    filename: str = VITL14_OPENAI.filename,
) -> Path:
    """Save a random tiny CLIP as ``folder/<filename>`` (default
    ``open_clip_pytorch_model.bin``) + ``open_clip_config.json``; returns the checkpoint path."""
    import open_clip
    import torch

    cfg = model_cfg or TINY_MODEL_CFG
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = open_clip.CLIP(**cfg)
    # Random, not open_clip's near-constant init: make every weight matter in the tests.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    path = folder / filename
    torch.save(model.state_dict(), path)
    config = {
        "model_cfg": cfg,
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
        },
    }
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2), encoding="utf-8")
    return path


def write_tiny_aesthetic(folder: Path, seed: int = 0) -> Path:
    """Save a random predictor state dict (real shapes and keys) as the real file name."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    mlp = build_mlp()
    path = folder / AESTHETIC_MLP.filename
    torch.save(mlp.state_dict(), path)
    return path
