"""`arena judge`, batched vs one pair per call, with the tiny random Qwen2-VL.

Builds a throwaway workspace of N image pairs people voted on (2 models, N prompts, one
simulated vote per pair), writes the tiny Qwen2-VL of the tests (real files, processor
and chat template; 32 wide) and runs the whole judge job (``arena.voting.judging.run_judge``:
serve each order as a battle, open the display renditions, one ``generate`` step, store
the vote) twice on the same pairs, as two judges (the same template under two names):

* batched: ``--batch-size`` orders per call;
* one pair per call: batch size 1 (each order of a pair alone).

Prints orders (votes) per second and pairs per second of each and the ratio (target
>= 3x), and checks the two runs stored the same answer probabilities. On a GPU
(``--device cuda``) the same with the model in bf16/fp16. Usage: python benchmarks/judge.py
[--pairs 48] [--batch-size 16] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from arena.config import load_settings
from arena.storage import db
from arena.storage.rater_verbs import VotedBattle
from arena.storage.store import PromptRow, Store


def build_workspace(root: Path, n_pairs: int, display_size: str, seed: int = 0) -> Store:
    """Two models, one image each per prompt, one simulated vote per pair."""
    from PIL import Image

    settings = load_settings(env={}, workspace=str(root / "ws"), display_size=display_size)
    store = Store(settings)
    rng = np.random.default_rng(seed)
    store.add_prompts(
        [PromptRow(f"a picture of subject {k} in style {k % 7}", str(k)) for k in range(n_pairs)],
        "bench",
    )
    pids = store.prompt_ids("bench")
    models = [store.add_model(name, "import") for name in ("alpha", "beta")]
    images = {}
    for k in range(n_pairs):
        for model in models:
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            stored = store.images.put_image(Image.fromarray(pixels))
            images[(k, model)] = store.add_image(model, pids[("bench", str(k))], stored, seed=k)
    rater = store.rater_id("sim-bench", kind="simulated")
    t = db.utcnow() - timedelta(hours=1)
    store.add_voted_battles(
        [
            VotedBattle(
                pids[("bench", str(k))],
                images[(k, models[0])],
                images[(k, models[1])],
                rater,
                "left",
                3000,
                t,
                t,
            )
            for k in range(n_pairs)
        ]
    )
    return store


def stored_probs(store, rater_id: int) -> dict[tuple[int, int], list[float]]:
    from sqlalchemy import select

    v, b = db.Vote, db.Battle
    with store.session() as s:
        rows = s.execute(
            select(b.left_image_id, b.right_image_id, v.details)
            .join(b, b.id == v.battle_id)
            .where(v.rater_id == rater_id)
        ).all()
    return {(a, c): list(d["probs"].values()) for a, c, d in rows}


def model_step(store, judge, rater_id: int, batch: int) -> tuple[float, float]:
    """Pairs/s of ``judge.judge`` alone over the orders ``rater_id`` judged (their
    renditions opened beforehand): batches of ``batch`` vs one order per call."""
    from PIL import Image
    from sqlalchemy import select

    b = db.Battle
    with store.session() as s:
        rows = s.execute(
            select(b.left_image_id, b.right_image_id, b.prompt_id).where(b.rater_id == rater_id)
        ).all()
    sha = store.images_frame().set_index("image_id")["sha256"]
    text = store.prompts_frame().set_index("prompt_id")["text"]
    renditions = store.images.renditions

    def image(image_id):
        with Image.open(renditions.path_for(sha[image_id])) as im:
            return im.convert("RGB")

    pairs = [(image(a), image(c)) for a, c, _p in rows]
    prompts = [text[p] for _a, _c, p in rows]
    rates = []
    for size in (batch, 1):
        start = time.perf_counter()
        for k in range(0, len(pairs), size):
            judge.judge(pairs[k : k + size], prompts[k : k + size])
        rates.append(len(pairs) / 2 / (time.perf_counter() - start))
    return rates[0], rates[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=48, help="image pairs (2 votes each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--display-size",
        default="512x512",
        help="the workspace's display renditions, what the judge sees (default: the arena's)",
    )
    args = parser.parse_args(argv)

    import torch

    from arena.voting.judging import run_judge
    from scoring.judge import PairJudge
    from scoring.testing.tiny_vlm import write_tiny_qwen2vl

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = build_workspace(root, args.pairs, args.display_size)
        folder = write_tiny_qwen2vl(root / "Qwen2-VL-tiny")
        dtype = None
        if args.device.startswith("cuda"):
            dtype = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        vlm = PairJudge.load(folder, args.device, dtype).vlm
        print(
            f"judge job, tiny Qwen2-VL on {args.device} ({dtype or 'fp32'}, {args.threads} "
            f"thread(s)): {args.pairs} pairs = {2 * args.pairs} votes, display renditions "
            f"{args.display_size}"
        )
        # warm-up: one call, so neither run pays first-call costs
        run_judge(store, PairJudge(vlm, name="warm-up"), max_votes=2, batch_size=2)
        results = {}
        for label, batch in (("batched", args.batch_size), ("one pair per call", 1)):
            judge = PairJudge(vlm, name=f"bench-{batch}")
            start = time.perf_counter()
            summary = run_judge(store, judge, batch_size=batch)
            seconds = time.perf_counter() - start
            results[label] = (summary, seconds)
            print(
                f"  {label:18s} batch {batch:3d}: {summary.votes} votes in {seconds:6.2f} s = "
                f"{summary.votes / seconds:6.1f} votes/s, {summary.votes / 2 / seconds:6.1f} "
                "pairs/s"
            )
        (fast, fast_s), (slow, slow_s) = results["batched"], results["one pair per call"]
        print(f"  whole job: speed-up {slow_s / fast_s:.2f}x (target >= 3x)")
        step = model_step(store, PairJudge(vlm, name="step"), fast.rater_id, args.batch_size)
        print(
            f"  the judge step alone (same renditions, no database): batched "
            f"{step[0]:6.1f} pairs/s, one pair per call {step[1]:6.1f} pairs/s, speed-up "
            f"{step[0] / step[1]:.2f}x"
        )
        a, b = stored_probs(store, fast.rater_id), stored_probs(store, slow.rater_id)
        diff = max(np.abs(np.array(a[k]) - np.array(b[k])).max() for k in a)
        print(f"  same answers: {len(a)} orders, max |probability difference| {diff:.1e}")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
