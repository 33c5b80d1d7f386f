"""Generative vision-language models loaded with transformers, for the metrics that ask them.

One loader for every VLM family transformers runs as an image-text-to-text model
(``AutoModelForImageTextToText`` + ``AutoProcessor``, the model's own chat template):
VQAScore (``scoring/metrics/vqascore.py``) asks it a yes/no question per image; the
pairwise AI judge (issue 21) asks it about two images. What it does, and why:

* The processor is the folder's, except that the metrics' image processor uses the PIL
  backend: transformers 5 defaults to torchvision resizing, whose bicubic differs from
  PIL's, and the reference implementations (transformers 4.x) resize with PIL. The judge,
  which has no reference to match, keeps transformers' default (faster on batches).
* Weights load in fp32 on the CPU and in the compute dtype (fp16/bf16) on CUDA: a 7B
  model in fp32 is 30 GB, and these models are published in bf16.
* Batches are left-padded, so every row's next token is predicted at the last position;
  the attention mask keeps padding out (Qwen2-VL's 3-D positions are built from it).
* ``next_token`` runs ``generate`` for one greedy step, as t2v-metrics does: its
  ``scores`` are the logits after the checkpoint's ``generation_config.json`` processors
  (a repetition penalty, where set, lowers tokens of the prompt; sampling settings are
  ignored, decoding is greedy), its ``logits`` the model's raw ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.weights import MissingWeightsError

MODEL_WEIGHT_NAMES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def load_processor(folder: Path, padding_side: str, backend: str = "pil") -> Any:
    """The folder's processor, its image processor on ``backend`` (PIL unless the caller
    resizes the images itself), ``padding_side`` set; one clear error when a file is
    missing or unreadable, or there is no chat template."""
    from transformers import AutoImageProcessor, AutoProcessor

    try:
        image_processor = AutoImageProcessor.from_pretrained(
            folder, local_files_only=True, backend=backend
        )
        processor = AutoProcessor.from_pretrained(
            folder, local_files_only=True, image_processor=image_processor
        )
    except (OSError, ValueError, TypeError, KeyError, ImportError) as exc:
        raise MissingWeightsError(
            f"could not load the processor (tokenizer, chat template, image processor) from "
            f"{folder}: {str(exc).splitlines()[0]}. The folder needs config.json, "
            "preprocessor_config.json, the tokenizer files (tokenizer.json, "
            "tokenizer_config.json) and a chat template (chat_template.json or "
            "chat_template.jinja, or in tokenizer_config.json)."
        ) from None
    if not getattr(processor, "chat_template", None):
        raise MissingWeightsError(
            f"the processor of {folder} has no chat template (chat_template.json, "
            "chat_template.jinja or tokenizer_config.json's chat_template): use an "
            "instruction-tuned (chat) model's folder."
        )
    processor.tokenizer.padding_side = padding_side
    return processor


def check_model_folder(folder: Path, metric: str) -> Path:
    """``folder`` if it holds weights besides its config, else a MissingWeightsError."""
    if any((folder / name).is_file() for name in MODEL_WEIGHT_NAMES):
        return folder
    raise MissingWeightsError(
        f"metric {metric!r}: the model folder {folder} has config.json but no weights "
        f"({', '.join(MODEL_WEIGHT_NAMES)}). Download the whole folder: "
        f"huggingface-cli download <repo id> --local-dir {folder}"
    )


def model_name(folder: Path) -> str:
    """A name for the model of ``folder``, for metric versions: the hub repo id of a Hugging
    Face cache snapshot (``models--Org--Name/snapshots/<hash>``), else ``Org/Name`` of a
    weights-folder layout, else the folder's own name."""
    parts = folder.resolve().parts
    for part in reversed(parts):
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/")
    return "/".join(parts[-2:]) if len(parts) >= 2 else folder.name


