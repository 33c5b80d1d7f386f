"""HPSv2.1: Human Preference Score v2.1 (Wu et al. 2023), open_clip ViT-H-14 fine-tuned.

What is computed, exactly (facts from the reference ``hpsv2`` package):

* Weights: ``HPS_v2.1_compressed.pt`` from the hub repo ``xswu/HPSv2``; a torch
  checkpoint dict whose ``state_dict`` key holds the full open_clip ``ViT-H-14``
  CLIP state dict. It is loaded strictly (every key, nothing extra).
* Image preprocessing is *not* CLIP's resize-and-centre-crop: the image is
  converted to RGB, turned into a float tensor in [0, 1], resized (bicubic,
  ``antialias=True`` given explicitly) so that its longest side is 224 (new size
  ``round(side * 224 / longest)``), padded centred with zeros to 224×224 (left/top
  get ``pad // 2``), then normalised with the OpenAI CLIP mean/std. So a whole
  non-square image is seen, with black bars.
* Text: the open_clip ``ViT-H-14`` tokenizer (77 tokens, truncated keeping EOT).
* Score: the cosine similarity of the L2-normalised image and text embeddings,
  stored raw (typically 0.2–0.35). Tables that quote HPSv2 "×100" multiply it
  by 100 for display only.

Two small departures from the reference code, both where it would crash or
depend on an unpinned library: the reference skips the pad when the image's
longest side is already 224 (a 224×112 image would reach the model non-square);
here the pad always runs, which is identical for every image the reference can
score. And the reference leaves ``antialias`` to torchvision's default, which
became ``True`` in torchvision 0.17 (HPSv2.1's release era); here it is explicit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before open_clip imports torchvision)
from scoring.metrics.base import LoadRequest, Metric, PromptCache, WeightFile, register_metric
from scoring.metrics.openai_clip import autocast, parse_dtype
from scoring.weights import read_torch_file, resolve

if TYPE_CHECKING:
    import torch

ARCH = "ViT-H-14"
IMAGE_SIZE = 224
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
ANTIALIAS = True


def resize_longest_and_pad(pixels: torch.Tensor, size: int = IMAGE_SIZE) -> torch.Tensor:
    """(3, H, W) float tensor -> (3, size, size): longest side to ``size`` (bicubic), zero pad.

    The resized side lengths are ``round(side * size / longest)``; the pad is split
    with ``pad // 2`` on the left/top and the rest on the right/bottom.
    """
    import torch.nn.functional as F

    _, height, width = pixels.shape
    scale = size / float(max(height, width))
    if scale != 1.0:
        new_hw = (round(height * scale), round(width * scale))
        pixels = F.interpolate(
            pixels.unsqueeze(0),
            size=new_hw,
            mode="bicubic",
            align_corners=False,
            antialias=ANTIALIAS,
        ).squeeze(0)
    _, height, width = pixels.shape
    pad_h, pad_w = size - height, size - width
    return F.pad(
        pixels, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=0.0
    )


def preprocess(image: PILImage.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One PIL image -> the normalised (3, size, size) float32 tensor HPSv2 sees."""
    import torch

    rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    pixels = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
    pixels = resize_longest_and_pad(pixels, size)
    mean = torch.tensor(OPENAI_MEAN, dtype=pixels.dtype).view(3, 1, 1)
    std = torch.tensor(OPENAI_STD, dtype=pixels.dtype).view(3, 1, 1)
    return (pixels - mean) / std


def hps_scores(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Row-wise cosine of paired (n, d) image and text embeddings, as float64 (the HPSv2 score)."""
    img = np.asarray(image_embeddings, dtype=np.float64)
    txt = np.asarray(text_embeddings, dtype=np.float64)
    if img.shape != txt.shape or img.ndim != 2:
        raise ValueError(
            f"hps_scores needs paired (n, d) embeddings; got {img.shape} and {txt.shape}"
        )
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    return np.einsum("nd,nd->n", img, txt)


def load_state_dict(path: Path) -> dict[str, Any]:
    """The ``state_dict`` of an HPSv2 checkpoint file, with a clear error for anything else."""
    checkpoint = read_torch_file(
        "hpsv2", path, "Expected HPS_v2.1_compressed.pt from the hub repo xswu/HPSv2."
    )
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise ValueError(
            f"metric 'hpsv2': {path} has no 'state_dict' key (found {keys}). "
            "Expected HPS_v2.1_compressed.pt from the hub repo xswu/HPSv2."
        )
    state = checkpoint["state_dict"]
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


@register_metric
class HPSv2(Metric):
    name: ClassVar[str] = "hpsv2"
    version: ClassVar[str] = "v2.1"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "HPSv2.1 human preference score: cos(image, text) of open_clip ViT-H-14 fine-tuned "
        "on HPDv2; image padded to square, not cropped (stored raw, ×100 in tables)."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (
        WeightFile("xswu/HPSv2", "HPS_v2.1_compressed.pt"),
    )

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", dtype: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = parse_dtype(device, dtype)  # the compute dtype under autocast
        self.prompt_cache = PromptCache(self.embed_prompts)

    @classmethod
    def load(cls, request: LoadRequest) -> HPSv2:
        """Build open_clip ``ViT-H-14`` and load the HPSv2.1 checkpoint strictly.

        ``model_overrides`` passes config overrides to ``open_clip.create_model``
        (tests build a narrow, shallow ViT-H-14 this way; real use leaves it None).
        """
        import open_clip

        path = resolve(cls.name, cls.weight_files[0], request.weights, request.sources)
        state = load_state_dict(path)
        model = open_clip.create_model(ARCH, pretrained=None, **(request.model_overrides or {}))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"metric 'hpsv2': {path} does not match the open_clip {ARCH} architecture "
                f"(strict load failed: {str(exc).splitlines()[0]} ...). Expected "
                "HPS_v2.1_compressed.pt from the hub repo xswu/HPSv2."
            ) from None
        # Weights stay fp32; fp16/bf16 on CUDA runs under autocast (the reference's "amp").
        model = model.to(request.device).eval()
        return cls(model, open_clip.get_tokenizer(ARCH), request.device, request.dtype)

    def preprocessor(self) -> Callable[[PILImage.Image], torch.Tensor]:
        """Runs in the job's DataLoader workers: image -> padded, normalised (3, 224, 224)."""
        return preprocess

    def embed_images(self, pixels: torch.Tensor) -> np.ndarray:
        """(n, d) float32 image embeddings (unnormalised) of a preprocessed batch."""
        import torch

        pixels = pixels.to(device=self.device, dtype=torch.float32)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            features = self.model.encode_image(pixels)
        return features.float().cpu().numpy()

    def embed_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 text embeddings (unnormalised) of the tokenised prompts."""
        import torch

        tokens = self.tokenizer(list(prompts)).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            features = self.model.encode_text(tokens)
        return features.float().cpu().numpy()

    def score_inputs(
        self, inputs: torch.Tensor, prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Scores of a preprocessed (n, 3, 224, 224) batch (see ``preprocessor``)."""
        self.check_prompts(inputs, prompts)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        return hps_scores(self.embed_images(inputs), self.prompt_cache(prompts))
