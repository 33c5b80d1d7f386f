"""A tiny random Qwen2-VL and HPSv3 in the real file formats, and the inputs they are compared on.

``write_tiny_qwen2vl(folder)`` writes what the hub repo ``Qwen/Qwen2-VL-7B-Instruct``
holds, file for file, at toy sizes: ``config.json`` in that repo's (transformers 4.45)
flat layout, ``generation_config.json`` (with a repetition penalty, so the VQAScore tests
see it applied), ``model.safetensors`` with the repo's legacy key names (``visual.*``,
``model.*``, ``lm_head.weight``), a byte-level BPE tokenizer built like Qwen2's
(``scoring.testing.tiny_bpe``, its merges learnt from the texts the metrics send),
``chat_template.json``
(Qwen2-VL's template, verbatim) and ``preprocessor_config.json`` (the real one: patch 14,
merge 2, OpenAI mean/std, 3136..12845056 pixels). ``write_tiny_hpsv3(folder)`` writes
``HPSv3.safetensors`` as the reference trainer saves it: the same backbone with its
vocabulary resized to the tokenizer plus ``<|Reward|>``, and ``rm_head.{0,3,5}``
(hidden -> 1024 -> 16 -> 2, the reference's default "ranknet" head).

Sizes: text 32 wide, 2 layers, 2 heads (one key/value head), M-RoPE sections 2+3+3;
vision 32 wide, 2 blocks, 2 heads, real patch geometry. Every tensor is listed here key by
key, without transformers, and filled from a seeded torch generator (scales keep
activations near unit variance, so scores differ between images and prompts), so the
reference venvs (transformers 4.45 / 4.49) and the tests build the same files;
``state_digest`` names them. The lm_head rows of "Yes" and "No" are shaped so that they
are the likely answers (``_answer_rows``), as for a real VLM asked a yes/no question.

``reference_images()`` and ``REFERENCE_PROMPTS`` are the inputs of the reference
fixtures: images from integer formulas (no RNG) in several sizes and aspect ratios.
"""

from __future__ import annotations

import functools
import json
import zlib
from pathlib import Path

import numpy as np

from scoring.testing.tiny_bpe import SPECIAL_TOKENS, learn_bpe, qwen2_tokenizer_files
from scoring.testing.tiny_imagereward import pattern, state_digest

QWEN2VL_REPO = "Qwen/Qwen2-VL-7B-Instruct"
HPSV3_REPO, HPSV3_FILE = "MizzenAI/HPSv3", "HPSv3.safetensors"

# The chat template of Qwen/Qwen2-VL-7B-Instruct (chat_template.json), verbatim.
QWEN2VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture "
    "{{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video "
    "{{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]
PREPROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": OPENAI_MEAN,
    "image_std": OPENAI_STD,
    "image_processor_type": "Qwen2VLImageProcessor",
    "processor_class": "Qwen2VLProcessor",
}

HIDDEN, LAYERS, HEADS, KV_HEADS, INTERMEDIATE = 32, 2, 2, 1, 64
VISION_WIDTH, VISION_DEPTH, VISION_HEADS, MLP_RATIO = 32, 2, 2, 2
PATCH, TEMPORAL_PATCH, MERGE = 14, 2, 2
MROPE_SECTION = [2, 3, 3]  # sums to head_dim / 2 = 8
N_MERGES = 400
REPETITION_PENALTY = 1.05
HEAD_SIZES = (1024, 16, 2)  # the reference's default reward head after the hidden state
SPREAD = 1.0  # scale of the Yes/No rows' difference (see _answer_rows)

REFERENCE_PROMPTS = [
    "a red cat sitting on a wooden chair",
    "1girl, solo, long hair, looking at viewer, smile, blue eyes",
    'a sign that says "Yes" in {curly} braces, Café Crème 猫',
    "",
    " ".join(["a green tree and a blue house at sunset"] * 6),
]


