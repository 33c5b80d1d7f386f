"""ImageReward v1.0 (Xu et al. 2023): BLIP image-text cross-encoder with a reward head.

What is computed, exactly (facts from the reference ``image-reward`` 1.5 package):

* Weights: ``ImageReward.pt`` of the hub repo ``THUDM/ImageReward``, a plain state dict
  of the reference ``ImageReward`` module: ``blip.visual_encoder.*`` (BLIP's ViT-L/16 at
  224 px: 1024 wide, 24 blocks, 16 heads, LayerNorm eps 1e-6, exact GELU),
  ``blip.text_encoder.*`` (BLIP's med.py BERT: cross-attention to the image tokens in
  every layer, no token-type embeddings, no pooler) and ``mlp.layers.{0,2,4,6,7}`` (five
  Linear layers 768 -> 1024 -> 128 -> 64 -> 16 -> 1 with dropouts between and *no*
  activations). It also holds ``blip.vision_proj``/``blip.text_proj`` and the text
  encoder's ``position_ids`` buffer, which the score never uses: they are accepted and
  ignored; any other key, a missing one or a wrong shape is an error naming the file.
* ``med_config.json`` (same repo) gives the text encoder's sizes; its cross-attention
  keys and values take the ViT's width (the reference sets ``encoder_width`` so). The
  ViT's depth, width, patch and grid are read from the weights' shapes, its heads are
  width / 64 (BLIP's ViTs have 64-wide heads), and its input must be 224 px.
* Tokenizer: bert-base-uncased's WordPiece vocabulary (``vocab.txt`` of the hub repo
  ``bert-base-uncased``, lower-cased), with ``[DEC]`` added as bos token and ``[ENC]``
  as additional special token (BLIP's ``init_tokenizer``); prompts are padded to and
  truncated at 35 tokens.
* Image: ``Resize(224)`` bicubic on the shortest side (the long side becomes
  ``int(224 * long / short)``), centre crop 224x224 (offset ``round((n - 224) / 2)``),
  *then* RGB conversion (the reference's order: an RGBA image is resized with its
  alpha), /255, OpenAI CLIP mean/std (BLIP's normalisation).
* Score: the text encoder's first-token ([CLS]) output with cross-attention to all ViT
  tokens, through the MLP, normalised ``(r - 0.16717362830052426) / 1.0333394966054072``
  (the package's ``mean``/``std``). Higher is better; typical values lie in about [-2, 2].

The text encoder is transformers' ``BlipTextModel`` (its port of med.py: same key names,
cross-attention width ``encoder_hidden_size``), run as an encoder (``is_decoder=False``);
the ViT is written here (its keys are the reference's; attention through
``scaled_dot_product_attention``).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image as PILImage

from scoring import _compat  # noqa: F401  (before transformers imports torchvision)
from scoring.metrics.base import LoadRequest, Metric, WeightFile, register_metric
from scoring.metrics.openai_clip import autocast, parse_dtype
from scoring.weights import MissingWeightsError, WeightSources, locate, read_torch_file, resolve

if TYPE_CHECKING:
    import torch

NAME = "imagereward"
IMAGE_SIZE = 224
MAX_TOKENS = 35
BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072
HEAD_WIDTH = 64  # BLIP's ViT-B and ViT-L both have 64-wide attention heads
HEAD_SIZES = (1024, 128, 64, 16, 1)  # the reward MLP after its input
VIT_EPS = 1e-6
SIZE_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
             "intermediate_size", "max_position_embeddings")  # fmt: skip

WEIGHTS = WeightFile("THUDM/ImageReward", "ImageReward.pt")
MED_CONFIG = WeightFile("THUDM/ImageReward", "med_config.json")
VOCAB = WeightFile("bert-base-uncased", "vocab.txt")
# The same vocabulary under the repo's current name, looked for when the old one is missing.
VOCAB_ALIASES = (WeightFile("google-bert/bert-base-uncased", "vocab.txt"),)
# Keys of the reference module that the score never reads: accepted, present or not.
UNUSED_KEYS = frozenset(
    {
        "blip.vision_proj.weight",
        "blip.vision_proj.bias",
        "blip.text_proj.weight",
        "blip.text_proj.bias",
        "blip.text_encoder.embeddings.position_ids",
    }
)
EXPECTED = "Expected ImageReward.pt and med_config.json from the hub repo THUDM/ImageReward."


# -- preprocessing -------------------------------------------------------------------
def resize_and_crop(image: PILImage.Image, size: int = IMAGE_SIZE) -> PILImage.Image:
    """Shortest side to ``size`` (bicubic, in the image's own mode), centre crop to a square.

    The sizes and offsets are torchvision's ``Resize(size)`` + ``CenterCrop(size)`` on a
    PIL image, which the reference composes.
    """
    width, height = image.size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), PILImage.Resampling.BICUBIC)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


# ``ToTensor`` + ``Normalize`` of each byte value per channel: /255, - mean, / std, the
# same correctly rounded float32 operations in the same order, so the same bits; looking
# them up costs a third of computing them for every pixel.
_NORMALISED = (
    (np.arange(256, dtype=np.float32) / np.float32(255))[None, :]
    - np.asarray(BLIP_MEAN, dtype=np.float32)[:, None]
) / np.asarray(BLIP_STD, dtype=np.float32)[:, None]


def preprocess(image: PILImage.Image, size: int = IMAGE_SIZE) -> torch.Tensor:
    """One PIL image -> the normalised (3, size, size) float32 tensor ImageReward sees."""
    import torch

    rgb = np.asarray(resize_and_crop(image, size).convert("RGB"))
    planes = [np.take(_NORMALISED[c], rgb[..., c]) for c in range(3)]
    return torch.from_numpy(np.stack(planes))


# -- the model -----------------------------------------------------------------------
def _modules():
    """The torch modules, defined on first use so that importing this file needs no torch."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class Attention(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(width, 3 * width)
            self.proj = nn.Linear(width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            n, tokens, width = x.shape
            qkv = self.qkv(x).reshape(n, tokens, 3, self.heads, width // self.heads)
            q, k, v = qkv.permute(2, 0, 3, 1, 4)
            out = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(head width)
            return self.proj(out.transpose(1, 2).reshape(n, tokens, width))

    class Mlp(nn.Module):
        def __init__(self, width: int):
            super().__init__()
            self.fc1 = nn.Linear(width, 4 * width)
            self.fc2 = nn.Linear(4 * width, width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc2(F.gelu(self.fc1(x)))

    class Block(nn.Module):
        def __init__(self, width: int, heads: int):
            super().__init__()
            self.norm1 = nn.LayerNorm(width, eps=VIT_EPS)
            self.attn = Attention(width, heads)
            self.norm2 = nn.LayerNorm(width, eps=VIT_EPS)
            self.mlp = Mlp(width)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.norm1(x))
            return x + self.mlp(self.norm2(x))

    class PatchEmbed(nn.Module):
        def __init__(self, width: int, patch: int):
            super().__init__()
            self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            return self.proj(pixels).flatten(2).transpose(1, 2)

    class BlipViT(nn.Module):
        """BLIP's ViT: class token + patches + positions, pre-norm blocks, final norm;
        returns every token (the text encoder attends to all of them)."""

        def __init__(self, width: int, depth: int, patch: int, grid: int):
            super().__init__()
            heads = width // HEAD_WIDTH
            self.patch_embed = PatchEmbed(width, patch)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
            self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, width))
            self.blocks = nn.ModuleList(Block(width, heads) for _ in range(depth))
            self.norm = nn.LayerNorm(width, eps=VIT_EPS)

        def forward(self, pixels: torch.Tensor) -> torch.Tensor:
            x = self.patch_embed(pixels)
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            x = x + self.pos_embed[:, : x.shape[1]]
            for block in self.blocks:
                x = block(x)
            return self.norm(x)

    class RewardHead(nn.Module):
        """The reference MLP: Linear layers at indices 0, 2, 4, 6, 7, dropouts between."""

        def __init__(self, width: int):
            super().__init__()
            sizes = (width, *HEAD_SIZES)
            layers: list[nn.Module] = []
            for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
                layers.append(nn.Linear(n_in, n_out))
                if k < 3:
                    layers.append(nn.Dropout(0.0))
            self.layers = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    class ImageRewardModel(nn.Module):
        def __init__(self, vit: nn.Module, text: nn.Module, width: int):
            super().__init__()
            self.blip = nn.Module()
            self.blip.visual_encoder = vit
            self.blip.text_encoder = text
            self.mlp = RewardHead(width)

    return BlipViT, ImageRewardModel


def vit_shape(state: dict[str, Any], path: Path) -> dict[str, int]:
    """Width, depth, patch and grid of the ViT in ``state``; the input must be 224 px."""
    prefix = "blip.visual_encoder."
    try:
        width = int(state[prefix + "cls_token"].shape[-1])
        patch = int(state[prefix + "patch_embed.proj.weight"].shape[-1])
        tokens = int(state[prefix + "pos_embed"].shape[1])
    except KeyError as exc:
        raise ValueError(
            f"metric {NAME!r}: {path} has no {exc.args[0]!r}: not an ImageReward state dict. "
            f"{EXPECTED}"
        ) from None
    grid = math.isqrt(tokens - 1)
    depth = len({k.split(".")[3] for k in state if k.startswith(prefix + "blocks.")})
    if grid * grid != tokens - 1 or grid * patch != IMAGE_SIZE or width % HEAD_WIDTH:
        raise ValueError(
            f"metric {NAME!r}: {path} holds a ViT for {grid * patch} px (patch {patch}, "
            f"{tokens} tokens, width {width}); ImageReward's is 224 px with 64-wide heads. "
            f"{EXPECTED}"
        )
    return {"width": width, "depth": depth, "patch": patch, "grid": grid}


def text_config(path: Path, vision_width: int) -> Any:
    """transformers' ``BlipTextConfig`` from ``med_config.json`` (BertConfig's defaults)."""
    from transformers import BlipTextConfig

    try:
        med = json.loads(path.read_text(encoding="utf-8"))
        sizes = {k: int(med[k]) for k in SIZE_KEYS}
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"metric {NAME!r}: {path} is not BLIP's med_config.json ({type(exc).__name__}: "
            f"{exc}). {EXPECTED}"
        ) from None
    act = med.get("hidden_act", "gelu")
    position = med.get("position_embedding_type", "absolute")
    if act != "gelu" or position != "absolute" or not med.get("add_cross_attention", False):
        raise ValueError(
            f"metric {NAME!r}: {path} asks for hidden_act={act!r}, position_embedding_type="
            f"{position!r}, add_cross_attention={med.get('add_cross_attention')!r}; ImageReward's "
            f"text encoder is 'gelu', 'absolute', true. {EXPECTED}"
        )
    return BlipTextConfig(
        **sizes,
        encoder_hidden_size=vision_width,
        hidden_act="gelu",
        layer_norm_eps=float(med.get("layer_norm_eps", 1e-12)),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=int(med.get("pad_token_id", 0)),
        bos_token_id=None,  # generation-only ids, unused by an encoder
        eos_token_id=None,
        sep_token_id=None,
        is_decoder=True,  # builds the cross-attention layers; forward runs as an encoder
    )


