"""GPU check: reduced precision, TF32 and fp16 generation against fp32, and throughput.

    python benchmarks/gpu_check.py --device cuda                  # weights of the workspace
    python benchmarks/gpu_check.py --device cuda --pipeline PATH  # + generation on a checkpoint
    python benchmarks/gpu_check.py --tiny --device cpu            # tiny random models, seconds

Every check goes through the code the jobs run: the scoring job's decoding and
preprocessing (``runner.ImageDataset`` / ``collate``) and its ``score_batch``, which
applies each metric's own precision (``runner.precision_context``); the generation
job's ``load_pipeline`` and batch call.

1. **Agreement.** Each CLIP-based metric (clip, aesthetic, hpsv2, pickscore, imagereward) scores the
   same images loaded for fp32 and for fp16 / bf16 (``from_pretrained(dtype=...)``, the
   precision recorded in ``metric.version``). The reference is fp32 with TF32 off
   (``scoring.devices.full_fp32``), what the job computes and the CPU's numbers. Also
   shown: fp32 with TF32 on, what a GPU job would compute without the job's guard
   (PyTorch lets cuDNN run fp32 convolutions -- the ViT patch embedding -- in TF32 by
   default). Max |Δ| and Spearman ρ against the reference. tags, the
   classical metrics and anomaly compute in fp32 whatever the dtype: "fp32 only". On a
   CPU the jobs refuse fp16/bf16 (``parse_dtype``), and CPU autocast has its own kernels
   and op list, so an emulation would not give a GPU's numbers: "needs CUDA".
2. **TF32.** Anomaly complexity, vulnerability and AS_i with the metric's guard (TF32
   off) and with the guard replaced by TF32 forced on. n/a on a CPU or a pre-Ampere GPU.
3. **Generation.** A diffusers pipeline in fp16 (bf16 on a CPU, which has no fp16
   kernels) through ``generate_batch``: images that are non-finite, black or uniform
   (``checks.broken_reason``) and the NaN decodes the job did again with an fp32 VAE.
4. **Throughput.** Images/s of each metric alone at ``--batch-size`` in the job's default
   precision (fp16 for the CLIP-based metrics on CUDA): decode + preprocess in one
   process (the job spreads it over DataLoader workers), and scoring of preprocessed
   batches after a warm-up batch; generation images/s at ``--gen-batch``.

Metrics whose weights are missing are skipped with a line naming the file. The output
ends with a Markdown block for ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

STARTED = time.perf_counter()  # the figure printed counts the imports too
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gpu_check_io import (  # noqa: E402
    FP32_ONLY,
    METRICS,
    REDUCED,
    agreement,
    folder_images,
    machine,
    markdown,
    prompts_for,
    synthetic_images,
)
from scoring import _compat  # noqa: F401,E402  (before open_clip imports torchvision)


# -- inputs --------------------------------------------------------------------------------
def work_items(images, prompts, folder: Path) -> list:
    """The images as PNG files and the scoring job's WorkItems pointing at them (the
    metrics each item lacks are filled in per check by ``batches``)."""
    from scoring.metrics.runner import WorkItem

    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for k, (img, prompt) in enumerate(zip(images, prompts, strict=True)):
        path = folder / f"{k:05d}.png"
        img.save(path)
        items.append(WorkItem(k, f"{k:064x}", str(path), prompt, ()))
    return items


# -- scoring through the job's code --------------------------------------------------------
def batches(items, metrics, batch_size: int) -> list:
    """The job's batches: decode, preprocess (``ImageDataset``) and ``collate``."""
    from scoring.metrics.runner import ImageDataset, collate

    names = tuple(m.name for m in metrics)
    data = ImageDataset([dataclasses.replace(it, metrics=names) for it in items], metrics)
    out = []
    for start in range(0, len(items), batch_size):
        batch = collate([data[i] for i in range(start, min(start + batch_size, len(items)))])
        if batch.failed:
            item, error = batch.failed[0]
            raise RuntimeError(f"{item.path}: {error}")
        out.append(batch)
    return out


