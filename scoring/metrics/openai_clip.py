"""The OpenAI CLIP ViT-L/14 encoder shared by CLIP score and the LAION aesthetic predictor.

Weights: open_clip's ``ViT-L-14`` ``openai`` checkpoint, the plain state dict
``open_clip_pytorch_model.bin`` of the hub repo ``timm/vit_large_patch14_clip_224.openai``
(what ``open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai")``
downloads). It is loaded with ``create_model_and_transforms("ViT-L-14",
pretrained=<local path>, force_quick_gelu=True)``: the OpenAI weights were trained
with QuickGELU, which the built-in ``ViT-L-14`` config does not set, and a local path
(unlike the ``openai`` tag) does not switch it on by itself.

When an ``open_clip_config.json`` lies beside the checkpoint (the hub repo ships one;
open_clip's ``local-dir:`` layout), its ``model_cfg`` and ``preprocess_cfg`` are used,
so a folder holding a differently sized model of the same family loads too (tests and
benchmarks use tiny ones). QuickGELU stays forced either way.

Preprocessing is open_clip's evaluation transform for that config: resize the shortest
side to 224 (bicubic), centre crop 224x224, RGB, to tensor, OpenAI mean/std -- the
preprocessing of OpenAI's own ``clip.load``. Embeddings are L2-normalised in float32.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before open_clip imports torchvision)
from scoring.metrics.base import LoadRequest, Metric, WeightFile
from scoring.weights import resolve

if TYPE_CHECKING:
    import torch

ARCH = "ViT-L-14"
VITL14_OPENAI = WeightFile("timm/vit_large_patch14_clip_224.openai", "open_clip_pytorch_model.bin")
CONFIG_NAME = "open_clip_config.json"
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def parse_dtype(device: str, dtype: Any = None) -> torch.dtype:
    """The compute dtype: fp16 by default on CUDA, fp32 on CPU (the only CPU choice)."""
    import torch

    if dtype is None:
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}.")
        dtype = getattr(torch, _DTYPES[dtype])
    if dtype != torch.float32 and not str(device).startswith("cuda"):
        raise ValueError(
            f"dtype {dtype} needs a CUDA device; on {device} scoring runs in fp32 "
            "(pass --dtype fp32 or --device cuda)."
        )
    return dtype


def autocast(device: str, dtype: torch.dtype):
    """fp16/bf16 autocast on CUDA; a no-op context in fp32."""
    import torch

    if str(device).startswith("cuda") and dtype != torch.float32:
        return torch.autocast("cuda", dtype=dtype)
    return nullcontext()


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm; an all-zero row stays zero (as the LAION reference)."""
    norm = x.norm(dim=-1, keepdim=True)
    return x / norm.where(norm > 0, norm.new_ones(()))


def read_local_config(checkpoint: Path) -> dict[str, Any] | None:
    """The ``open_clip_config.json`` beside a checkpoint file, if there is one."""
    path = checkpoint.parent / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        model_cfg = config["model_cfg"]
        if not all(isinstance(model_cfg[k], dict) for k in ("vision_cfg", "text_cfg")):
            raise TypeError("vision_cfg/text_cfg are not objects")
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"{path}: not an open_clip config (expected JSON with model_cfg.vision_cfg and "
            f"model_cfg.text_cfg; {exc}). Remove it or replace it with the hub repo's file."
        ) from None
    return config


class ClipEncoder:
    """A loaded CLIP model with its preprocessing, tokenizer and a per-prompt text cache."""

    def __init__(self, model, preprocess, tokenizer, device: str, dtype, key: str):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        self.key = key
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def load(
        cls,
        checkpoint: Path,
        device: str = "cpu",
        dtype: Any = None,
        model_overrides: dict[str, Any] | None = None,
    ) -> ClipEncoder:
        import open_clip

        compute_dtype = parse_dtype(device, dtype)
        overrides: dict[str, Any] = {}
        image_kwargs: dict[str, Any] = {}
        config = read_local_config(checkpoint)
        if config is not None:
            model_cfg = config["model_cfg"]
            overrides = {k: model_cfg[k] for k in ("embed_dim", "vision_cfg", "text_cfg")}
            pre = config.get("preprocess_cfg") or {}
            for key in ("mean", "std", "interpolation", "resize_mode"):
                if key in pre:
                    image_kwargs[f"image_{key}"] = pre[key]
        overrides.update(model_overrides or {})
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                ARCH,
                pretrained=str(checkpoint),
                force_quick_gelu=True,
                **image_kwargs,
                **overrides,
            )
        except RuntimeError as exc:
            raise ValueError(
                f"{checkpoint}: does not load into open_clip {ARCH} "
                f"({str(exc).splitlines()[0][:300]}). Expected {VITL14_OPENAI.filename} from "
                f"the hub repo {VITL14_OPENAI.repo_id}."
            ) from None
        model = model.to(device).eval()
        tokenizer = open_clip.get_tokenizer(ARCH, context_length=model.context_length)
        key = f"{ARCH}-openai|{checkpoint.resolve()}|{device}|{compute_dtype}"
        return cls(model, preprocess, tokenizer, device, compute_dtype, key)

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) preprocessed pixels -> (n, d) L2-normalised float32 embeddings."""
        import torch

        with torch.inference_mode(), autocast(self.device, self.dtype):
            features = self.model.encode_image(pixels.to(self.device, non_blocking=True))
        return l2_normalise(features.float())

    def encode_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """(n, d) L2-normalised float32 text embeddings; each distinct prompt encoded once."""
        import torch

        new = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        if new:
            tokens = self.tokenizer(new).to(self.device)
            with torch.inference_mode(), autocast(self.device, self.dtype):
                features = l2_normalise(self.model.encode_text(tokens).float())
            self._text_cache.update(zip(new, features, strict=True))
        return torch.stack([self._text_cache[p] for p in prompts])


def load_shared_encoder(metric: str, request: LoadRequest) -> ClipEncoder:
    """Resolve the ViT-L/14 checkpoint for ``metric`` (``request.weights``) and load it
    once per ``request.shared`` dict."""
    device, dtype, shared = request.device, request.dtype, request.shared
    model_overrides = request.model_overrides
    path = resolve(metric, VITL14_OPENAI, request.weights, request.sources)
    key = f"{ARCH}-openai|{path.resolve()}|{device}|{parse_dtype(device, dtype)}"
    if model_overrides:
        key += "|" + json.dumps(model_overrides, sort_keys=True)
    if shared is not None and key in shared:
        return shared[key]
    encoder = ClipEncoder.load(path, device=device, dtype=dtype, model_overrides=model_overrides)
    encoder.key = key
    if shared is not None:
        shared[key] = encoder
    return encoder


class EncoderMetric(Metric):
    """A metric scored from the shared ViT-L/14 image embedding (CLIP score, aesthetic,
    CLIP-IQA): one encoder, one preprocessing and one image pass per image for all of
    them in the job. Subclasses write ``load`` and ``score_features``."""

    def __init__(self, encoder: ClipEncoder):
        self.encoder = encoder
        self.device = encoder.device
        self.feature_key = encoder.key

    def preprocessor(self) -> Callable[[PILImage.Image], Any]:
        return self.encoder.preprocess

    def features(self, inputs):
        return self.encoder.encode_images(inputs)

    def score_inputs(self, inputs, prompts: Sequence[str] | None = None) -> np.ndarray:
        self.check_prompts(inputs, prompts)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        return self.score_features(self.features(inputs), prompts)
