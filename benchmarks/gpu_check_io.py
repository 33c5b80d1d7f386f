"""The inputs and the printed report of ``benchmarks/gpu_check.py``.

Kept apart from the checks so that the script stays readable: synthetic or folder
images with prompts, the agreement statistics, the machine line and the Markdown
block a user pastes into ``benchmarks/README.md``. Nothing here loads a model.
"""

from __future__ import annotations

import math
import os
import platform
from pathlib import Path

import numpy as np

# computed under fp16/bf16 autocast
REDUCED = ("clip", "aesthetic", "hpsv2", "pickscore", "imagereward")
FP32_ONLY = ("tags", "sharpness", "colorfulness", "contrast", "anomaly")
METRICS = REDUCED + FP32_ONLY
PROMPT_PARTS = (
    ("1girl, solo", "1boy, solo", "2girls", "no humans"),
    ("long hair", "short hair", "red hair", "blue eyes"),
    ("smile, outdoors", "city street at night", "a bowl of fruit", "mountain lake, sunset"),
)
# What the cells of a CPU run say: the job's fp32 there is the reference itself, and
# the jobs refuse fp16/bf16 on a CPU (``parse_dtype``).
CPU_CELLS = {"fp32 job": "n/a on CPU", "fp16": "needs CUDA", "bf16": "needs CUDA"}


