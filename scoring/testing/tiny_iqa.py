"""Tiny stand-ins for the anime aesthetic ONNX model and CLIP-IQA's reference model.

* ``write_anime_aesthetic_onnx``: the real export's interface (input ``img``, NCHW
  float32 of a fixed square size, a fixed batch of one unless asked; output ``score``,
  one value per image) over Flatten -> MatMul -> Add -> Sigmoid, so every pixel of
  every channel moves the score and a wrong resize, offset or channel order shows.
* ``hf_clip_from_open_clip`` / ``save_hf_clip``: the tiny open_clip CLIP of
  ``tiny_clip`` (what CLIP score, aesthetic and CLIP-IQA load) converted weight for
  weight to a transformers ``CLIPModel`` and saved with ``save_pretrained`` beside a
  CLIP processor folder (PIL image processor of the same size, CLIP BPE tokenizer):
  torchmetrics' CLIP-IQA runs on that, the arena on the open_clip original.

Nothing is downloaded; weights come from a seed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.testing.tiny_scorers import save_linear_sigmoid_onnx

ANIME_SIZE = 32


def write_anime_aesthetic_onnx(
    path: Path, size: int = ANIME_SIZE, seed: int = 0, fixed_batch: bool = True
) -> Path:
    """``model.onnx`` with the real input/output names; ``fixed_batch`` (the default, as
    the real export) gives the input a batch of 1, else a free batch dimension."""
    rng = np.random.default_rng(seed)
    n_in = 3 * size * size
    weight = rng.normal(size=(n_in, 1)) * 4.0 / np.sqrt(n_in)
    bias = np.array([-0.3])
    batch = 1 if fixed_batch else "batch"
    return save_linear_sigmoid_onnx(
        path,
        "tiny_anime_aesthetic",
        ("img", [batch, 3, size, size]),
        ("score", [batch, 1]),
        weight,
        bias,
        opset=11,
    )


def _hf_config(cfg: dict[str, Any]):
    from transformers import CLIPConfig

    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    return CLIPConfig(
        text_config={
            "vocab_size": text["vocab_size"],
            "hidden_size": text["width"],
            "intermediate_size": 4 * text["width"],
            "num_hidden_layers": text["layers"],
            "num_attention_heads": text["heads"],
            "max_position_embeddings": text["context_length"],
            "hidden_act": "quick_gelu",
            "bos_token_id": 49406,
            "eos_token_id": 49407,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": vision["width"],
            "intermediate_size": 4 * vision["width"],
            "num_hidden_layers": vision["layers"],
            "num_attention_heads": vision["width"] // vision.get("head_width", 64),
            "image_size": vision["image_size"],
            "patch_size": vision["patch_size"],
            "hidden_act": "quick_gelu",
        },
        projection_dim=cfg["embed_dim"],
    )


def _blocks(state: dict, src: str, dst: str, layers: int) -> dict:
    """open_clip residual blocks (fused q/k/v) -> transformers CLIP encoder layers."""
    out = {}
    names = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1"}
    names |= {"mlp.c_proj": "mlp.fc2", "attn.out_proj": "self_attn.out_proj"}
    for i in range(layers):
        s, d = f"{src}.{i}", f"{dst}.{i}"
        for part in ("weight", "bias"):
            fused = state[f"{s}.attn.in_proj_{part}"].chunk(3)
            for name, tensor in zip(("q", "k", "v"), fused, strict=True):
                out[f"{d}.self_attn.{name}_proj.{part}"] = tensor
            for old, new in names.items():
                out[f"{d}.{new}.{part}"] = state[f"{s}.{old}.{part}"]
    return out


def hf_clip_from_open_clip(model, cfg: dict[str, Any]):
    """The transformers ``CLIPModel`` with ``model``'s weights (an open_clip ``CLIP`` of
    config ``cfg``, QuickGELU); loaded strictly, so nothing is left at its init."""
    from transformers import CLIPModel

    state = model.state_dict()
    vision, text = cfg["vision_cfg"], cfg["text_cfg"]
    mapped = _blocks(state, "transformer.resblocks", "text_model.encoder.layers", text["layers"])
    mapped |= _blocks(
        state, "visual.transformer.resblocks", "vision_model.encoder.layers", vision["layers"]
    )
    pairs = {
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "vision_model.embeddings.class_embedding": "visual.class_embedding",
        "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
        "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
        "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",
        "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
        "vision_model.post_layernorm.weight": "visual.ln_post.weight",
        "vision_model.post_layernorm.bias": "visual.ln_post.bias",
        "logit_scale": "logit_scale",
    }
    mapped |= {new: state[old] for new, old in pairs.items()}
    # open_clip multiplies by (width, embed) matrices, a Linear by (embed, width) weights.
    mapped["text_projection.weight"] = state["text_projection"].T
    mapped["visual_projection.weight"] = state["visual.proj"].T
    hf = CLIPModel(_hf_config(cfg)).eval()
    buffers = {name for name, _ in hf.named_buffers()}
    missing, unexpected = hf.load_state_dict(
        {k: v.contiguous() for k, v in mapped.items()}, strict=False
    )
    missing = [k for k in missing if k not in buffers]
    if missing or unexpected:
        raise ValueError(f"conversion incomplete: missing {missing}, unexpected {unexpected}")
    return hf


def save_hf_clip(hf_model, folder: Path, image_size: int) -> Path:
    """``hf_model`` + a CLIP processor folder (PIL image processor: shortest side to
    ``image_size`` bicubic, centre crop, OpenAI mean/std; CLIP BPE) in ``folder``."""
    from scoring.testing.tiny_scorers import OPENAI_MEAN, OPENAI_STD, write_clip_tokenizer

    hf_model.save_pretrained(folder)
    write_clip_tokenizer(folder)
    config = {
        "image_processor_type": "CLIPImageProcessor",
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "resample": 3,
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": OPENAI_MEAN,
        "image_std": OPENAI_STD,
        "do_convert_rgb": True,
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(config, indent=2))
    return folder
