"""Tiny, randomly initialised Stable Diffusion pipelines for tests and benchmarks.

Nothing is downloaded: the UNet, VAE and text encoder are built from small
configs of the real architectures, and the CLIP tokenizer is built from the
BPE vocabulary that open_clip ships inside its wheel (the same 49,408-token
vocabulary as OpenAI CLIP / Stable Diffusion), so token counts -- and the
77-token truncation -- behave exactly as with a real checkpoint. The result is
saved with ``save_pretrained`` and loaded back through the real loading code.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)

CLIP_VOCAB_SIZE = 49408


@dataclass(frozen=True)
class TinyConfig:
    """Sizes of the tiny pipeline; ``sample_size`` is the latent side (image = 2x)."""

    unet_channels: tuple[int, ...] = (8, 16)
    layers_per_block: int = 1
    sample_size: int = 8
    cross_attention_dim: int = 16
    text_layers: int = 2
    vae_channels: tuple[int, ...] = (8, 16)
    norm_groups: int = 4
    seed: int = 0

    @property
    def image_size(self) -> int:
        return self.sample_size * 2 ** (len(self.vae_channels) - 1)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-to-unicode table (printable characters stand in for raw bytes)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def clip_bpe_vocab() -> tuple[list[str], list[str]]:
    """(vocabulary, merges) of the CLIP tokenizer, from open_clip's bundled BPE file."""
    import open_clip.tokenizer as oct

    with gzip.open(oct.default_bpe()) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = list(_bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols]
    vocab += ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise RuntimeError(f"open_clip's BPE file gave {len(vocab)} tokens, not {CLIP_VOCAB_SIZE}")
    return vocab, merges


def build_clip_tokenizer():
    """The CLIP BPE tokenizer (77-token context) from open_clip's bundled vocabulary."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_bpe_vocab()
    return CLIPTokenizer(
        vocab={tok: i for i, tok in enumerate(vocab)},
        merges=[tuple(m.split()) for m in merges],
        model_max_length=77,
        pad_token="<|endoftext|>",
    )


def build_tiny_sd(cfg: TinyConfig = TinyConfig()):
    """A StableDiffusionPipeline of the real architecture with tiny random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(cfg.seed)
    n = len(cfg.unet_channels)
    unet = UNet2DConditionModel(
        sample_size=cfg.sample_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=cfg.unet_channels,
        layers_per_block=cfg.layers_per_block,
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (n - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (n - 1) + ("UpBlock2D",),
        cross_attention_dim=cfg.cross_attention_dim,
        attention_head_dim=2,
        norm_num_groups=cfg.norm_groups,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=cfg.vae_channels,
        down_block_types=("DownEncoderBlock2D",) * len(cfg.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(cfg.vae_channels),
        latent_channels=4,
        norm_num_groups=cfg.norm_groups,
        sample_size=cfg.image_size,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=cfg.cross_attention_dim,
            intermediate_size=2 * cfg.cross_attention_dim,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    tokenizer = build_clip_tokenizer()
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_tiny_sd(folder: Path, cfg: TinyConfig = TinyConfig(), nan: bool = False) -> Path:
    """Build and save a tiny pipeline in the diffusers folder format.

    With ``nan=True`` one UNet weight is NaN: every denoising step -- and so every
    image -- comes out NaN, which is how a broken fp16 checkpoint looks.
    """
    import torch

    pipe = build_tiny_sd(cfg)
    if nan:
        with torch.no_grad():
            pipe.unet.conv_out.bias.fill_(float("nan"))
    folder = Path(folder)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