def score(metrics, prepared) -> dict[str, dict]:
    """{metric: {"values": (n,) array, "details": list}} through ``runner.score_batch``."""
    import torch

    from scoring.metrics.runner import score_batch

    out = {m.name: {"values": [], "details": []} for m in metrics}
    for batch in prepared:
        with torch.inference_mode():
            rows = score_batch(batch, metrics)
        for row in rows:
            out[row.metric]["values"].append(np.nan if row.value is None else row.value)
            out[row.metric]["details"].append(row.details)
    n = sum(len(batch.items) for batch in prepared)
    for name, entry in out.items():
        entry["values"] = np.asarray(entry["values"], dtype=np.float64)
        if len(entry["values"]) != n:  # a metric left images out: the check would be hollow
            raise RuntimeError(f"{name} scored {len(entry['values'])} of {n} images")
    return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def throughput(metric, items, batch_size: int, repeats: int) -> tuple[float, float]:
    """Images/s of ``metric`` alone: (decode + preprocess in this process, scoring of
    full preprocessed batches after a warm-up batch)."""
    import torch

    from scoring.metrics.runner import score_batch

    cycled = [items[k % len(items)] for k in range(batch_size)]
    start = time.perf_counter()
    (batch,) = batches(cycled, [metric], batch_size)
    prep = batch_size / (time.perf_counter() - start)
    with torch.inference_mode():
        rows = score_batch(batch, [metric])  # warm-up: kernel choice, allocator, prompt cache
        if len(rows) != batch_size:
            raise RuntimeError(f"{metric.name} scored {len(rows)} of {batch_size} images")
        synchronize(metric.device)
        start = time.perf_counter()
        for _ in range(repeats):
            score_batch(batch, [metric])
        synchronize(metric.device)
    return prep, batch_size * repeats / (time.perf_counter() - start)


def tf32_forced():
    """TF32 on for cuDNN convolutions (PyTorch's default, what the anomaly job ran with
    before its guard) and for CUDA matmuls (``set_float32_matmul_precision("high")``)."""
    from scoring.devices import tf32

    return tf32(True)


def anomaly_tf32(metric, prepared) -> dict[str, tuple]:
    """{quantity: (guarded values, TF32 values)} for complexity, vulnerability, AS_i."""
    from unittest import mock

    from scoring.metrics import anomaly

    guarded = score([metric], prepared)["anomaly"]
    with mock.patch.object(anomaly, "full_fp32", tf32_forced):
        forced = score([metric], prepared)["anomaly"]
    out = {}
    for key in ("complexity", "vulnerability"):
        out[key] = tuple(np.array([d[key] for d in r["details"]]) for r in (guarded, forced))
    out["AS_i"] = (guarded["values"], forced["values"])
    return out


# -- loading -------------------------------------------------------------------------------
def load(name: str, device: str, dtype, sources, shared, overrides: dict):
    """(metric, None) or (None, why it is skipped): missing weights name their files."""
    from scoring.metrics.base import get_metric
    from scoring.weights import MissingWeightsError, locate

    cls = get_metric(name)
    try:
        metric = cls.from_pretrained(
            None,
            device=device,
            dtype=dtype,
            sources=sources,
            shared=shared,
            model_overrides=overrides.get(name),
        )
    except MissingWeightsError as exc:
        missing = [f"{s.repo_id}/{s.filename}" for s in cls.weight_files if not locate(s, sources)]
        print(f"[skip] {name}: {exc}")
        return None, f"skipped: missing {', '.join(missing) or 'weights'}"
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"[skip] {name}: {exc}")
        return None, f"skipped: {str(exc).splitlines()[0][:120]}"
    return metric, None


def release(device: str) -> None:
    """Give a deleted model's GPU memory back before the next loads (a no-op on CPU)."""
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def bf16_problem(device: str) -> str | None:
    from scoring.devices import check_device

    try:
        check_device(device, "bf16")
    except ValueError:
        return "no bf16 on this GPU"
    return None


def tf32_problem(device: str) -> str | None:
    import torch

    if not device.startswith("cuda"):
        return "n/a on CPU (TF32 is an NVIDIA GPU mode)"
    if torch.cuda.get_device_capability(torch.device(device))[0] < 8:
        return "n/a: this GPU has no TF32 (compute capability < 8.0)"
    return None


