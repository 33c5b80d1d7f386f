"""A tiny random ImageReward in the real file formats, and the inputs it is compared on.

``write_tiny_imagereward(root)`` writes, in the weights-folder layout:

* ``<root>/THUDM/ImageReward/ImageReward.pt``: a plain state dict with every key the
  reference ``ImageReward`` module (``image-reward`` 1.5) has -- ``blip.visual_encoder``
  (a BLIP ViT at 224 px, patch 16, here 128 wide and 2 blocks deep: two heads of 64),
  ``blip.text_encoder`` (med.py's cross-attention BERT, 32 wide, 2 layers),
  ``blip.vision_proj``/``blip.text_proj`` (unused by scoring) and ``mlp.layers`` (the
  reward head, 32 -> 1024 -> 128 -> 64 -> 16 -> 1);
* ``<root>/THUDM/ImageReward/med_config.json``: BLIP's text config with those sizes;
* ``<root>/bert-base-uncased/vocab.txt``: a small lower-case WordPiece vocabulary.

The state dict is listed here key by key, without the metric's code, so that a wrong
key in either shows up: ``scoring.metrics.imagereward`` must load it strictly, and
``tests/reference/imagereward_reference.py`` loads it strictly into the reference
package's own model. It needs only torch, and the same seed gives the same tensors
(``state_digest`` names them), so the reference venv and the tests build the same file.
Scales keep activations near unit variance, so scores differ between images and
prompts by O(1) and a comparison at 1e-5 means something.

``reference_images()`` and ``REFERENCE_PROMPTS`` are the inputs of the reference
fixture: images from integer formulas (no RNG, so numpy versions cannot change them) in
several sizes and PIL modes, prompts that exercise lower-casing, accents, CJK, special
tokens, unknown words and truncation at 35 tokens.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import numpy as np

IMAGEREWARD_REPO = "THUDM/ImageReward"
TOKENIZER_REPO = "bert-base-uncased"

# BERT's special tokens first ([PAD] = 0, the med_config's pad_token_id), then words,
# WordPiece continuations and punctuation the test prompts use.
TINY_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
    "a", "an", "the", "of", "on", "in", "with", "and", "at",
    "cat", "dog", "girl", "city", "night", "red", "blue", "green", "photo", "painting",
    "portrait", "bicycle", "street", "sky", "tree", "house", "long", "hair", "smile",
    "cafe", "creme", "anime", "style", "highly", "detailed", "1", "solo",
    "##s", "##ing", "##ed", "##y", "##er", "bi", "##cycle", "sun", "##set",
    ",", ".", "!", "-", "'", "(", ")",
]  # fmt: skip
TEXT_WIDTH = 32
VISION_WIDTH = 128  # two heads of 64, as BLIP's ViTs have (the loader infers heads = width / 64)
VISION_DEPTH = 2
TEXT_LAYERS = 2
PATCH = 16
IMAGE_SIZE = 224
EMBED_DIM = 256  # BLIP_Pretrain's projection size (vision_proj/text_proj)
HEAD_SIZES = (1024, 128, 64, 16, 1)  # the reference MLP's widths after the input

REFERENCE_PROMPTS = [
    "a red cat on the street",
    "A Portrait of a Girl with long hair, smiling!",
    "Café Crème at night, highly detailed painting",
    "anime style 1girl, solo, blue sky 猫",
    "a [DEC] dog in the city",
    "",
    " ".join(["a green tree and a blue house at sunset"] * 5),  # more than 35 tokens
]


def tiny_med_config(vision_width: int = VISION_WIDTH) -> dict:
    """BLIP's ``med_config.json`` with tiny sizes (the published one: 768 wide, 12 layers)."""
    return {
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": TEXT_WIDTH,
        "initializer_range": 0.02,
        "intermediate_size": 2 * TEXT_WIDTH,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 40,
        "model_type": "bert",
        "num_attention_heads": 2,
        "num_hidden_layers": TEXT_LAYERS,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": len(TINY_VOCAB) + 2,  # + the tokenizer's added [DEC] and [ENC]
        "encoder_width": vision_width,
        "add_cross_attention": True,
    }