def read_state_dict(path: Path) -> dict[str, Any]:
    """The tensors of ``ImageReward.pt``, with a clear error for anything else."""
    import torch

    state = read_torch_file(NAME, path, EXPECTED)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"metric {NAME!r}: {path} is not a state dict (a dict of tensors). {EXPECTED}"
        )
    return state


def load_model(weights: Path, med_config: Path) -> Any:
    """The ImageReward model with ``weights`` loaded: every used key, nothing unknown."""
    from transformers import BlipTextModel

    state = read_state_dict(weights)
    vit = vit_shape(state, weights)
    BlipViT, ImageRewardModel = _modules()
    config = text_config(med_config, vit["width"])
    text = BlipTextModel(config, add_pooling_layer=False)
    model = ImageRewardModel(BlipViT(**vit), text, config.hidden_size)
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and k not in UNUSED_KEYS)
    unknown = sorted(k for k in state if k not in own and k not in UNUSED_KEYS)
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} (expected {tuple(own[k].shape)})"
        for k in own
        if k in state and state[k].shape != own[k].shape
    )
    if missing or unknown or shapes:
        problems = [
            f"{label} ({len(keys)}): {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unknown), ("shape", shapes))
            if keys
        ]
        raise ValueError(
            f"metric {NAME!r}: {weights} does not match ImageReward with {med_config} "
            f"(strict load: {'; '.join(problems)}). {EXPECTED}"
        )
    model.load_state_dict({k: state.get(k, v) for k, v in own.items()}, strict=True)
    return model.eval()