# -- the checks ----------------------------------------------------------------------------
def check_metrics(args, sources, overrides, items, report: dict) -> None:
    """Fill ``report["metrics"][name]`` (agreement, throughput) and ``report["tf32"]``."""
    from scoring.devices import full_fp32

    cuda = args.device.startswith("cuda")
    rows = report["metrics"]
    reduced = [n for n in args.metrics if n in REDUCED]
    precisions = ["fp32", "fp16", "bf16"] if cuda else ["fp32"]
    reference: dict[str, np.ndarray] = {}
    for precision in precisions:
        if precision == "bf16" and bf16_problem(args.device):
            for name in reference:
                rows[name]["bf16"] = bf16_problem(args.device)
            continue
        shared: dict = {}
        loaded = []
        for name in reduced if precision == "fp32" else list(reference):
            metric, why = load(name, args.device, precision, sources, shared, overrides)
            if metric is None:
                rows[name]["note"] = why
            else:
                rows[name].setdefault("version", metric.version.split("+")[0])
                loaded.append(metric)
        if not loaded:
            continue
        prepared = batches(items, loaded, args.batch_size)
        if precision == "fp32":
            with full_fp32():
                truth = score(loaded, prepared)
            reference = {m.name: truth[m.name]["values"] for m in loaded}
            if cuda:  # what the job's TF32 guard (precision_context) saves
                from unittest import mock

                with mock.patch("scoring.devices.full_fp32", tf32_forced):
                    job = score(loaded, prepared)
                for m in loaded:
                    rows[m.name]["fp32 job"] = agreement(reference[m.name], job[m.name]["values"])
        else:
            got = score(loaded, prepared)
            for m in loaded:
                rows[m.name][precision] = agreement(reference[m.name], got[m.name]["values"])
        default = "fp16" if cuda else "fp32"  # the job's --dtype auto
        if precision == default:
            for m in loaded:
                rows[m.name]["precision"] = m.precision
                rows[m.name]["rate"] = throughput(m, items, args.batch_size, args.repeats)
        del loaded, shared
        release(args.device)

    for name in (n for n in args.metrics if n in FP32_ONLY):
        metric, why = load(name, args.device, None, sources, {}, overrides)
        if metric is None:
            rows[name]["note"] = why
            continue
        rows[name].update(version=metric.version, precision="fp32")
        rows[name]["rate"] = throughput(metric, items, args.batch_size, args.repeats)
        if name == "anomaly":
            report["tf32"] = tf32_problem(args.device) or anomaly_tf32(
                metric, batches(items, [metric], args.batch_size)
            )
        del metric
        release(args.device)


def generation_source(args, workdir: Path):
    """The ModelSource to generate with, or None when no pipeline was asked for."""
    from arena.intake.checkpoints import check_diffusers, check_single_file

    if args.tiny and not args.pipeline:
        from scoring.testing.tiny_diffusers import save_tiny_sd

        return check_diffusers(str(save_tiny_sd(workdir / "tiny-sd")), False)
    if not args.pipeline:
        return None
    allow = bool(os.environ.get("ARENA_ALLOW_NETWORK"))
    if args.pipeline.endswith(".safetensors"):
        return check_single_file(args.pipeline, None, allow)
    return check_diffusers(args.pipeline, allow)