def _shapes(
    config: dict, depth: int = VISION_DEPTH, patch: int = PATCH
) -> list[tuple[str, tuple[int, ...], str]]:
    """(key, shape, kind) of every tensor of the reference module, in a fixed order."""
    w, h, f = config["encoder_width"], config["hidden_size"], config["intermediate_size"]
    grid = IMAGE_SIZE // patch
    out: list[tuple[str, tuple[int, ...], str]] = []

    def linear(name: str, n_out: int, n_in: int) -> None:
        out.extend(
            [(f"{name}.weight", (n_out, n_in), "linear"), (f"{name}.bias", (n_out,), "bias")]
        )

    def norm(name: str, n: int) -> None:
        out.extend([(f"{name}.weight", (n,), "norm_weight"), (f"{name}.bias", (n,), "bias")])

    v = "blip.visual_encoder"
    out += [
        (f"{v}.cls_token", (1, 1, w), "embedding"),
        (f"{v}.pos_embed", (1, grid * grid + 1, w), "embedding"),
    ]
    out += [
        (f"{v}.patch_embed.proj.weight", (w, 3, patch, patch), "linear"),
        (f"{v}.patch_embed.proj.bias", (w,), "bias"),
    ]
    for i in range(depth):
        b = f"{v}.blocks.{i}"
        norm(f"{b}.norm1", w)
        linear(f"{b}.attn.qkv", 3 * w, w)
        linear(f"{b}.attn.proj", w, w)
        norm(f"{b}.norm2", w)
        linear(f"{b}.mlp.fc1", 4 * w, w)
        linear(f"{b}.mlp.fc2", w, 4 * w)
    norm(f"{v}.norm", w)

    t = "blip.text_encoder"
    out += [
        (f"{t}.embeddings.position_ids", (1, config["max_position_embeddings"]), "positions"),
        (f"{t}.embeddings.word_embeddings.weight", (config["vocab_size"], h), "embedding"),
        (
            f"{t}.embeddings.position_embeddings.weight",
            (config["max_position_embeddings"], h),
            "embedding",
        ),
    ]
    norm(f"{t}.embeddings.LayerNorm", h)
    for i in range(config["num_hidden_layers"]):
        layer = f"{t}.encoder.layer.{i}"
        for part, kv_width in (("attention", h), ("crossattention", w)):
            linear(f"{layer}.{part}.self.query", h, h)
            linear(f"{layer}.{part}.self.key", h, kv_width)
            linear(f"{layer}.{part}.self.value", h, kv_width)
            linear(f"{layer}.{part}.output.dense", h, h)
            norm(f"{layer}.{part}.output.LayerNorm", h)
        linear(f"{layer}.intermediate.dense", f, h)
        linear(f"{layer}.output.dense", h, f)
        norm(f"{layer}.output.LayerNorm", h)
    linear("blip.vision_proj", EMBED_DIM, w)
    linear("blip.text_proj", EMBED_DIM, h)
    sizes = (h, *HEAD_SIZES)
    for index, (n_in, n_out) in zip((0, 2, 4, 6, 7), itertools.pairwise(sizes), strict=True):
        linear(f"mlp.layers.{index}", n_out, n_in)
    return out


def tiny_state_dict(
    seed: int = 0, config: dict | None = None, depth: int = VISION_DEPTH, patch: int = PATCH
) -> dict:
    """The tiny ImageReward state dict: seeded, unit-variance-preserving random tensors."""
    import torch

    config = config or tiny_med_config()
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, kind in _shapes(config, depth, patch):
        if kind == "positions":
            state[key] = torch.arange(shape[1]).expand(1, -1).clone()
            continue
        noise = torch.randn(shape, generator=gen, dtype=torch.float32)
        if kind == "linear":  # std 1/sqrt(fan_in): outputs keep the inputs' scale
            fan_in = int(np.prod(shape[1:]))
            state[key] = noise / float(np.sqrt(fan_in))
        elif kind == "norm_weight":
            state[key] = 1.0 + 0.1 * noise
        elif kind == "bias":
            state[key] = 0.1 * noise
        else:  # embeddings, class token, positions
            state[key] = noise
    return state