def _corpus() -> str:
    """The text the tiny BPE learns its merges from: what the metrics send."""
    from scoring.metrics.hpsv3 import INSTRUCTION, REWARD_SUFFIX
    from scoring.metrics.vqascore import QUESTION_TEMPLATE

    words = "Yes No yes no Yes, No. user assistant system You are a helpful assistant."
    return "\n".join(
        [INSTRUCTION, REWARD_SUFFIX, QUESTION_TEMPLATE, *REFERENCE_PROMPTS, *[words] * 8]
    )


@functools.cache
def _learnt() -> tuple[dict[str, int], list[str]]:
    return learn_bpe(_corpus(), N_MERGES)


def tokenizer_files() -> dict[str, dict]:
    """The tiny tokenizer's files (``qwen2_tokenizer_files``) with Qwen2-VL's chat template."""
    vocab, merges = _learnt()
    return qwen2_tokenizer_files(vocab, merges, QWEN2VL_CHAT_TEMPLATE)


def tokenizer_length() -> int:
    """Tokens of the tiny tokenizer (BPE vocabulary + special tokens), as ``len(tokenizer)``."""
    return len(_learnt()[0]) + len(SPECIAL_TOKENS)


def tiny_config(vocab_size: int | None = None) -> dict:
    """``config.json`` in Qwen/Qwen2-VL-7B-Instruct's layout, toy sizes. The embedding has
    spare rows beyond the tokenizer, as the real one does (152064 vs 151657)."""
    n_tokens = tokenizer_length()
    eot = n_tokens - len(SPECIAL_TOKENS)
    ids = {tok: eot + i for i, tok in enumerate(SPECIAL_TOKENS)}
    return {
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "hidden_act": "silu",
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "max_position_embeddings": 32768,
        "max_window_layers": LAYERS,
        "model_type": "qwen2_vl",
        "num_attention_heads": HEADS,
        "num_hidden_layers": LAYERS,
        "num_key_value_heads": KV_HEADS,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.41.2",
        "use_cache": True,
        "use_sliding_window": False,
        "vision_config": {
            "depth": VISION_DEPTH,
            "embed_dim": VISION_WIDTH,
            "mlp_ratio": MLP_RATIO,
            "num_heads": VISION_HEADS,
            "in_chans": 3,
            "hidden_size": HIDDEN,
            "patch_size": PATCH,
            "spatial_merge_size": MERGE,
            "spatial_patch_size": PATCH,
            "temporal_patch_size": TEMPORAL_PATCH,
        },
        "rope_scaling": {"type": "mrope", "mrope_section": MROPE_SECTION},
        "vocab_size": vocab_size or -(-(n_tokens + 40) // 64) * 64,
    }


def generation_config(config: dict) -> dict:
    """``generation_config.json`` as the Instruct repos ship it (sampling settings that
    greedy decoding ignores, and a repetition penalty that it applies)."""
    return {
        "bos_token_id": config["bos_token_id"],
        "pad_token_id": config["bos_token_id"],
        "do_sample": True,
        "eos_token_id": [config["eos_token_id"], config["bos_token_id"]],
        "repetition_penalty": REPETITION_PENALTY,
        "temperature": 0.01,
        "top_k": 1,
        "top_p": 0.001,
        "transformers_version": "4.45.0",
    }


def _shapes(config: dict, vocab_rows: int, reward_head: bool) -> list[tuple[str, tuple, str]]:
    """(key, shape, kind) of every tensor, legacy (hub) key names, in a fixed order."""
    h, f, v = config["hidden_size"], config["intermediate_size"], config["vision_config"]
    w, head_dim = v["embed_dim"], config["hidden_size"] // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim
    merged = w * v["spatial_merge_size"] ** 2
    out: list[tuple[str, tuple, str]] = []

    def linear(name: str, n_out: int, n_in: int, bias: bool = True) -> None:
        out.append((f"{name}.weight", (n_out, n_in), "linear"))
        if bias:
            out.append((f"{name}.bias", (n_out,), "bias"))

    def layer_norm(name: str, n: int) -> None:
        out.extend([(f"{name}.weight", (n,), "norm_weight"), (f"{name}.bias", (n,), "bias")])

    patch = (w, v["in_chans"], v["temporal_patch_size"], v["patch_size"], v["patch_size"])
    out.append(("visual.patch_embed.proj.weight", patch, "linear"))
    for i in range(v["depth"]):
        b = f"visual.blocks.{i}"
        layer_norm(f"{b}.norm1", w)
        layer_norm(f"{b}.norm2", w)
        linear(f"{b}.attn.qkv", 3 * w, w)
        linear(f"{b}.attn.proj", w, w)
        linear(f"{b}.mlp.fc1", w * v["mlp_ratio"], w)
        linear(f"{b}.mlp.fc2", w, w * v["mlp_ratio"])
    layer_norm("visual.merger.ln_q", w)
    linear("visual.merger.mlp.0", merged, merged)
    linear("visual.merger.mlp.2", v["hidden_size"], merged)

    out.append(("model.embed_tokens.weight", (vocab_rows, h), "embedding"))
    for i in range(config["num_hidden_layers"]):
        b = f"model.layers.{i}"
        linear(f"{b}.self_attn.q_proj", h, h)
        linear(f"{b}.self_attn.k_proj", kv, h)
        linear(f"{b}.self_attn.v_proj", kv, h)
        linear(f"{b}.self_attn.o_proj", h, h, bias=False)
        linear(f"{b}.mlp.gate_proj", f, h, bias=False)
        linear(f"{b}.mlp.up_proj", f, h, bias=False)
        linear(f"{b}.mlp.down_proj", h, f, bias=False)
        out.append((f"{b}.input_layernorm.weight", (h,), "norm_weight"))
        out.append((f"{b}.post_attention_layernorm.weight", (h,), "norm_weight"))
    out.append(("model.norm.weight", (h,), "norm_weight"))
    out.append(("lm_head.weight", (vocab_rows, h), "lm_head"))
    if reward_head:
        sizes = (h, *HEAD_SIZES)
        for index, n_in, n_out in zip((0, 3, 5), sizes[:-1], sizes[1:], strict=True):
            linear(f"rm_head.{index}", n_out, n_in)
    return out


def tiny_state_dict(
    config: dict, vocab_rows: int, reward_head: bool = False, seed: int = 0
) -> dict:
    """Seeded random tensors for every key; each key has its own generator (seeded by the
    seed and the key's CRC), so the backbone is the same with and without the head."""
    import torch

    state = {}
    for key, shape, kind in _shapes(config, vocab_rows, reward_head):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.encode()))
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        if kind == "linear":  # std 1/sqrt(fan_in): outputs keep the inputs' scale
            state[key] = noise / float(np.sqrt(np.prod(shape[1:])))
        elif kind == "norm_weight":
            state[key] = 1.0 + 0.1 * noise
        elif kind == "bias":
            state[key] = 0.1 * noise
        elif kind == "lm_head":
            state[key] = noise * (0.9 / float(np.sqrt(shape[1])))
        else:
            state[key] = noise
    _answer_rows(state, seed)
    return state