def check_generation(args, workdir: Path) -> dict:
    """Generate ``--gen-images`` images in fp16 (bf16 on CPU) and count the broken ones."""
    from arena.intake.checkpoints import CheckpointError
    from scoring.generation.checks import broken_reason
    from scoring.generation.job import generate_batch
    from scoring.generation.pipeline import load_pipeline, quiet_libraries, resolve_device_dtype
    from scoring.generation.plan import make_batches, plan_jobs
    from scoring.generation.settings import GenerationError, GenerationSettings

    dtype = args.gen_dtype or ("fp16" if args.device.startswith("cuda") else "bf16")
    tiny = args.tiny and not args.pipeline
    size, steps = args.gen_size or (16 if tiny else 512), args.gen_steps or (4 if tiny else 20)
    try:
        src = generation_source(args, workdir)
        if src is None:
            return {"skipped": "no --pipeline given (a diffusers folder, hub id or .safetensors)"}
        resolve_device_dtype(args.device, dtype)
        settings = GenerationSettings(
            width=size, height=size, steps=steps, cfg=7.0, dtype=dtype, vae_fp32=args.vae_fp32
        )
    except (CheckpointError, GenerationError) as exc:
        return {"skipped": str(exc)}
    seeds = 2
    texts = prompts_for(max(1, math.ceil(args.gen_images / seeds)))
    jobs = plan_jobs([(k + 1, f"check/{k}", t) for k, t in enumerate(texts)], seeds, 0)
    jobs = jobs[: args.gen_images]
    out = {"source": src.source, "dtype": dtype, "size": size, "steps": steps}
    out.update(vae="fp32" if settings.vae_fp32 else dtype, images=len(jobs), retried=0)
    out["reasons"] = {"nan": 0, "black": 0, "uniform": 0}
    try:
        with quiet_libraries():
            pipe = load_pipeline(src, args.device, dtype, vae_fp32=settings.vae_fp32)
            generate_batch(pipe, jobs[:1], settings)  # warm-up
            synchronize(args.device)
            start = time.perf_counter()
            for batch in make_batches(jobs, args.gen_batch):
                result = generate_batch(pipe, batch, settings)
                out["retried"] += sum(result.vae_retried)  # NaN decodes done again in fp32
                for raw in result.images:
                    reason = broken_reason(raw)
                    if reason:
                        out["reasons"][reason] += 1
            synchronize(args.device)
            out["rate"] = len(jobs) / (time.perf_counter() - start)
    except GenerationError as exc:
        return {"skipped": str(exc)}
    del pipe
    release(args.device)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--weights-dir", help="default: the workspace's weights_dir setting")
    parser.add_argument("--workspace", help="the workspace whose settings give weights_dir")
    parser.add_argument("--tiny", action="store_true", help="tiny random models (a smoke run)")
    parser.add_argument("--metrics", default=",".join(METRICS))
    parser.add_argument("--images", type=int, help="images scored (default 64; tiny 8)")
    parser.add_argument("--images-dir", help="score these images (prompt: NAME.txt or stem)")
    parser.add_argument("--batch-size", type=int, help="default 64 on CUDA, 4 on CPU")
    parser.add_argument("--repeats", type=int, help="timed batches per metric (3; tiny 1)")
    parser.add_argument("--pipeline", help="generation check: diffusers folder, hub id, file")
    parser.add_argument("--gen-dtype", choices=("fp16", "bf16", "fp32"))
    parser.add_argument("--gen-size", type=int)
    parser.add_argument("--gen-steps", type=int)
    parser.add_argument("--gen-images", type=int, default=8)
    parser.add_argument("--gen-batch", type=int, default=4)
    parser.add_argument("--vae-fp32", action="store_true", help="generation: VAE in fp32")
    parser.add_argument("--no-generation", action="store_true")
    args = parser.parse_args(argv)

    from scoring.devices import check_device
    from scoring.weights import WeightSources

    try:
        check_device(args.device)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    args.metrics = [n.strip() for n in args.metrics.split(",") if n.strip()]
    unknown = sorted(set(args.metrics) - set(METRICS))
    if unknown:
        raise SystemExit(f"--metrics: unknown {', '.join(unknown)}; known: {', '.join(METRICS)}")
    cuda = args.device.startswith("cuda")
    args.batch_size = args.batch_size or (64 if cuda else 4)
    args.repeats = args.repeats or (1 if args.tiny else 3)
    n_images = args.images or (8 if args.tiny else 64)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        workdir = Path(tmp)
        overrides: dict = {}
        if args.tiny:
            from scoring.testing.tiny_scorers import HPS_OVERRIDES, write_weights_folder

            sources = WeightSources(write_weights_folder(workdir / "weights"))
            overrides["hpsv2"] = HPS_OVERRIDES
        elif args.weights_dir:
            sources = WeightSources(Path(args.weights_dir).expanduser())
        else:
            from arena.config import load_settings

            sources = WeightSources.of(load_settings(workspace=args.workspace))
        if args.images_dir:
            images, prompts = folder_images(Path(args.images_dir), n_images)
            inputs = f"from {args.images_dir}"
        else:
            images, prompts = synthetic_images(n_images, 64 if args.tiny else 512), None
            inputs = "synthetic, 64 px" if args.tiny else "synthetic, 512 px"
        prompts = prompts or prompts_for(len(images))
        items = work_items(images, prompts, workdir / "images")
        report = {"metrics": {n: {} for n in args.metrics}, "n_images": len(items)}
        report.update(machine=machine(args.device), inputs=inputs)
        report["command"] = "python benchmarks/gpu_check.py " + " ".join(argv or sys.argv[1:])
        print(f"gpu check on {report['machine']}")
        print(f"weights: {'tiny random models' if args.tiny else sources.folder or 'HF cache'}")
        from scoring.generation.pipeline import quiet_libraries

        with quiet_libraries():  # no per-load progress bars
            check_metrics(args, sources, overrides, items, report)
        if not args.no_generation:
            report["generation"] = check_generation(args, workdir)
    report["seconds"] = time.perf_counter() - STARTED
    print("\n<!-- paste into benchmarks/README.md -->")
    print(markdown(args, report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