# -- inputs --------------------------------------------------------------------------------
def synthetic_images(n: int, size: int, seed: int = 0) -> list:
    """Smooth colour fields with a few ellipses and noise: varied scores, deterministic."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        grid = rng.integers(0, 256, (int(rng.integers(2, 7)),) * 2 + (3,), dtype=np.uint8)
        img = Image.fromarray(grid).resize((size, size), Image.BICUBIC)
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(1, 5))):
            x0, y0 = (int(v) for v in rng.integers(0, size, 2))
            w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
        noise = rng.normal(0, rng.uniform(0, 12), (size, size, 3))
        pixels = np.asarray(img, dtype=np.float32) + noise
        out.append(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
    return out


def prompts_for(n: int) -> list[str]:
    """``n`` varied prompts in the tag style the anime evaluators use (tags need them)."""
    a, b, c = PROMPT_PARTS
    return [f"{a[k % 4]}, {b[(k // 4) % 4]}, {c[(k // 16 + k) % 4]}" for k in range(n)]


def folder_images(folder: Path, n: int) -> tuple[list, list[str]]:
    """Up to ``n`` images of ``folder``; the prompt is the ``.txt`` beside it or the stem."""
    from PIL import Image

    if not folder.is_dir():
        raise SystemExit(f"--images-dir {folder}: not a folder.")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".webp"))
    if not files:
        raise SystemExit(f"--images-dir {folder}: no .png/.jpg/.webp files there.")
    images, prompts = [], []
    for path in files[:n]:
        with Image.open(path) as f:
            images.append(f.convert("RGB"))
        text = path.with_suffix(".txt")
        prompts.append(text.read_text().strip() if text.is_file() else path.stem.replace("_", " "))
    return images, prompts


# -- statistics ----------------------------------------------------------------------------
def agreement(reference: np.ndarray, other: np.ndarray) -> tuple[float, float]:
    """(max |Δ|, Spearman ρ) over the images both score; NaN where undefined."""
    from scipy.stats import spearmanr

    reference, other = np.asarray(reference, float), np.asarray(other, float)
    ok = np.isfinite(reference) & np.isfinite(other)
    if not ok.any():
        return math.nan, math.nan
    worst = float(np.max(np.abs(reference[ok] - other[ok])))
    if ok.sum() < 3 or np.ptp(reference[ok]) == 0 or np.ptp(other[ok]) == 0:
        return worst, math.nan
    return worst, float(spearmanr(reference[ok], other[ok]).statistic)


# -- the report ----------------------------------------------------------------------------
def machine(device: str) -> str:
    """GPU name, memory and compute capability, torch/CUDA/cuDNN versions (or the CPU)."""
    import torch

    parts = [f"torch {torch.__version__}"]
    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        props = torch.cuda.get_device_properties(index)
        cap = ".".join(map(str, torch.cuda.get_device_capability(index)))
        parts = [
            f"{torch.cuda.get_device_name(index)} ({props.total_memory / 2**30:.0f} GiB, "
            f"compute capability {cap})",
            *parts,
            f"CUDA {torch.version.cuda}",
            f"cuDNN {torch.backends.cudnn.version()}",
        ]
    else:
        parts.insert(0, f"CPU {platform.machine()}, {os.cpu_count()} cores, no GPU")
    return ", ".join([*parts, f"Python {platform.python_version()}"])


def fmt_pair(cell) -> str:
    if isinstance(cell, str):
        return cell
    if cell is None:
        return "—"
    worst, rho = cell
    return f"{worst:.2e} / {'n/a' if math.isnan(rho) else f'{rho:.4f}'}"


def metric_table(report: dict, names, cuda: bool) -> list[str]:
    lines = [
        "| metric | version | precision (job default) | fp32 + TF32 (unguarded) vs true fp32 | "
        "fp16 vs true fp32 | bf16 vs true fp32 | preprocess img/s (1 process) | "
        "score img/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        row = report["metrics"][name]
        if "rate" not in row:
            lines.append(f"| {name} | {row.get('note', 'not run')} | | | | | | |")
            continue
        if name in FP32_ONLY:
            cells = ["fp32 only"] * 3
        else:
            keys = ("fp32 job", "fp16", "bf16")
            cells = [fmt_pair(row.get(k, None if cuda else CPU_CELLS[k])) for k in keys]
        prep, rate = row["rate"]
        lines.append(
            f"| {name} | {row['version']} | {row['precision']} | {' | '.join(cells)} | "
            f"{prep:.1f} | {rate:.1f} |"
        )
    return lines


def tf32_table(tf32) -> list[str]:
    if tf32 is None or isinstance(tf32, str):
        return [f"- {tf32 or 'not run (anomaly skipped or not selected)'}"]
    lines = [
        "| quantity | median, TF32 off | median, TF32 on | max \\|Δ\\| / Spearman ρ |",
        "|---|---|---|---|",
    ]
    for key, (off, on) in tf32.items():
        lines.append(
            f"| {key} | {np.nanmedian(off):.4g} | {np.nanmedian(on):.4g} | "
            f"{fmt_pair(agreement(off, on))} |"
        )
    return lines


def generation_table(gen: dict, batch: int) -> list[str]:
    if not gen:
        return ["- not run (--no-generation)"]
    if "skipped" in gen:
        return [f"- skipped: {gen['skipped']}"]
    r, retried = gen["reasons"], gen["retried"]
    return [
        "| pipeline | dtype (VAE) | size, steps | images | NaN/inf | black | uniform | "
        "re-decoded in fp32 | images/s |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {Path(gen['source']).name} | {gen['dtype']} ({gen['vae']}) | "
        f"{gen['size']}², {gen['steps']} | {gen['images']} | {r['nan']} | {r['black']} | "
        f"{r['uniform']} | {retried} | {gen['rate']:.2f} (batch {batch}) |",
    ]


def markdown(args, report: dict) -> str:
    """The block for ``benchmarks/README.md``: machine, metric table, TF32, generation."""
    return "\n".join(
        [
            f"Machine: {report['machine']}.",
            f"`{report['command']}`: {report['n_images']} images ({report['inputs']}), "
            f"batch {args.batch_size}, {report['seconds']:.1f} s in all.",
            "",
            *metric_table(report, args.metrics, args.device.startswith("cuda")),
            "",
            "Cells: max \\|Δ\\| / Spearman ρ over the images, against fp32 with TF32 off.",
            "",
            "Anomaly Score, TF32 forced on vs the metric's guard (TF32 off):",
            "",
            *tf32_table(report.get("tf32")),
            "",
            "Generation:",
            "",
            *generation_table(report.get("generation", {}), args.gen_batch),
        ]
    )