def state_digest(state: dict, *texts: str) -> str:
    """sha256 over keys, dtypes, shapes and bytes of ``state`` (then ``texts``): the same
    weights give the same digest whichever torch wrote or read the file."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    for text in texts:
        digest.update(text.encode("utf-8"))
    return digest.hexdigest()


def write_vocab(folder: Path, tokens=TINY_VOCAB) -> Path:
    """``vocab.txt``: one WordPiece token per line, its line number its id."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "vocab.txt"
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def write_tiny_imagereward(
    root: Path,
    seed: int = 0,
    vision_width: int = VISION_WIDTH,
    depth: int = VISION_DEPTH,
    patch: int = PATCH,
) -> dict[str, Path]:
    """The three files under ``root`` in the weights-folder layout; returns their paths
    (``weights``, ``med_config``, ``vocab``). The ViT's width (a multiple of 64), depth
    and patch (a divisor of 224) can be changed: ``benchmarks/scoring.py`` uses a 64-wide,
    one-block ViT with 32 px patches, so that the model's arithmetic does not hide what
    batching saves."""
    import torch

    folder = root / IMAGEREWARD_REPO
    folder.mkdir(parents=True, exist_ok=True)
    config = tiny_med_config(vision_width)
    weights = folder / "ImageReward.pt"
    torch.save(tiny_state_dict(seed, config, depth, patch), weights)
    med_config = folder / "med_config.json"
    med_config.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    vocab = write_vocab(root / TOKENIZER_REPO)
    return {"weights": weights, "med_config": med_config, "vocab": vocab}


def tiny_digest(seed: int = 0) -> str:
    """``state_digest`` of the tiny weights, med_config.json and vocabulary of ``seed``."""
    config = tiny_med_config()
    return state_digest(
        tiny_state_dict(seed, config), json.dumps(config, sort_keys=True), "\n".join(TINY_VOCAB)
    )


def pattern(height: int, width: int, channels: int, salt: int) -> np.ndarray:
    """A deterministic uint8 picture: gradients plus an integer hash as texture (integer
    arithmetic only, so the same in any numpy version; tiny_vlm's pictures use it too)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.int64)
    planes = []
    for c in range(channels):
        smooth = (x * (3 + c) + y * (5 + 2 * c) + salt * 37) % 256
        texture = ((x * 73856093) ^ (y * 19349663) ^ ((c + salt) * 83492791)) % 256
        planes.append((smooth + texture // 4) % 256)
    return np.stack(planes, axis=-1).astype(np.uint8)


def reference_images() -> list:
    """PIL images of several sizes and modes, the same in any numpy/PIL version:
    wide, tall, already 224, small RGBA with varying alpha (upscaled; the reference resizes
    before converting to RGB), grayscale, palette, and two widths whose centre-crop offset
    is (n - 224) / 2 = 0.5 and 1.0 (Python rounds 0.5 to 0)."""
    from PIL import Image

    rgba = pattern(48, 64, 4, 4)
    rgba[..., 3] = (np.arange(64)[None, :] * 4 + np.arange(48)[:, None]).astype(np.uint8)
    palette = Image.fromarray(pattern(225, 257, 1, 6)[..., 0] % 32, "P")
    palette.putpalette(pattern(1, 32, 3, 9).reshape(-1).tolist())
    return [
        Image.fromarray(pattern(200, 300, 3, 1)),
        Image.fromarray(pattern(301, 97, 3, 2)),
        Image.fromarray(pattern(224, 224, 3, 3)),
        Image.fromarray(rgba, "RGBA"),
        Image.fromarray(pattern(500, 500, 1, 5)[..., 0], "L"),
        palette,
        Image.fromarray(pattern(224, 225, 3, 7)),
        Image.fromarray(pattern(224, 226, 3, 8)),
    ]


def reference_cases() -> list[tuple[int, int]]:
    """(image index, prompt index) pairs of the fixture: every image with two prompts,
    every prompt at least twice."""
    n_images, n_prompts = len(reference_images()), len(REFERENCE_PROMPTS)
    return [(i, (i + k) % n_prompts) for i in range(n_images) for k in (0, 3)]