def load_tokenizer(vocab: Path) -> Any:
    """bert-base-uncased's tokenizer from its ``vocab.txt``, with BLIP's two added tokens."""
    import shutil
    import tempfile

    from transformers import BertTokenizer

    folder = vocab.parent
    with tempfile.TemporaryDirectory() as tmp:
        if vocab.name != "vocab.txt":  # from_pretrained reads a folder's vocab.txt
            folder = Path(tmp)
            shutil.copyfile(vocab, folder / "vocab.txt")
        tokenizer = BertTokenizer.from_pretrained(folder, do_lower_case=True, local_files_only=True)
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    return tokenizer


# -- where the three files are -------------------------------------------------------
def _companion(spec: WeightFile, beside: list[Path], sources: WeightSources | None) -> Path:
    """A file that goes with ``ImageReward.pt``: beside it first, then the weights
    folder, the Hugging Face cache (or a download), then ``spec``'s aliases."""
    hit = next((p for p in beside if p.is_file()), None)
    if hit is not None:
        return hit
    try:
        return resolve(NAME, spec, None, sources)
    except MissingWeightsError as exc:
        for alias in VOCAB_ALIASES if spec is VOCAB else ():
            hit = locate(alias, sources)
            if hit is not None:
                return hit
        # --weights names ImageReward.pt, not this file: point beside it instead.
        lines = [line for line in str(exc).splitlines() if "pass the path" not in line]
        lines[1:1] = [f"  - {p} (beside ImageReward.pt)" for p in beside]  # searched first
        at = lines.index("Provide it in one of these ways:") + 1
        lines.insert(at, f"  - put it beside ImageReward.pt: {beside[0]}")
        raise MissingWeightsError("\n".join(lines)) from None


