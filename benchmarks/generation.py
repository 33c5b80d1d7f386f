"""Generation throughput: images/s at batch 1 vs batch 8 through the real job.

    python benchmarks/generation.py            # tiny random SD pipeline on the CPU
    python benchmarks/generation.py --gpu      # SD1.5-size UNet/VAE/CLIP-L (random), 512x512 fp16

Both modes run ``scoring.generation.job.generate_model`` -- the job `arena generate`
runs: per-image generators, the pipeline call, broken-output checks, PNG
encoding into the content-addressed store and one database commit per batch --
on a fresh temporary workspace per batch size, after a warm-up call. The
timing excludes model loading.

CPU mode uses the tiny pipeline of the tests (16x16 images, a few thousand UNet
parameters): the per-call cost (text encoding, scheduler set-up, Python
overhead of every UNet/VAE call, the database commit) dominates, as it does on a
GPU where one image leaves most of the device idle. The target is batching at
least 3x faster per image. GPU mode measures the same on a real-size SD1.5
architecture with random weights (the images are noise; the arithmetic is real).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring import _compat  # noqa: F401  (before diffusers imports torchvision)


def build_sd15_random(device: str, dtype):
    """SD1.5's UNet, VAE and CLIP ViT-L/14 text encoder configs with random weights."""
    import torch
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel

    from scoring.testing.tiny_diffusers import CLIP_VOCAB_SIZE, build_clip_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        sample_size=512,
    )
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=CLIP_VOCAB_SIZE,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    scheduler = DPMSolverMultistepScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    pipe = StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text,
        tokenizer=build_clip_tokenizer(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device, dtype)


def load_tiny(device: str):
    from arena.intake.checkpoints import ModelSource
    from scoring.generation.pipeline import load_pipeline
    from scoring.testing.tiny_diffusers import save_tiny_sd

    folder = save_tiny_sd(Path(tempfile.mkdtemp(prefix="tiny-sd-")) / "pipe")
    return load_pipeline(ModelSource(str(folder), "diffusers"), device, "fp32")


def measure(pipe, settings, batch_size: int, n_images: int, seeds: int) -> tuple[float, int]:
    """(images/s, images) of the job on a fresh workspace, pipeline already loaded."""
    from arena.storage.store import PromptRow, Store
    from scoring.generation.job import generate_model
    from scoring.generation.pipeline import quiet_libraries

    with tempfile.TemporaryDirectory() as tmp, quiet_libraries():
        store = Store.open(Path(tmp) / "ws")
        seeds = min(seeds, n_images)
        n_prompts = max(1, n_images // seeds)
        store.add_prompts(
            [
                PromptRow(f"a photo of object number {i}, detailed", f"p{i}")
                for i in range(n_prompts)
            ],
            prompt_set="bench",
        )
        model_id = store.add_model("bench", "diffusers", "benchmark")
        from scoring.generation.job import load_prompts

        prompts = load_prompts(store, "bench")
        summary = generate_model(
            store, model_id, "bench", prompts, settings, pipe,
            seeds=seeds, batch_size=batch_size, progress=False,
        )  # fmt: skip
        store.close()
    return summary.images_per_second, summary.generated


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpu", action="store_true", help="SD1.5-size random pipeline")
    parser.add_argument("--device", default=None, help="default: cuda with --gpu, else cpu")
    parser.add_argument("--size", type=int, default=None, help="default 512 (--gpu) / 16")
    parser.add_argument("--steps", type=int, default=None, help="default 20 (--gpu) / 4")
    parser.add_argument("--images", type=int, default=None, help="per batch size (default 32)")
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU mode: torch threads (1: on a shared 2-core machine more threads spin-wait)",
    )
    args = parser.parse_args(argv)

    import torch

    from scoring.generation.job import run_batch
    from scoring.generation.pipeline import quiet_libraries
    from scoring.generation.settings import GenerationSettings

    device = args.device or ("cuda" if args.gpu else "cpu")
    if args.gpu:
        dtype = "fp16" if device.startswith("cuda") else "fp32"
        size, steps = args.size or 512, args.steps or 20
        with quiet_libraries():
            pipe = build_sd15_random(device, torch.float16 if dtype == "fp16" else torch.float32)
        what = f"SD1.5-size random pipeline, {size}x{size}, {dtype}, {steps} steps, {device}"
    else:
        dtype, size, steps = "fp32", args.size or 16, args.steps or 4
        torch.set_num_threads(args.threads)
        with quiet_libraries():
            pipe = load_tiny(device)
        what = (
            f"tiny random SD pipeline, {size}x{size}, fp32, {steps} steps, {device}, "
            f"{args.threads} torch thread(s)"
        )
    settings = GenerationSettings(width=size, height=size, steps=steps, cfg=7.0, dtype=dtype)
    n_images = args.images or 32
    sizes = [int(b) for b in args.batch_sizes.split(",")]

    from scoring.generation.plan import plan_jobs

    with quiet_libraries():  # warm-up: first calls pay one-off kernel selection and allocation
        for b in sizes:
            run_batch(pipe, plan_jobs([(1, "w/1", "warm up")], b, 0), settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    print(f"generation benchmark: {what}; {n_images} images per batch size")
    rates = {}
    for b in sizes:
        t0 = time.perf_counter()
        rate, done = measure(pipe, settings, b, n_images, seeds=min(b, 4) if b > 1 else 4)
        rates[b] = rate
        print(
            f"  batch {b:>2}: {rate:8.2f} images/s  ({done} images, "
            f"{time.perf_counter() - t0:.1f} s with workspace set-up)"
        )
    if len(sizes) >= 2:
        lo, hi = sizes[0], sizes[-1]
        print(f"  speed-up per image, batch {hi} vs batch {lo}: {rates[hi] / rates[lo]:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
