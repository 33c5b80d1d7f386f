"""Sharding over ranks: images/s of one process vs two torchrun ranks at equal cores.

    python benchmarks/scale.py                      # the three jobs: 3-4 min on 2 free cores
    python benchmarks/scale.py --jobs score --score-images 400

Each machine job (`arena generate` with the tiny Stable Diffusion pipeline, `arena score
--metrics clip,classical` with the tiny CLIP, `arena distribution` with the tiny feature
extractors) runs as a user types it, on a fresh workspace per run (a copy of one newly
built workspace), in three modes:

* 1 process x 2 threads (``OMP_NUM_THREADS=2``): the two cores, used by torch's threads;
* 2 ranks x 1 thread (``torchrun --standalone --nproc-per-node 2 -m arena ...``): the same
  two cores, used by sharding. The overhead of sharding at equal cores is
  1 - (2-rank images/s / 1-process images/s), target <= 10%;
* 1 process x 1 thread: what one core does alone, so that 1 - (2-rank images/s /
  2 x this) is the loss against perfect scaling (a second, stricter reading, which
  needs two free cores: on a shared machine it also counts other people's work).

What is measured:

* wall and CPU (user + system of every process of the command) from launch to exit;
  the same for the "no-work run": the command again on the finished workspace (process
  start, imports, model loading, listing the work, for `distribution` the numbers; no
  images left to do). CPU of the run less the no-work run's, per image, is the work's
  CPU cost: it hardly moves with other load on the machine, so 2 ranks' cost over one
  single-threaded process's is the part of the overhead sharding itself adds, and
  CPU per image x images/s is how many cores the work kept busy;
* the job's own images/s. `generate` and `score` print it in their summary: the clock
  starts once the models are loaded and the work is listed (no process start, no
  loading); with two ranks rank 0 prints all ranks' images over the slowest rank's
  seconds. `distribution` prints no timing, so the feature stage is read from the
  database: every stored feature row carries the time its batch was extracted; the
  stage is first row to last row over all extractors (barriers between extractors
  included) scaled by b/(b-1), b = batches per rank, for the first batch of each rank
  that finished before the first row; images/s = rows / stage.

The process start + rendezvous cost is measured on its own: ``--probe`` (this file) imports
torch and, under a launcher, starts the gloo process group and passes a barrier, as
`arena` does; best wall time of a few, as one process vs under torchrun with 2 ranks.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

TARGET = 0.10  # issue 19: overhead of sharding <= 10% at equal cores
# (label, ranks, threads per rank)
MODES = (
    ("1 process × 2 threads", 1, 2),
    ("2 ranks × 1 thread", 2, 1),
    ("1 process × 1 thread", 1, 1),
)


def probe() -> int:
    """What every `arena` process pays before any work: torch, and under a launcher the
    gloo group and one barrier."""
    import torch  # noqa: F401

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo")
        dist.barrier()
        dist.destroy_process_group()
    return 0


# -- assets and workspaces ------------------------------------------------------------------
def write_assets(root: Path, n_reference: int) -> dict[str, Path]:
    """The tiny models of the tests in their real formats, and a reference folder."""
    import numpy as np
    from PIL import Image

    from scoring.testing.tiny_clip import write_tiny_clip
    from scoring.testing.tiny_diffusers import save_tiny_sd
    from scoring.testing.tiny_extractors import write_all

    write_all(root / "weights")
    real = root / "real"
    real.mkdir()
    rng = np.random.default_rng(7)
    for k in range(n_reference):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(real / f"{k}.png")
    return {
        "weights": root / "weights",
        "clip": write_tiny_clip(root / "clip"),
        "pipe": save_tiny_sd(root / "pipe"),
        "real": real,
    }


def new_store(path: Path, prompts: int):
    from arena.config import load_settings
    from arena.storage.store import PromptRow, Store

    store = Store(load_settings(env={}, workspace=str(path)))
    rows = [PromptRow(f"a picture of subject {k} in style {k % 7}", str(k)) for k in range(prompts)]
    store.add_prompts(rows, "p")
    return store


def add_images(store, n: int, models: int, seed: int) -> None:
    """``n`` random 64x64 PNGs spread over ``models`` imported models, each with a prompt."""
    import numpy as np
    from PIL import Image

    pids = list(store.prompt_ids("p").values())
    ids = [store.add_model(f"model-{m}", "import") for m in range(models)]
    rng = np.random.default_rng(seed)
    with store.session() as s:
        for k in range(n):
            stored = store.images.put_image(
                Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
            )
            store.add_image(ids[k % models], pids[k % len(pids)], stored, seed=k, session=s)


def build(job: str, path: Path, assets: dict, args) -> None:
    import contextlib
    import io

    from arena.cli import main as arena

    quiet = contextlib.redirect_stdout(io.StringIO())
    if job == "generate":
        new_store(path, args.gen_prompts).close()
        add = ["--workspace", str(path), "add-model", "tiny", "--diffusers", str(assets["pipe"])]
        with quiet:
            assert arena(add) == 0
    elif job == "score":
        store = new_store(path, max(1, args.score_images // 10))
        add_images(store, args.score_images, models=4, seed=1)
        store.close()
    else:
        store = new_store(path, max(1, args.feature_images // 10))
        add_images(store, args.feature_images - args.reference, models=2, seed=2)
        store.close()
        ref = ["--workspace", str(path), "reference", "add", str(assets["real"])]
        with quiet:
            assert arena([*ref, "--set", "real", "--workers", "1"]) == 0


def command(job: str, assets: dict, args) -> list[str]:
    common = ["--device", "cpu", "--no-progress"]
    if job == "generate":
        return [
            "generate", "--models", "tiny", "--prompts", "p", "--seeds", str(args.gen_seeds),
            "--size", args.gen_size, "--steps", str(args.gen_steps), "--cfg", "5",
            "--batch-size", str(args.gen_batch), *common,
        ]  # fmt: skip
    if job == "score":
        return [
            "score", "--metrics", "clip,classical", "--weights", f"clip={assets['clip']}",
            "--batch-size", str(args.batch), "--num-workers", "0", *common,
        ]  # fmt: skip
    return [
        "distribution", "--reference", "real", "--metrics", args.dist_metrics,
        "--batch-size", str(args.batch), "--num-workers", "0", *common,
    ]  # fmt: skip


# -- running and reading the results --------------------------------------------------------
def environment(threads: int, assets: dict) -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", ARENA_WEIGHTS_DIR=str(assets["weights"]))
    return env


def launch(ranks: int, tail: list[str], env: dict) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (user + system, every process of it) and output of one
    command: ``python -m arena ...`` or the same under torchrun."""
    head = [sys.executable]
    if ranks > 1:
        head += ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(head + tail, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode:
        sys.exit(f"{' '.join(head + tail)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, cpu, done.stdout + done.stderr


SCORE_LINE = r"scored (\d+) of \d+ image\(s\) needing work in [\d.]+ s \(([\d.]+) images/s"
GENERATE_ROW = r"^tiny\s+(\d+)\s+\d+\s+\d+\s+\d+\s+\d+\s+([\d.]+)\s*$"


def summary_rate(job: str, out: str) -> tuple[int, float]:
    """(images done, the job's own images/s) from its printed summary."""
    m = re.search(SCORE_LINE if job == "score" else GENERATE_ROW, out, re.M)
    if not m:
        sys.exit(f"no {job} summary in the output:\n{out[-2000:]}")
    return int(m.group(1)), float(m.group(2))


def feature_rate(path: Path, ranks: int, batch: int) -> tuple[int, float]:
    """(feature rows, rows/s of the feature stage) from the rows' extraction times."""
    from sqlalchemy import func, select

    from arena.config import load_settings
    from arena.storage import db
    from arena.storage.store import Store

    store = Store(load_settings(env={}, workspace=str(path)))
    with store.session() as s:
        per = s.execute(
            select(db.Feature.extractor, func.count(db.Feature.id)).group_by(db.Feature.extractor)
        ).all()
        times = s.scalars(select(db.Feature.created_at)).all()
    store.close()
    rows = sum(n for _, n in per)
    per_rank = sum(math.ceil(math.ceil(n / batch) / ranks) for _, n in per)  # rank 0's batches
    span = (max(times) - min(times)).total_seconds()
    return rows, rows / (span * per_rank / (per_rank - 1))


def measure(job: str, ranks: int, threads: int, root: Path, assets, args) -> dict:
    """A fresh copy of the job's new workspace: the job, then the same command with nothing
    left to do."""
    path = root / f"{job}-{ranks}x{threads}"
    shutil.copytree(root / f"{job}-new", path)
    env = environment(threads, assets)
    tail = ["-m", "arena", "--workspace", str(path), *command(job, assets, args)]
    wall, cpu, log = launch(ranks, tail, env)
    idle, idle_cpu, _ = launch(ranks, tail, env)
    if job == "distribution":
        images, rate = feature_rate(path, ranks, args.batch)
    else:
        images, rate = summary_rate(job, log)
    shutil.rmtree(path, ignore_errors=True)
    out = {"images": images, "rate": rate, "wall": wall, "cpu": cpu}
    return {**out, "idle": idle, "idle_cpu": idle_cpu}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--jobs", default="generate,score,distribution")
    p.add_argument("--gen-prompts", type=int, default=48)
    p.add_argument("--gen-seeds", type=int, default=4)
    p.add_argument("--gen-size", default="32x32")
    p.add_argument("--gen-steps", type=int, default=4)
    p.add_argument("--gen-batch", type=int, default=4)
    p.add_argument("--score-images", type=int, default=4000)
    p.add_argument("--feature-images", type=int, default=800, help="model + reference images")
    p.add_argument("--reference", type=int, default=200, help="of which in the reference set")
    p.add_argument("--dist-metrics", default="fd-dino,cmmd")
    p.add_argument("--batch", type=int, default=32, help="score/distribution batch size")
    p.add_argument("--probes", type=int, default=3, help="repeats of the start-up probe")
    args = p.parse_args()
    if args.probe:
        return probe()
    jobs = [j.strip() for j in args.jobs.split(",") if j.strip()]
    import torch

    print(
        f"CPU, {os.cpu_count()} cores, torch {torch.__version__}, gloo; load average at start "
        f"{os.getloadavg()[0]:.2f}",
        flush=True,
    )
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        assets = write_assets(root, args.reference)
        tail = [str(Path(__file__).resolve()), "--probe"]
        env = environment(1, assets)
        starts = {n: min(launch(n, tail, env)[:2] for _ in range(args.probes)) for n in (1, 2)}
        rows = {}
        for job in jobs:
            build(job, root / f"{job}-new", assets, args)  # copied for each run (faster)
            rows[job] = [measure(job, n, t, root, assets, args) for _, n, t in MODES]
            print(f"  {job}: done at {time.perf_counter() - t0:.0f} s", flush=True)
    report(rows, starts, args)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s; load average at end {os.getloadavg()[0]:.2f}")
    return 0


def report(rows: dict, starts: dict, args) -> None:
    what = {
        "generate": f"{args.gen_prompts * args.gen_seeds} images {args.gen_size}, "
        f"{args.gen_steps} steps, batch {args.gen_batch}",
        "score": f"{args.score_images} images 64×64, clip+classical, batch {args.batch}",
        "distribution": f"{args.feature_images} images ({args.reference} reference) × "
        f"{args.dist_metrics}, batch {args.batch}",
    }
    print(
        "\n| job, mode | wall (CPU) | no-work run: wall (CPU) | images/s (job's own) | "
        "CPU ms per image of work | cores busy | overhead at equal cores (target ≤ 10%) | "
        "on wall time | vs 2 × one core: images/s | : CPU per image |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for job, (two_threads, ranks, one_core) in rows.items():
        unit = " feature rows" if job == "distribution" else ""
        print(f"| **{job}**: {what[job]} |" + " |" * 9)
        for r in (two_threads, ranks, one_core):  # CPU of the run less its no-work run's
            r["work_cpu"] = 1000 * (r["cpu"] - r["idle_cpu"]) / r["images"]
        for (label, *_), r in zip(MODES, (two_threads, ranks, one_core), strict=True):
            cells = "| | | | |"
            if r is ranks:
                over = 1 - r["rate"] / two_threads["rate"]
                verdict = "met" if over <= TARGET else "**missed**"
                wall = 1 - two_threads["wall"] / r["wall"]
                ideal = 1 - r["rate"] / (2 * one_core["rate"])
                cpu = r["work_cpu"] / one_core["work_cpu"] - 1
                cells = f"| {over:+.0%} ({verdict}) | {wall:+.0%} | {ideal:+.0%} | {cpu:+.0%} |"
            print(
                f"| {label} | {r['wall']:.1f} s ({r['cpu']:.1f} s) | {r['idle']:.1f} s "
                f"({r['idle_cpu']:.1f} s) | {r['rate']:.1f}{unit} | {r['work_cpu']:.1f} | "
                f"{r['work_cpu'] * r['rate'] / 1000:.2f} {cells}"
            )
    (w1, c1), (w2, c2) = starts[1], starts[2]
    print(
        f"\nprocess start + rendezvous (`--probe`: import torch; under torchrun the gloo group "
        f"and a barrier; best of {args.probes}): 1 process {w1:.2f} s wall ({c1:.2f} s CPU), "
        f"torchrun with 2 ranks {w2:.2f} s wall ({c2:.2f} s CPU): +{w2 - w1:.2f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