def _answer_rows(state: dict, seed: int) -> None:
    """Make "Yes" and "No" the likely answers, as they are for a real VLM asked a yes/no
    question: their ``lm_head`` rows point along the embedding of the newline every chat
    prompt ends with (which dominates the last position's hidden state in two layers), plus
    and minus a noise vector orthogonal to it, so that P(Yes) vs P(No) follows the rest of
    the hidden state, i.e. the image and the prompt."""
    import torch

    vocab = _learnt()[0]
    head, embed = state["lm_head.weight"], state["model.embed_tokens.weight"]
    direction = embed[vocab["Ċ"]] / embed[vocab["Ċ"]].norm()
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(b"answer rows"))
    width = head.shape[1]
    noise = torch.randn(width, generator=gen, dtype=torch.float32)
    noise = (noise - (noise @ direction) * direction) * (SPREAD / float(np.sqrt(width)))
    head[vocab["Yes"]] = 6.0 * direction + noise
    head[vocab["No"]] = 6.0 * direction - noise


def _write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_tiny_qwen2vl(folder: Path, seed: int = 0, weights: bool = True) -> Path:
    """A Qwen/Qwen2-VL-7B-Instruct folder at toy sizes (``weights=False``: without
    ``model.safetensors``, as HPSv3 needs it); returns the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    files = tokenizer_files()
    config = tiny_config()
    _write_json(folder / "config.json", config)
    _write_json(folder / "generation_config.json", generation_config(config))
    _write_json(folder / "tokenizer.json", files["tokenizer.json"])
    _write_json(folder / "tokenizer_config.json", files["tokenizer_config.json"])
    _write_json(folder / "vocab.json", files["vocab"])
    merges = files["tokenizer.json"]["model"]["merges"]
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8"
    )
    _write_json(folder / "chat_template.json", {"chat_template": QWEN2VL_CHAT_TEMPLATE})
    _write_json(folder / "preprocessor_config.json", PREPROCESSOR_CONFIG)
    if weights:
        state = tiny_state_dict(config, config["vocab_size"], seed=seed)
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def hpsv3_state_dict(seed: int = 0) -> dict:
    """HPSv3's checkpoint: embeddings resized to the tokenizer + ``<|Reward|>``, the head."""
    return tiny_state_dict(tiny_config(), tokenizer_length() + 1, reward_head=True, seed=seed)