def resolve_files(
    weights: str | Path | None = None,
    processor: str | Path | None = None,
    sources: WeightSources | None = None,
) -> tuple[Path, Path, Path]:
    """(ImageReward.pt, med_config.json, vocab.txt).

    ``weights`` is ``ImageReward.pt`` itself or a folder holding it (directly or under
    ``THUDM/ImageReward``). ``med_config.json`` and the vocabulary are looked for beside
    it (the vocabulary also under ``bert-base-uncased/`` there and beside ``weights``),
    then in the weights folder and the Hugging Face cache. ``processor`` (a ``vocab.txt``
    or a folder holding one) names the vocabulary explicitly.
    """
    path = resolve(NAME, WEIGHTS, weights, sources)
    med = _companion(MED_CONFIG, [path.parent / MED_CONFIG.filename], sources)
    if processor is not None:
        return path, med, resolve(NAME, VOCAB, processor, sources)
    beside = [path.parent / VOCAB.filename, path.parent / VOCAB.repo_id / VOCAB.filename]
    if weights is not None and Path(weights).expanduser().is_dir():
        beside.append(Path(weights).expanduser() / VOCAB.repo_id / VOCAB.filename)
    return path, med, _companion(VOCAB, beside, sources)


@register_metric
class ImageReward(Metric):
    name: ClassVar[str] = NAME
    version: ClassVar[str] = "v1.0"
    needs_prompt: ClassVar[bool] = True
    higher_is_better: ClassVar[bool] = True
    reduced_precision: ClassVar[bool] = True
    description: ClassVar[str] = (
        "ImageReward v1.0: BLIP ViT-L + cross-attention BERT reward model trained on 137k "
        "expert comparisons, (reward - 0.167) / 1.033; image resized to 224 and centre-cropped."
    )
    weight_files: ClassVar[tuple[WeightFile, ...]] = (WEIGHTS, MED_CONFIG, VOCAB)

    def __init__(self, model: Any, tokenizer: Any, device: str = "cpu", dtype: Any = None):
        self.model = model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = parse_dtype(device, dtype)  # the compute dtype under autocast
        self.token_cache: dict[str, tuple[Any, Any]] = {}

    @classmethod
    def load(cls, request: LoadRequest) -> ImageReward:
        """Resolve the three files (``processor``: the vocabulary's own path), build the
        model from their shapes and load it strictly."""
        weights, med_config, vocab = resolve_files(
            request.weights, request.processor, request.sources
        )
        model = load_model(weights, med_config)
        try:
            tokenizer = load_tokenizer(vocab)
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"metric {NAME!r}: could not read the bert-base-uncased vocabulary {vocab}: "
                f"{str(exc).splitlines()[0]}"
            ) from None
        vocab_size = model.blip.text_encoder.config.vocab_size
        if len(tokenizer) > vocab_size:
            raise ValueError(
                f"metric {NAME!r}: the vocabulary {vocab} has {len(tokenizer)} tokens with "
                f"[DEC] and [ENC], more than the {vocab_size} rows of {weights}; expected "
                "bert-base-uncased's vocab.txt (30522 tokens)."
            )
        # Weights stay fp32; fp16/bf16 on CUDA runs under autocast.
        return cls(model.to(request.device), tokenizer, request.device, request.dtype)

    def preprocessor(self) -> Callable[[PILImage.Image], torch.Tensor]:
        """Runs in the job's DataLoader workers: image -> cropped, normalised (3, 224, 224)."""
        return functools.partial(preprocess, size=IMAGE_SIZE)

    def tokens(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(input_ids, attention_mask), (n, 35) each; each distinct prompt tokenised once."""
        import torch

        new = [p for p in dict.fromkeys(prompts) if p not in self.token_cache]
        if new:
            out = self.tokenizer(
                new,
                padding="max_length",
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            )
            self.token_cache.update(
                zip(new, zip(out["input_ids"], out["attention_mask"], strict=True), strict=True)
            )
        ids, mask = zip(*(self.token_cache[p] for p in prompts), strict=True)
        return torch.stack(ids).to(self.device), torch.stack(mask).to(self.device)

    def rewards(self, pixels: torch.Tensor, prompts: Sequence[str]) -> np.ndarray:
        """Raw (unnormalised) rewards of a preprocessed batch, as float64."""
        import torch

        ids, mask = self.tokens(prompts)
        pixels = pixels.to(device=self.device, dtype=torch.float32)
        with torch.inference_mode():
            with autocast(self.device, self.dtype):
                image_tokens = self.model.blip.visual_encoder(pixels)
                out = self.model.blip.text_encoder(
                    input_ids=ids,
                    attention_mask=mask,
                    encoder_hidden_states=image_tokens,
                    is_decoder=False,
                    return_dict=True,
                )
            # The reference's head runs on float32 features (``.float()``), so does this one.
            reward = self.model.mlp(out.last_hidden_state[:, 0, :].float())
        return reward[:, 0].double().cpu().numpy()

    def score_inputs(
        self, inputs: torch.Tensor, prompts: Sequence[str] | None = None
    ) -> np.ndarray:
        """Normalised rewards of a preprocessed (n, 3, 224, 224) batch (see ``preprocessor``)."""
        self.check_prompts(inputs, prompts)
        if len(inputs) == 0:
            return np.zeros(0, dtype=np.float64)
        return (self.rewards(inputs, prompts) - REWARD_MEAN) / REWARD_STD