@dataclass
class NextToken:
    """One greedy step of ``generate``: (n, vocabulary) float32 tensors on the CPU."""

    scores: Any  # after the generation config's logits processors (what t2v-metrics reads)
    logits: Any  # the model's raw logits


class VisionLanguageModel:
    """A loaded VLM and its processor, asked about images in chat form."""

    def __init__(self, model: Any, processor: Any, device: str, name: str):
        self.model = model
        self.processor = processor
        self.device = device
        self.name = name

    @classmethod
    def load(
        cls,
        folder: Path,
        device: str = "cpu",
        dtype: Any = None,
        metric: str = "vlm",
        backend: str = "pil",
    ):
        """``AutoModelForImageTextToText`` + the processor of ``folder``; fp32 weights on the
        CPU, the compute dtype (``parse_dtype``) on CUDA; eval mode. ``backend``: the image
        processor's (``pil`` as the metrics' references; ``torchvision``, transformers 5's
        default, for the judge: several times faster on batches of display renditions)."""
        import torch
        from transformers import AutoConfig, AutoModelForImageTextToText

        from scoring.metrics.openai_clip import parse_dtype

        check_model_folder(folder, metric)
        processor = load_processor(folder, padding_side="left", backend=backend)
        weights_dtype = parse_dtype(device, dtype) if str(device).startswith("cuda") else None
        try:
            config = AutoConfig.from_pretrained(folder, local_files_only=True)
            model = AutoModelForImageTextToText.from_pretrained(
                folder, local_files_only=True, dtype=weights_dtype or torch.float32
            )
        except ValueError as exc:
            kind = getattr(locals().get("config"), "model_type", "unknown")
            raise ValueError(
                f"metric {metric!r}: {folder} is not a vision-language model transformers can "
                f"load as image-text-to-text (model_type {kind!r}): "
                f"{str(exc).splitlines()[0]}"
            ) from None
        except OSError as exc:
            raise MissingWeightsError(
                f"metric {metric!r}: could not load the model of {folder}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        return cls(model.to(device).eval(), processor, device, model_name(folder))

    def token_id(self, word: str) -> int:
        """The first token of ``word`` without special tokens (t2v-metrics'
        ``tokenizer.encode(answer)[0]`` for tokenizers that add none)."""
        ids = self.processor.tokenizer.encode(word, add_special_tokens=False)
        if not ids:
            raise ValueError(f"the tokenizer of {self.name} turns {word!r} into no token")
        return int(ids[0])

    def chat_text(self, question: str, n_images: int = 1) -> str:
        """One user turn (``n_images`` images, then ``question``) through the chat template,
        with the generation prompt: the text the answer follows."""
        content = [{"type": "image"} for _ in range(n_images)]
        content.append({"type": "text", "text": question})
        return self.processor.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )

    def inputs(self, images: Sequence[Sequence[PILImage.Image]], questions: Sequence[str]) -> Any:
        """The processor's left-padded batch on the device: row k holds ``images[k]`` (a list,
        in order) and ``questions[k]``."""
        if len(images) != len(questions):
            raise ValueError(f"{len(images)} image lists for {len(questions)} questions")
        texts = [self.chat_text(q, len(ims)) for q, ims in zip(questions, images, strict=True)]
        flat = [image.convert("RGB") for row in images for image in row]
        batch = self.processor(text=texts, images=flat, padding=True, return_tensors="pt")
        return batch.to(self.device)

    def next_token(
        self, images: Sequence[Sequence[PILImage.Image]], questions: Sequence[str]
    ) -> NextToken:
        """Scores and raw logits of the first answer token, one greedy ``generate`` step."""
        import torch

        batch = self.inputs(images, questions)
        with torch.inference_mode():
            out = self.model.generate(
                **batch,
                max_new_tokens=1,
                do_sample=False,
                output_scores=True,
                output_logits=True,
                return_dict_in_generate=True,
            )
        return NextToken(out.scores[0].float().cpu(), out.logits[0].float().cpu())