def write_tiny_hpsv3(folder: Path, seed: int = 0) -> Path:
    """``HPSv3.safetensors`` in ``folder``; returns the file."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HPSV3_FILE
    save_file(hpsv3_state_dict(seed), str(path), metadata={"format": "pt"})
    return path


def write_tiny_vlm_weights(root: Path, seed: int = 0) -> dict[str, Path]:
    """Both, in the weights-folder layout under ``root``: the Qwen2-VL folder (VQAScore's
    model and HPSv3's config and processor) and the HPSv3 checkpoint."""
    return {
        "qwen2vl": write_tiny_qwen2vl(root / QWEN2VL_REPO, seed),
        "hpsv3": write_tiny_hpsv3(root / HPSV3_REPO, seed),
    }


def tiny_digests(seed: int = 0) -> dict[str, str]:
    """``state_digest`` of the Qwen2-VL weights and of the HPSv3 checkpoint, each with the
    config and tokenizer files they are read with."""
    config = tiny_config()
    files = tokenizer_files()
    texts = (json.dumps(config, sort_keys=True), json.dumps(files["tokenizer.json"]))
    return {
        "qwen2vl": state_digest(tiny_state_dict(config, config["vocab_size"], seed=seed), *texts),
        "hpsv3": state_digest(hpsv3_state_dict(seed), *texts),
    }


def reference_images() -> list:
    """RGB PIL images, the same in any numpy/PIL version: wide, tall, square, small (scaled
    up to the pixel floor), large (scaled down to the ceiling), a 1:3 strip."""
    from PIL import Image

    return [
        Image.fromarray(pattern(200, 300, 3, 1)),
        Image.fromarray(pattern(301, 97, 3, 2)),
        Image.fromarray(pattern(448, 448, 3, 3)),
        Image.fromarray(pattern(48, 64, 3, 4)),
        Image.fromarray(pattern(700, 520, 3, 5)),
        Image.fromarray(pattern(90, 270, 3, 6)),
    ]


def reference_cases() -> list[tuple[int, int]]:
    """(image, prompt) index pairs of the fixtures: every image, every prompt."""
    n_images, n_prompts = len(reference_images()), len(REFERENCE_PROMPTS)
    return [(i, (i * 2 + k) % n_prompts) for i in range(n_images) for k in range(2)]
