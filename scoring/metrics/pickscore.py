"""PickScore (Kirstain et al. 2023): CLIP-H fine-tuned on Pick-a-Pic preferences.

What is computed, exactly (facts from the reference README of yuvalkirstain/PickScore):

* Model: transformers ``CLIPModel`` from the hub repo ``yuvalkirstain/PickScore_v1``
  (a folder: ``config.json`` + ``model.safetensors`` or ``pytorch_model.bin``).
* Processor: the one of ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (a folder:
  ``preprocessor_config.json`` + tokenizer files), used through the PIL image
  processor (``use_fast=False``; ``backend="pil"`` on transformers 5): convert to
  RGB, resize the shortest side to 224 (bicubic), centre-crop 224×224, scale to
  [0, 1], OpenAI CLIP mean/std. Text is padded and truncated to 77 tokens.
* Score: ``logit_scale.exp() · cos(image, text)`` with the model's learned
  ``logit_scale`` (exp ≈ 100), i.e. the diagonal of ``logits_per_image``; stored
  as is (typically 18–23). Softmax over two images of one prompt gives the
  reference's preference probability; the arena compares raw scores.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.metrics.base import LoadRequest, Metric, PromptCache, WeightFile, register_metric
from scoring.metrics.openai_clip import autocast, parse_dtype
from scoring.weights import MissingWeightsError, WeightSources, resolve

MAX_TOKENS = 77
MODEL_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def pickscore_scores(
    image_embeddings: np.ndarray, text_embeddings: np.ndarray, logit_scale: float
) -> np.ndarray:
    """``exp(logit_scale) · cos`` of paired (n, d) embeddings, as float64.

    ``logit_scale`` is the model's stored parameter (a log); its exp multiplies the cosine.
    """
    img = np.asarray(image_embeddings, dtype=np.float64)
    txt = np.asarray(text_embeddings, dtype=np.float64)
    if img.shape != txt.shape or img.ndim != 2:
        raise ValueError(
            f"pickscore_scores needs paired (n, d) embeddings; got {img.shape} and {txt.shape}"
        )
    img = img / np.linalg.norm(img, axis=1, keepdims=True)
    txt = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    return float(np.exp(logit_scale)) * np.einsum("nd,nd->n", img, txt)


def load_image_processor(folder: Path) -> Any:
    """The PIL ("slow") CLIP image processor of ``folder``, on transformers 4 and 5 alike."""
    import transformers
    from transformers import AutoImageProcessor

    major = int(transformers.__version__.split(".")[0])
    choice = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    return AutoImageProcessor.from_pretrained(folder, local_files_only=True, **choice)


def pixel_values(image_processor: Any, image: PILImage.Image) -> Any:
    """One image -> its (3, 224, 224) float32 pixel tensor through the PIL CLIP processor."""
    return image_processor(images=[image], return_tensors="pt")["pixel_values"][0]


def _features(output: Any) -> Any:
    """``get_*_features`` returns a tensor on transformers 4 and a model output on 5."""
    return output if hasattr(output, "shape") else output.pooler_output


@register_metric
class PickScore(Metric):
    name: ClassVar[str] = "pickscore"
    version: ClassVar[str] = "v1"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "PickScore_v1: logit_scale.exp() * cos(image, text) of a CLIP-H fine-tuned on "
        "Pick-a-Pic; LAION CLIP-H processor (shortest side 224, centre crop)."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (
        WeightFile("yuvalkirstain/PickScore_v1", "config.json", is_folder=True),
        WeightFile(
            "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "preprocessor_config.json", is_folder=True
        ),
    )

    def __init__(
        self,
        model: Any,
        image_processor: Any,
        tokenizer: Any,
        device: str = "cpu",
        dtype: Any = None,
    ):
        self.model = model
        self.image_processor = image_processor
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = parse_dtype(device, dtype)  # the compute dtype under autocast
        self.prompt_cache = PromptCache(self.embed_prompts)
        # The learned temperature (a log), read once in float32.
        self.logit_scale = float(model.logit_scale.detach().float().cpu())

    @classmethod
    def resolve_folders(
        cls,
        weights: str | Path | None = None,
        processor: str | Path | None = None,
        sources: WeightSources | None = None,
    ) -> tuple[Path, Path]:
        """(model folder, processor folder).

        ``weights`` is the PickScore folder itself or a folder holding
        ``yuvalkirstain/PickScore_v1`` (and, optionally, the LAION processor under
        ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``). The processor comes from
        ``processor`` when given, else from that nested folder, else the weights
        folder / Hugging Face cache — never from the PickScore folder itself, so
        the reference's processor is the one used.
        """
        model_spec, proc_spec = cls.weight_files
        model_dir = resolve(cls.name, model_spec, weights, sources)
        if not any((model_dir / name).is_file() for name in MODEL_WEIGHT_NAMES):
            raise MissingWeightsError(
                f"metric 'pickscore': the model folder {model_dir} has config.json but no "
                f"weights ({' or '.join(MODEL_WEIGHT_NAMES)}). Download the whole folder: "
                f"huggingface-cli download {model_spec.repo_id}"
            )
        if processor is not None:
            return model_dir, resolve(cls.name, proc_spec, processor, sources)
        nested = Path(weights).expanduser() / proc_spec.repo_id if weights is not None else None
        if nested is not None and (nested / proc_spec.filename).is_file():
            return model_dir, nested
        return model_dir, resolve(cls.name, proc_spec, None, sources)

    @classmethod
    def load(cls, request: LoadRequest) -> PickScore:
        """Load the CLIP model and its processor (``processor``: a separate folder for it)."""
        from transformers import AutoTokenizer, CLIPModel

        from scoring.devices import fp32_weights

        model_dir, proc_dir = cls.resolve_folders(
            request.weights, request.processor, request.sources
        )
        try:
            model = CLIPModel.from_pretrained(model_dir, local_files_only=True, **fp32_weights())
            tokenizer = AutoTokenizer.from_pretrained(proc_dir, local_files_only=True)
            image_processor = load_image_processor(proc_dir)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"metric 'pickscore': could not load the model from {model_dir} or the "
                f"processor from {proc_dir}: {str(exc).splitlines()[0]}"
            ) from None
        # Weights stay fp32; fp16/bf16 on CUDA runs under autocast.
        model = model.to(request.device).eval()
        return cls(model, image_processor, tokenizer, request.device, request.dtype)

    def preprocessor(self) -> Callable[[PILImage.Image], Any]:
        """Runs in the job's DataLoader workers: image -> (3, 224, 224) pixel tensor."""
        return functools.partial(pixel_values, self.image_processor)

    def embed_images(self, pixels: Any) -> np.ndarray:
        """(n, d) float32 projected image embeddings (unnormalised) of a preprocessed batch."""
        import torch

        pixels = pixels.to(device=self.device, dtype=torch.float32)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model.get_image_features(pixel_values=pixels)
        return _features(out).float().cpu().numpy()

    def embed_prompts(self, prompts: Sequence[str]) -> np.ndarray:
        """(n, d) float32 projected text embeddings (unnormalised), 77 tokens at most."""
        import torch

        tokens = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=MAX_TOKENS,
            return_tensors="pt",
        ).to(self.device)
        with torch.inference_mode(), autocast(self.device, self.dtype):
            out = self.model.get_text_features(**tokens)
        return _features(out).float().cpu().numpy()

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        """Scores of a preprocessed (n, 3, 224, 224) batch (see ``preprocessor``)."""
        self.check_prompts(inputs, prompts)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        return pickscore_scores(
            self.embed_images(inputs), self.prompt_cache(prompts), self.logit_scale
        )
