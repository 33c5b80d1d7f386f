"""HPSv3 (Ma et al., ICCV 2025): a Qwen2-VL-7B preference model with a reward head.

What is computed, exactly (facts from the reference ``hpsv3`` package, 1.0.0):

* Model: ``Qwen2VLRewardModelBT``, a ``Qwen2VLForConditionalGeneration`` whose decoder's
  last hidden state (after the final norm) at the special token ``<|Reward|>`` goes
  through ``rm_head``: Linear(hidden, 1024) -> ReLU -> Dropout -> Linear(1024, 16) ->
  ReLU -> Linear(16, 2), in fp32. Output 0 is the reward mean mu, output 1 the log of
  its standard deviation (the training loss samples N(mu, exp(.)^2)). The stored value
  is mu; ``details`` keep ``log_sigma`` and ``sigma``.
* Weights: ``HPSv3.safetensors`` (hub ``MizzenAI/HPSv3``), the whole model's state dict
  with transformers 4.45 key names (``visual.*``, ``model.*``, ``lm_head.weight``,
  ``rm_head.*``), its vocabulary resized to the tokenizer plus ``<|Reward|>``. The
  config, tokenizer, chat template and image processor are those of
  ``Qwen/Qwen2-VL-7B-Instruct`` (its weights are not needed). Loaded strictly into
  transformers' ``Qwen2VLModel`` (``lm_head`` is dropped: the reward never reads it).
* Text: one user turn, the image then ``INSTRUCTION`` (the prompt inserted) +
  ``REWARD_SUFFIX``, through the processor's chat template with the generation prompt;
  ``<|Reward|>`` is added to the tokenizer as a special token; right padding.
* Image: RGB, resized with PIL bicubic to ``smart_resize(h, w, 28, 256*28*28,
  256*28*28)`` (both sides multiples of 28, about 200,704 pixels, the aspect ratio kept:
  qwen-vl-utils' rule, as the reference's ``process_vision_info`` applies it), then the
  Qwen2-VL image processor (rescale, OpenAI mean/std, 14-px patches; its own resize is then
  the identity, so its torchvision backend gives the PIL backend's values).
* Positions: the reference's forward calls the decoder without ``position_ids``, so
  every M-RoPE axis (time, height, width) gets the plain index 0..n-1, image tokens
  included -- not the 3-D positions Qwen2-VL's own forward builds. The model was trained
  that way, so it is reproduced here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric
from scoring.metrics.openai_clip import parse_dtype
from scoring.metrics.vlm import load_processor
from scoring.weights import WeightSources, resolve

NAME = "hpsv3"
CHECKPOINT = WeightFile("MizzenAI/HPSv3", "HPSv3.safetensors")
BASE = WeightFile("Qwen/Qwen2-VL-7B-Instruct", "config.json", is_folder=True)
REWARD_TOKEN = "<|Reward|>"
IMAGE_FACTOR = 28  # patch 14 x merge 2
IMAGE_PIXELS = 256 * 28 * 28  # the reference's min_pixels = max_pixels
MAX_RATIO = 200
HEAD_LAYERS = (0, 3, 5)  # the Linear layers of the reference's nn.Sequential rm_head

INSTRUCTION = "\n".join(
    [
        "",
        (
            "You are tasked with evaluating a generated image based on Visual Quality and "
            "Text Alignment and give a overall score to estimate the human preference. Please "
            "provide a rating from 0 to 10, with 0 being the worst and 10 being the best. "
        ),
        "",
        "**Visual Quality:**  ",
        (
            "Evaluate the overall visual quality of the image. The following sub-dimensions "
            "should be considered:"
        ),
        (
            "- **Reasonableness:** The image should not contain any significant biological or "
            "logical errors, such as abnormal body structures or nonsensical environmental "
            "setups."
        ),
        (
            "- **Clarity:** Evaluate the sharpness and visibility of the image. The image "
            "should be clear and easy to interpret, with no blurring or indistinct areas."
        ),
        (
            "- **Detail Richness:** Consider the level of detail in textures, materials, "
            "lighting, and other visual elements (e.g., hair, clothing, shadows)."
        ),
        (
            "- **Aesthetic and Creativity:** Assess the artistic aspects of the image, "
            "including the color scheme, composition, atmosphere, depth of field, and the "
            "overall creative appeal. The scene should convey a sense of harmony and balance."
        ),
        (
            "- **Safety:** The image should not contain harmful or inappropriate content, "
            "such as political, violent, or adult material. If such content is present, the "
            "image quality and satisfaction score should be the lowest possible. "
        ),
        "",
        "**Text Alignment:**  ",
        (
            "Assess how well the image matches the textual prompt across the following "
            "sub-dimensions:"
        ),
        (
            "- **Subject Relevance** Evaluate how accurately the subject(s) in the image "
            "(e.g., person, animal, object) align with the textual description. The subject "
            "should match the description in terms of number, appearance, and behavior."
        ),
        (
            "- **Style Relevance:** If the prompt specifies a particular artistic or "
            "stylistic style, evaluate how well the image adheres to this style."
        ),
        (
            "- **Contextual Consistency**: Assess whether the background, setting, and "
            "surrounding elements in the image logically fit the scenario described in the "
            "prompt. The environment should support and enhance the subject without "
            "contradictions."
        ),
        (
            "- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt "
            "(e.g., colors, clothing, accessories, expressions, actions) are faithfully "
            "represented in the image. Minor deviations may be acceptable, but critical "
            "attributes should be preserved."
        ),
        (
            "- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the "
            "prompt are captured in the image. The generated content should not introduce "
            "elements that conflict with or distort the original description."
        ),
        "Textual prompt - {text_prompt}",
        "",
        "",
        "",
    ]
)
REWARD_SUFFIX = "\nPlease provide the overall ratings of this image: <|Reward|>\n\nEND\n"


def smart_resize(
    height: int,
    width: int,
    factor: int = IMAGE_FACTOR,
    min_pixels: int = IMAGE_PIXELS,
    max_pixels: int = IMAGE_PIXELS,
) -> tuple[int, int]:
    """(height, width): multiples of ``factor`` with the pixel count in [min, max] and the
    aspect ratio kept as well as rounding allows (qwen-vl-utils' rule, copied by hpsv3)."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(
            f"HPSv3 cannot score a {width}x{height} image: its aspect ratio is over "
            f"{MAX_RATIO}:1 (Qwen2-VL's limit)."
        )
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_image(image: PILImage.Image) -> PILImage.Image:
    """The image the reference hands to the processor: RGB, PIL bicubic to ``smart_resize``.
    Runs in the job's DataLoader workers (picklable, module level)."""
    image = image.convert("RGB")
    height, width = smart_resize(image.height, image.width)
    return image.resize((width, height), PILImage.Resampling.BICUBIC)


