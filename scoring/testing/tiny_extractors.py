"""Randomly initialised stand-ins for the feature extractors' weights (tests, benchmarks).

Nothing is downloaded. Each writer saves its model in the real file format so that it
loads through the real loading code in ``scoring/distribution/features.py``:

* Inception-v3: torch-fidelity's own ``FeatureExtractorInceptionV3`` architecture (the
  full network: its size is fixed by the class), random weights, saved as the plain
  ``state_dict`` file torch-fidelity publishes.
* CLIP ViT-L/14@336: open_clip's ``CLIP`` at 336 px with patch 14 but a narrow, shallow
  tower, saved as ``open_clip_pytorch_model.bin`` + ``open_clip_config.json`` (the hub
  repo layout).
* DINOv2: a transformers ``Dinov2Model`` with patch 14 and tiny widths, saved with
  ``save_pretrained`` (``config.json`` + ``model.safetensors``, the hub folder layout).
* LPIPS (div-lpips): torchvision's AlexNet ``features`` with random weights, saved as
  the ``features.*`` tensors of torchvision's state dict (the only ones the loader
  reads; the real file adds the classifier, 58M weights), and random non-negative
  lpips v0.1 lin layers (``lin{k}.model.1.weight``, as the package's ``alex.pth``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from scoring import _compat  # noqa: F401  (before torchvision-importing libraries)
from scoring.distribution.features import CLIP_L14_336, DINOV2_LARGE, INCEPTION
from scoring.distribution.lpips_div import ALEXNET, CHANNELS, LPIPS_LIN

TINY_CLIP336_CFG = {
    "embed_dim": 64,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 336, "layers": 1, "width": 32, "patch_size": 14, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TINY_DINO_CFG = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "mlp_ratio": 2,
    "patch_size": 14,
    "image_size": 224,
}


def write_tiny_inception(folder: Path, seed: int = 0) -> Path:
    """torch-fidelity's Inception-v3 with random weights, as ``folder/<the real file name>``."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        # The class always loads a state dict at the end of __init__; an empty one is
        # skipped here so that the freshly initialised layers are kept.
        def load_state_dict(self, state_dict, strict=True, assign=False):
            if state_dict:
                return super().load_state_dict(state_dict, strict=strict, assign=assign)
            return None

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory() as tmp:
        empty = Path(tmp) / "empty.pth"
        torch.save({}, empty)
        model = _Unloaded("tiny", ["2048"], feature_extractor_weights_path=str(empty))
    # Calibrate the batch norms on random images (cumulative batch statistics), so that
    # the random network's pool features are O(1) rather than vanishing.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    with torch.no_grad():
        pixels = torch.rand(4, 3, 299, 299, generator=torch.Generator().manual_seed(seed))
        model((pixels * 255).to(torch.uint8))
    model.eval()
    path = folder / INCEPTION.filename
    torch.save(model.state_dict(), path)
    return path


def write_tiny_clip336(folder: Path, seed: int = 0) -> Path:
    """A tiny open_clip ViT-L-14-336 look-alike: checkpoint + open_clip_config.json."""
    from scoring.testing.tiny_clip import write_tiny_clip

    return write_tiny_clip(folder, seed, TINY_CLIP336_CFG, CLIP_L14_336.filename)


def write_tiny_dinov2(folder: Path, seed: int = 0, **overrides) -> Path:
    """A tiny transformers Dinov2Model saved with ``save_pretrained``; returns the folder."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    model = Dinov2Model(Dinov2Config(**{**TINY_DINO_CFG, **overrides})).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    assert (folder / DINOV2_LARGE.filename).is_file()
    return folder


def write_tiny_lpips(root: Path, seed: int = 0) -> Path:
    """Random AlexNet features + random lpips lin layers under ``root`` in the weights
    folder layout (``<repo_id>/<file>``); returns ``root`` (``--weights div-lpips=ROOT``)."""
    import torch
    from torchvision.models import alexnet

    torch.manual_seed(seed)
    with torch.device("meta"):  # the classifier is not needed (nor written)
        features = alexnet().features
    features = features.to_empty(device="cpu")
    for layer in features:
        if isinstance(layer, torch.nn.Conv2d):
            layer.reset_parameters()
    trunk = root / ALEXNET.repo_id / ALEXNET.filename
    trunk.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, trunk)
    lin = root / LPIPS_LIN.repo_id / LPIPS_LIN.subfolder / LPIPS_LIN.filename
    lin.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    lins = {
        f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator) / c
        for k, c in enumerate(CHANNELS)
    }
    torch.save(lins, lin)
    return root


def write_all(root: Path, seed: int = 0) -> dict[str, Path]:
    """All four under ``root`` in the ``$ARENA_WEIGHTS_DIR/<repo_id>/<file>`` layout."""
    return {
        "inception": write_tiny_inception(root / INCEPTION.repo_id, seed),
        "cmmd": write_tiny_clip336(root / CLIP_L14_336.repo_id, seed),
        "fd-dino": write_tiny_dinov2(root / DINOV2_LARGE.repo_id, seed),
        "div-lpips": write_tiny_lpips(root, seed),
    }
