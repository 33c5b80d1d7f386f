"""Batched scoring through the runner vs one image at a time, on CPU with tiny models.

Builds a throwaway workspace of N random images (10 models x N/10 prompts), writes a
tiny random ViT-L/14-family CLIP and an aesthetic MLP in the real file formats, then
times, on the same images:

* the runner (`scoring.metrics.runner.run`): DataLoader decoding, batches, one shared image
  encoder pass for CLIP score + aesthetic, per-prompt text cache, a commit per batch;
* one image at a time: decode the file, ``clip.score([img], [prompt])`` and
  ``aesthetic.score([img])`` -- what a loop over the Python API does. Its scores are
  not written to the database (that would only make it slower), and its encoders keep
  their text caches.

Prints images/s of each and the ratio (target >= 5x), and checks both give the same
scores. ``--metrics`` picks others with tiny weights here (``TINY_WEIGHTS``): the
anime aesthetic ONNX, CLIP-IQA (on the same tiny CLIP), HPSv3 and VQAScore (a 32-wide
Qwen2-VL with the real formatting). Usage: python
benchmarks/scoring.py [--images 2000] [--batch-size 64] [--workers 0 2] [--threads 1]
[--metrics clip,aesthetic]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This file is named scoring.py: put the repository root, not benchmarks/, first on the
# path so that `import scoring` finds the package.
_ROOT = str(Path(__file__).resolve().parents[1])
sys.path[:] = [_ROOT] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from arena.config import load_settings  # noqa: E402
from arena.storage import db  # noqa: E402
from arena.storage.store import PromptRow, Store  # noqa: E402
from scoring import _compat  # noqa: F401,E402  (torchvision shim)


def build_workspace(root: Path, n_images: int, seed: int = 0) -> Store:
    store = Store(load_settings(env={}, workspace=str(root / "ws")))
    rng = np.random.default_rng(seed)
    n_prompts = max(1, n_images // 10)
    store.add_prompts(
        [PromptRow(f"a picture of subject {k} in style {k % 7}", str(k)) for k in range(n_prompts)],
        "bench",
    )
    pids = store.prompt_ids("bench")
    models = [store.add_model(f"model-{m}", "import") for m in range(10)]
    from PIL import Image

    with store.session() as s:
        for k in range(n_images):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            stored = store.images.put_image(Image.fromarray(pixels))
            prompt = pids[("bench", str(k % n_prompts))]
            store.add_image(models[k % 10], prompt, stored, seed=k, session=s)
    return store


def write_tiny_anime(root: Path) -> Path:
    from scoring.testing.tiny_iqa import write_anime_aesthetic_onnx

    return write_anime_aesthetic_onnx(root / "anime" / "model.onnx").parent


def write_tiny_imagereward(root: Path) -> Path:
    """ImageReward's three files with a 64-wide, one-block ViT on 32 px patches (50 tokens):
    its real preprocessing (224 px), tokenizer and loading code, little arithmetic."""
    from scoring.testing.tiny_imagereward import write_tiny_imagereward as write

    write(root / "imagereward", vision_width=64, depth=1, patch=32)
    return root / "imagereward"


def write_tiny_vlm(root: Path) -> Path:
    """The tiny Qwen2-VL folder and HPSv3 checkpoint (scoring/testing/tiny_vlm.py): the real
    formatting (HPSv3: ~200,704 px images, its ~800-token instruction), a 32-wide model."""
    from scoring.testing.tiny_vlm import HPSV3_FILE, HPSV3_REPO, write_tiny_vlm_weights

    if not (root / "vlm" / HPSV3_REPO / HPSV3_FILE).is_file():
        write_tiny_vlm_weights(root / "vlm")
    return root / "vlm"


# metric -> writes its tiny weights under the root, returns the path its --weights takes.
TINY_WEIGHTS = {
    "clip": lambda root: root,
    "aesthetic": lambda root: root,
    "anime-aesthetic": write_tiny_anime,
    "clipiqa": lambda root: root,
    "imagereward": write_tiny_imagereward,
    "hpsv3": write_tiny_vlm,
    "vqascore": lambda root: write_tiny_vlm(root) / "Qwen" / "Qwen2-VL-7B-Instruct",
}


def one_at_a_time(store: Store, weights: dict[str, Path]) -> tuple[float, dict]:
    from PIL import Image
    from sqlalchemy import select

    from scoring.metrics.base import get_metric

    metrics = [get_metric(name).from_pretrained(path) for name, path in weights.items()]
    with store.session() as s:
        rows = s.execute(
            select(db.Image.id, db.Image.sha256, db.Prompt.text)
            .join(db.Prompt)
            .order_by(db.Image.id)
        ).all()
    out = {}
    start = time.perf_counter()
    for image_id, sha, prompt in rows:
        with Image.open(store.images.path_for(sha)) as f:
            img = f.convert("RGB")
        for metric in metrics:
            prompts = [prompt] if metric.needs_prompt else None
            out[(image_id, metric.name)] = float(metric.score([img], prompts)[0])
    return time.perf_counter() - start, out


def batched(
    store: Store, weights: dict[str, Path], batch_size: int, workers: int
) -> tuple[float, dict]:
    from sqlalchemy import delete, select

    from scoring.metrics.runner import build_metrics, run

    with store.session() as s:
        s.execute(delete(db.Score))
    metrics = build_metrics(list(weights), weights={k: str(v) for k, v in weights.items()})
    start = time.perf_counter()
    run(store, metrics, batch_size=batch_size, num_workers=workers, progress=False)
    seconds = time.perf_counter() - start
    with store.session() as s:
        rows = s.execute(select(db.Score.image_id, db.Score.metric, db.Score.value)).all()
    return seconds, {(i, m): v for i, m, v in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both modes (1: stable on a shared machine)",
    )
    parser.add_argument(
        "--metrics",
        default="clip,aesthetic",
        help=f"comma-separated, from {', '.join(TINY_WEIGHTS)} (default clip,aesthetic)",
    )
    args = parser.parse_args()
    names = [n.strip() for n in args.metrics.split(",") if n.strip()]
    unknown = sorted(set(names) - set(TINY_WEIGHTS))
    if unknown or not names:
        parser.error(f"--metrics: unknown {unknown}; known: {', '.join(TINY_WEIGHTS)}")

    import torch

    torch.set_num_threads(args.threads)

    from scoring.testing.tiny_clip import write_tiny_aesthetic, write_tiny_clip

    print(
        f"CPU, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} cores; {', '.join(names)} with tiny weights (CLIP: ViT-L/14 family, "
        "32 px, width 64; aesthetic: the real MLP; anime-aesthetic: a 32 px ONNX, batch 1)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tiny_clip(root / "weights")
        write_tiny_aesthetic(root / "weights")
        weights = {name: TINY_WEIGHTS[name](root / "weights") for name in names}
        t0 = time.perf_counter()
        store = build_workspace(root, args.images)
        print(f"workspace: {args.images} images (64x64 PNG) in {time.perf_counter() - t0:.1f} s")

        single_s, single = one_at_a_time(store, weights)
        single_rate = args.images / single_s
        print(
            f"one image at a time:              {single_s:7.2f} s  {single_rate:8.1f} images/s "
            f"({' + '.join(names)}, no DB writes)"
        )
        for workers in args.workers:
            seconds, scores = batched(store, weights, args.batch_size, workers)
            rate = args.images / seconds
            assert scores.keys() == single.keys(), "runner and loop scored different sets"
            worst = max(abs(scores[k] - single[k]) for k in single)
            assert worst < 1e-4, f"runner and loop disagree by {worst}"
            print(
                f"runner, batch {args.batch_size:>3}, {workers} worker(s): {seconds:7.2f} s  "
                f"{rate:8.1f} images/s  ratio {rate / single_rate:5.1f}x  "
                f"(max |diff| {worst:.1e}, committed per batch)"
            )
        store.close()


if __name__ == "__main__":
    main()