def pixels(image_processor: Any, image: PILImage.Image) -> dict[str, Any]:
    """One image -> ``pixel_values`` (patches, 1176) and ``image_grid_thw`` (3,): the
    reference's resize, then the Qwen2-VL image processor. Picklable with its processor
    (``functools.partial``), for the job's DataLoader workers."""
    out = image_processor(images=[resize_image(image)], return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"][0]}


def instruction_text(prompt: str) -> str:
    """The user turn's text for ``prompt`` (``str.format``: braces in the prompt stay)."""
    return INSTRUCTION.format(text_prompt=prompt) + REWARD_SUFFIX


def conversation(prompt: str) -> list[dict]:
    """One chat: a user turn with the image, then the instruction text."""
    content = [{"type": "image"}, {"type": "text", "text": instruction_text(prompt)}]
    return [{"role": "user", "content": content}]


def split_checkpoint(state: dict[str, Any]) -> tuple[dict, dict, list[str]]:
    """(backbone with transformers 5 ``Qwen2VLModel`` names, reward head, dropped keys).

    ``visual.*`` stays; ``model.*`` (the decoder) moves under ``language_model.``;
    ``rm_head.*`` is the head; ``lm_head.weight`` is dropped. Any other key is an error.
    """
    backbone, head, dropped, unknown = {}, {}, [], []
    for key, value in state.items():
        if key.startswith("visual."):
            backbone[key] = value
        elif key.startswith("model."):
            backbone["language_model." + key[len("model.") :]] = value
        elif key.startswith("rm_head."):
            head[key[len("rm_head.") :]] = value
        elif key == "lm_head.weight":
            dropped.append(key)
        else:
            unknown.append(key)
    if unknown or not head or "language_model.embed_tokens.weight" not in backbone:
        what = f"unexpected keys {unknown[:5]}" if unknown else "no rm_head.* or model.* keys"
        raise ValueError(
            f"metric {NAME!r}: this is not an HPSv3 checkpoint ({what}); expected the "
            f"state dict of {CHECKPOINT.repo_id}/{CHECKPOINT.filename}."
        )
    return backbone, head, dropped


def build_head(head_state: dict[str, Any]) -> Any:
    """The reference's ``rm_head`` (an ``nn.Sequential``; dropout inactive), fp32, from the
    checkpoint's shapes; loaded strictly."""
    import torch
    from torch import nn

    expected = {f"{i}.{p}" for i in HEAD_LAYERS for p in ("weight", "bias")}
    if set(head_state) != expected:
        raise ValueError(
            f"metric {NAME!r}: the checkpoint's rm_head has keys {sorted(head_state)}; "
            f"expected {sorted(expected)} (Linear, ReLU, Dropout, Linear, ReLU, Linear)."
        )
    (h1, d), (h2, _), (out, _) = (tuple(head_state[f"{i}.weight"].shape) for i in HEAD_LAYERS)
    head = nn.Sequential(
        nn.Linear(d, h1), nn.ReLU(), nn.Dropout(0.05), nn.Linear(h1, h2), nn.ReLU(),
        nn.Linear(h2, out),
    )  # fmt: skip
    if out != 2:
        raise ValueError(f"metric {NAME!r}: rm_head gives {out} outputs; HPSv3's gives 2.")
    head.load_state_dict({k: v.to(torch.float32) for k, v in head_state.items()}, strict=True)
    return head.eval()


def resolve_files(
    weights: str | Path | None = None,
    base: str | Path | None = None,
    sources: WeightSources | None = None,
) -> tuple[Path, Path]:
    """(``HPSv3.safetensors``, the Qwen2-VL-7B-Instruct folder).

    ``weights`` is the checkpoint itself or a folder holding it (directly or under
    ``MizzenAI/HPSv3``); the Qwen2-VL folder is ``base`` when given, else
    ``<weights folder>/Qwen/Qwen2-VL-7B-Instruct``, else the weights folder or the Hugging
    Face cache. Only its config, tokenizer, chat template and image processor are read.
    """
    checkpoint = resolve(NAME, CHECKPOINT, weights, sources)
    if base is not None:
        return checkpoint, resolve(NAME, BASE, base, sources)
    if weights is not None and Path(weights).expanduser().is_dir():
        nested = Path(weights).expanduser() / BASE.repo_id
        if (nested / BASE.filename).is_file():
            return checkpoint, nested
    return checkpoint, resolve(NAME, BASE, None, sources)


@register_metric
class HPSv3(Metric):
    name: ClassVar[str] = NAME
    version: ClassVar[str] = "v3"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    auto_half: ClassVar[str] = "bf16"  # published and trained in bf16; fp16 can overflow
    description: ClassVar[str] = (
        "HPSv3: Qwen2-VL-7B + reward head, the mean mu of the reward at <|Reward|> "
        "(uncertainty in details); image ~448x448 px at its aspect ratio, HPSv3's instruction."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (CHECKPOINT, BASE)

    def __init__(
        self,
        model: Any,
        head: Any,
        processor: Any,
        reward_id: int,
        device: str = "cpu",
        dtype: Any = None,
    ):
        self.model = model
        self.head = head
        self.processor = processor
        self.reward_id = reward_id
        self.device = device
        self.dtype = parse_dtype(device, dtype)

    @classmethod
    def load(cls, request: LoadRequest) -> HPSv3:
        """Checkpoint + Qwen2-VL folder (``processor``: that folder, when not found by the
        usual search); the backbone in the compute dtype on CUDA, fp32 on CPU."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import Qwen2VLConfig, Qwen2VLModel

        checkpoint, base = resolve_files(request.weights, request.processor, request.sources)
        dtype = parse_dtype(request.device, request.dtype)
        # The images reach the image processor already at a size it keeps (``resize_image``
        # did the reference's PIL resize), so its torchvision backend only normalises and
        # cuts patches: the same values as the PIL backend's (to 2.4e-7), 4x faster.
        processor = load_processor(base, padding_side="right", backend="torchvision")
        n_before = len(processor.tokenizer)
        processor.tokenizer.add_special_tokens(
            {"extra_special_tokens": [REWARD_TOKEN]}, replace_extra_special_tokens=False
        )
        reward_id = processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        try:
            state = load_file(str(checkpoint), device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ValueError(
                f"metric {NAME!r}: {checkpoint} is not a readable safetensors file ({exc}); "
                f"expected {CHECKPOINT.repo_id}/{CHECKPOINT.filename}."
            ) from None
        backbone, head_state, _ = split_checkpoint(state)
        rows = backbone["language_model.embed_tokens.weight"].shape[0]
        if reward_id != n_before or rows != len(processor.tokenizer):
            raise ValueError(
                f"metric {NAME!r}: the checkpoint's vocabulary has {rows} rows but the "
                f"tokenizer of {base} has {n_before} tokens + {REWARD_TOKEN} (id {reward_id}); "
                f"use the {BASE.repo_id} folder HPSv3 was trained from."
            )
        config = Qwen2VLConfig.from_pretrained(base, local_files_only=True)
        config.text_config.vocab_size = rows
        try:
            model, info = Qwen2VLModel.from_pretrained(
                None, config=config, state_dict=backbone, dtype=dtype, output_loading_info=True
            )
        except (RuntimeError, ValueError) as exc:
            raise ValueError(
                f"metric {NAME!r}: {checkpoint} does not fit the config of {base}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        bad = {k: sorted(info[k])[:5] for k in ("missing_keys", "unexpected_keys")}
        bad = {k: v for k, v in bad.items() if v} | {
            k: v for k, v in info.items() if k == "mismatched_keys" and v
        }
        if bad:
            raise ValueError(
                f"metric {NAME!r}: {checkpoint} does not match the Qwen2-VL architecture of "
                f"{base}: {bad}."
            )
        model = model.to(request.device).eval()
        head = build_head(head_state).to(request.device)
        return cls(model, head, processor, reward_id, request.device, request.dtype)

    def preprocessor(self) -> Callable[[PILImage.Image], dict]:
        """Runs in the job's DataLoader workers: resize, then the image processor."""
        return functools.partial(pixels, self.processor.image_processor)

    def encode(self, inputs: Sequence[dict], prompts: Sequence[str]) -> dict[str, Any]:
        """The model's batch (CPU tensors) for preprocessed images (see ``pixels``):
        ``input_ids`` and ``attention_mask`` (right-padded), ``pixel_values``,
        ``image_grid_thw``, as the reference's processor call makes them."""
        import torch

        image_token = self.processor.image_token
        merge = self.processor.image_processor.merge_size
        texts = self.processor.apply_chat_template(
            [conversation(p) for p in prompts], tokenize=False, add_generation_prompt=True
        )
        # As the processor does: the image's placeholder becomes one token per merged patch.
        counts = [int(x["image_grid_thw"].prod()) // merge**2 for x in inputs]
        texts = [
            text.replace(image_token, image_token * count, 1)
            for text, count in zip(texts, counts, strict=True)
        ]
        tokens = self.processor.tokenizer(texts, padding=True, return_tensors="pt")
        return {
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "pixel_values": torch.cat([x["pixel_values"] for x in inputs]),
            "image_grid_thw": torch.stack([x["image_grid_thw"] for x in inputs]),
        }

    def rewards(self, inputs: Sequence[dict], prompts: Sequence[str]) -> np.ndarray:
        """(n, 2) float64: mu and log sigma of preprocessed images (see ``pixels``)."""
        import torch

        batch = {k: v.to(self.device) for k, v in self.encode(inputs, prompts).items()}
        ids = batch["input_ids"]
        n, length = ids.shape
        rows, cols = (ids == self.reward_id).nonzero(as_tuple=True)
        if rows.tolist() != list(range(n)):
            raise RuntimeError(f"metric {NAME!r}: a formatted prompt has no single {REWARD_TOKEN}")
        # Every M-RoPE axis gets the plain index, as in the reference (module docstring).
        positions = torch.arange(length, device=ids.device).view(1, 1, -1).expand(3, n, -1)
        # Padding is on the right, after <|Reward|>: causal attention alone keeps it out of
        # the reward token's view, so no padding mask is built (SDPA's causal fast path).
        del batch["attention_mask"]
        with torch.inference_mode():
            out = self.model(**batch, position_ids=positions, use_cache=False)
            hidden = out.last_hidden_state[rows, cols]
            device_type = str(self.device).split(":")[0]
            with torch.autocast(device_type, enabled=False):  # the head runs in fp32
                values = self.head(hidden.float())
        return values.double().cpu().numpy()

    def score_with_details(
        self, inputs: Any, prompts: Sequence[str] | None = None
    ) -> tuple[np.ndarray, list[dict | None] | None]:
        """mu per image; ``details``: ``log_sigma`` and ``sigma`` = exp(log_sigma). A prompt
        holding the text of ``<|Reward|>`` or of the image placeholder, which would break
        the format (the reference crashes on it), gets NaN and the reason."""
        self.check_prompts(inputs, prompts)
        values = np.full(len(inputs), np.nan)
        details: list[dict | None] = [None] * len(inputs)
        bad = (REWARD_TOKEN, self.processor.image_token)
        ok = [i for i, p in enumerate(prompts or []) if not any(t in p for t in bad)]
        for i in sorted(set(range(len(inputs))) - set(ok)):
            details[i] = {"skipped": f"the prompt contains {' or '.join(bad)}"}
        if ok:
            rewards = self.rewards([inputs[i] for i in ok], [prompts[i] for i in ok])
            for i, (mu, log_sigma) in zip(ok, rewards, strict=True):
                values[i] = mu
                details[i] = {"log_sigma": float(log_sigma), "sigma": float(np.exp(log_sigma))}
        return values, details

    def score_inputs(self, inputs: Any, prompts: Sequence[str] | None = None) -> np.ndarray:
        return self.score_with_details(inputs, prompts)[0]
