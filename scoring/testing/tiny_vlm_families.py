"""Tiny random VLMs of other families, saved with transformers, for the generic VLM loader.

``scoring.metrics.vlm`` loads any image-text-to-text chat model; the tests run it on a tiny
Qwen2-VL in the hub's own format (``tiny_vlm``) and on these, written by transformers'
``save_pretrained`` as current checkpoints of the families are:

* ``write_tiny_qwen25vl``: Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration``, windowed
  vision attention, RMSNorm vision blocks), the Qwen2 tokenizer and chat template;
* ``write_tiny_llava``: LLaVA-1.5 (``LlavaForConditionalGeneration``: CLIP vision tower,
  2-layer projector, Llama decoder), a CLIP image processor at 28 px, the tiny BPE
  tokenizer with ``<image>`` added, and llava-hf's ``USER: <image>\\n... ASSISTANT:``
  chat template.

Both reuse the tiny Qwen2 tokenizer's files of ``tiny_vlm`` (byte-level BPE), so "Yes" is
one token. Weights come from the models' own seeded initialisation (``torch.manual_seed``):
these tests compare the loader with a hand-run forward pass of the same model, not with a
stored fixture, so no bit-identical rebuild is needed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.testing.tiny_vlm import (
    HIDDEN,
    INTERMEDIATE,
    MROPE_SECTION,
    OPENAI_MEAN,
    OPENAI_STD,
    QWEN2VL_REPO,
    tiny_config,
    write_tiny_qwen2vl,
)

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "preprocessor_config.json",
)
# llava-hf/llava-1.5-7b-hf's chat template, in its shape: images first, then the text.
LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}"
    "{{ message['role'].upper() + ': '}}{% endif %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}"
    "{{ '<image>\\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


def _tokenizer_files(folder: Path) -> dict:
    """Copy the tiny Qwen2 tokenizer and processor files into ``folder``; its config.json."""
    source = write_tiny_qwen2vl(folder.parent / "_qwen2vl_source" / QWEN2VL_REPO, weights=False)
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copy(source / name, folder / name)
    return json.loads((source / "config.json").read_text())


def write_tiny_qwen25vl(folder: Path, seed: int = 0) -> Path:
    """A Qwen2.5-VL-Instruct-style folder at toy sizes; returns it."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    base = _tokenizer_files(folder)
    ids = {k: base[k] for k in base if k.endswith("token_id")}
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": base["vocab_size"],
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
            "max_position_embeddings": 4096,
            **{k: v for k, v in ids.items() if k in ("bos_token_id", "eos_token_id")},
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        **{k: v for k, v in ids.items() if k not in ("bos_token_id", "eos_token_id")},
    )
    torch.manual_seed(seed)
    Qwen2_5_VLForConditionalGeneration(config).eval().save_pretrained(folder)
    return folder


def write_tiny_llava(folder: Path, seed: int = 0) -> Path:
    """A LLaVA-1.5-style folder at toy sizes (CLIP 28 px, patch 14 -> 4 image tokens)."""
    import torch
    from transformers import (
        AutoTokenizer,
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    _tokenizer_files(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.add_special_tokens(
        {"extra_special_tokens": ["<image>"]}, replace_extra_special_tokens=False
    )
    for name in ("chat_template.json", "preprocessor_config.json"):
        (folder / name).unlink()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": 28},
        crop_size={"height": 28, "width": 28},
        image_mean=OPENAI_MEAN,
        image_std=OPENAI_STD,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=LLAVA_CHAT_TEMPLATE,
        num_additional_image_tokens=1,
    )
    processor.save_pretrained(folder)
    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 28,
            "patch_size": 14,
            "projection_dim": 32,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": tiny_config()["vocab_size"],
            "hidden_size": HIDDEN,
            "intermediate_size": INTERMEDIATE,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 512,
        },
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    with torch.no_grad():  # logits of a few units, so P(token) varies between inputs
        model.lm_head.weight.mul_(20.0)
    model.save_pretrained(folder)
    return folder
