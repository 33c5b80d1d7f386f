"""Benchmark: the feature cache over 10,000 images and KID with 100 subsets on 10k x 2048.

1. A real workspace with N images (N = 10,000 by default; small 32x32 PNGs) and a small
   real extractor (a random 3-layer conv net subclassing
   ``scoring.distribution.features.Extractor``):
   ``cached_features`` twice. The first run decodes, extracts and stores every vector;
   the second must extract nothing (the extractor's own call counter) and only read.
2. ``scoring.distribution.mmd.kid`` on two 10,000 x 2048 float32 matrices, 100 subsets of
   1,000, on 2 threads (``threadpool_limits(2)``; kid() runs 2 single-threaded BLAS
   workers), cold and with the reference's sums cached; wall and CPU time, the GFLOP/s
   achieved, a plain 1000x2048x1000 GEMM rate measured just before and after (this
   sandbox's 2 cores are shared), and a one-thread breakdown per subset.

3. ``--is-div``: the Inception Score and DIV (LPIPS diversity) through
   ``scoring.distribution.run.run`` on the tiny random-weight models of
   ``scoring.testing.tiny_extractors`` (the full-size Inception-v3 and AlexNet
   architectures): images/s of the one Inception pass that stores pool features and
   logits, a re-run that extracts nothing, IS itself on 50,000 x 1008 logits, and DIV's
   one AlexNet pass per image against the ``lpips`` package's forward on every pair.

    .venv/bin/python benchmarks/distribution.py [--images 10000] [--skip-kid | --kid-only]
    .venv/bin/python benchmarks/distribution.py --is-div [--prompts 8 --seeds 8 --size 256]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from scoring import _compat  # noqa: F401  (torchvision shim)


class SmallExtractor:
    """Factory for a small real conv-net extractor (32x32 input, 64-d features)."""

    @staticmethod
    def build(weights_path: Path):
        import torch

        from scoring.distribution.features import Extractor

        class _Small(Extractor):
            name = "bench-small"
            version = "1"

            def preprocessor(self):
                return _to_small_tensor

            def _forward(self, batch):
                return self.model(batch)

        torch.manual_seed(0)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(16, 32, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
        ).eval()
        torch.save(net.state_dict(), weights_path)
        return _Small(net, weights_path, "cpu", 64)


def _to_small_tensor(img):
    import torch

    arr = np.asarray(img.convert("RGB").resize((32, 32)), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


def build_workspace(root: Path, n: int):
    from PIL import Image
    from sqlalchemy import insert

    from arena.config import load_settings
    from arena.storage import db
    from arena.storage.store import Store

    store = Store(load_settings(env={}, workspace=str(root / "ws")))
    mid = store.add_model("bench", "import")
    rng = np.random.default_rng(0)
    rows = []
    for k in range(n):
        stored = store.images.put_image(
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        )
        rows.append(
            {
                "sha256": stored.sha256,
                "model_id": mid,
                "prompt_id": None,
                "seed": k,
                "width": 32,
                "height": 32,
                "settings_hash": "",
                "params": {},
                "source_name": f"{k}.png",
            }
        )
    with store.session() as s:
        s.execute(insert(db.Image), rows)
    return store


def bench_cache(n: int, batch_size: int) -> None:
    from scoring.distribution.feature_cache import cached_features

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        store = build_workspace(root, n)
        print(f"workspace with {n} images built in {time.perf_counter() - t0:.1f} s")
        extractor = SmallExtractor.build(root / "small.pt")
        ids = store.images_frame().image_id.tolist()
        t0 = time.perf_counter()
        first = cached_features(store, extractor, ids, batch_size=batch_size)
        t1 = time.perf_counter()
        calls_after_first = extractor.calls
        second = cached_features(store, extractor, ids, batch_size=batch_size)
        t2 = time.perf_counter()
        assert np.array_equal(first, second)
        print(
            f"features, first run : {t1 - t0:7.2f} s  ({extractor.images} images extracted, "
            f"{calls_after_first} extractor calls)"
        )
        print(
            f"features, second run: {t2 - t1:7.2f} s  "
            f"({extractor.calls - calls_after_first} extractor calls: read from the cache)"
        )
        if extractor.calls != calls_after_first:
            raise SystemExit("FAIL: the second run extracted features")
        store.close()


def _kid_breakdown(x: np.ndarray, y: np.ndarray, repeats: int = 3) -> dict[str, float]:
    """Milliseconds per subset of each step of the CPU KID path, on one thread (best of)."""
    from scoring.distribution.mmd import _CUBE_CHUNK, _cube_sum

    m, d = 1000, x.shape[1]
    inv_d = np.float32(1.0 / d)
    idx = np.random.default_rng(2).choice(len(x), m, replace=False)
    a, b = np.empty((m, d), np.float32), np.empty((m, d), np.float32)
    gram = np.empty((m, m), np.float32)
    work = np.empty(2 * max(_CUBE_CHUNK, m), np.float32)
    steps = {
        "gather 2 subsets": lambda: (
            np.take(x, idx, axis=0, out=a, mode="clip"),
            np.take(y, idx, axis=0, out=b, mode="clip"),
        ),
        "2 syrk (xx, yy)": lambda: (np.matmul(a, a.T, out=gram), np.matmul(b, b.T, out=gram)),
        "cube+sum xx, yy (float64)": lambda: [_cube_sum(gram, inv_d, work, True) for _ in range(2)],
        "GEMM xy": lambda: np.matmul(a, b.T, out=gram),
        "cube+sum xy (float64)": lambda: _cube_sum(gram, inv_d, work, False),
    }
    out = {}
    for name, step in steps.items():
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            step()
            best = min(best, time.perf_counter() - t0)
        out[name] = best * 1e3
    return out


def _gemm_rate(threads: int) -> float:
    """float32 1000x2048x1000 GEMM rate now, GFLOP/s, on ``threads`` BLAS threads."""
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).random((1000, 2048), dtype=np.float32)
    with threadpool_limits(threads):
        a @ a[::-1].T
        t0 = time.perf_counter()
        for _ in range(3):
            a @ a[::-1].T
        return 3 * 2 * 1000 * 1000 * 2048 / (time.perf_counter() - t0) / 1e9


def bench_kid(target_s: float = 5.0) -> None:
    from threadpoolctl import threadpool_limits

    from scoring.distribution.mmd import kid

    rng = np.random.default_rng(0)
    x = rng.random((10_000, 2048), dtype=np.float32)
    y = rng.random((10_000, 2048), dtype=np.float32) * 1.01
    # Per subset: xx and yy symmetric (syrk, m²d multiply-adds each), xy a full GEMM.
    flops = 100 * 4 * 1000 * 1000 * 2048
    rate_before = _gemm_rate(2)
    with threadpool_limits(2):  # kid() splits the subsets over these 2 threads
        t0, c0 = time.perf_counter(), time.process_time()
        est = kid(x, y, np.random.default_rng(1))
        cold, cold_cpu = time.perf_counter() - t0, time.process_time() - c0
        cache: dict = {}
        kid(x, y, np.random.default_rng(1), reference_cache=cache)
        t0, c0 = time.perf_counter(), time.process_time()
        kid(x, y, np.random.default_rng(1), reference_cache=cache)
        warm, warm_cpu = time.perf_counter() - t0, time.process_time() - c0
    rate_after = _gemm_rate(2)
    with threadpool_limits(1):
        parts = _kid_breakdown(x, y)
    load = " / ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"load average (1/5/15 min): {load}")
    print(
        f"float32 GEMM rate now (2 BLAS threads): {rate_before:.0f} GFLOP/s before KID, "
        f"{rate_after:.0f} after"
    )
    verdict = "met" if cold <= target_s else "NOT met"
    print(
        f"KID 10k x 2048, 100 subsets of 1000: {cold:.2f} s wall, {cold_cpu:.2f} s CPU "
        f"(KID {est.value:.4g} ± {est.std:.2g}); {flops / 1e9:.0f} GFLOP -> "
        f"{flops / 1e9 / cold:.0f} GFLOP/s achieved; target <= {target_s:g} s {verdict}"
    )
    print(
        f"KID, reference terms cached (the next model vs the same reference): {warm:.2f} s "
        f"wall, {warm_cpu:.2f} s CPU ({0.75 * flops / 1e9 / warm:.0f} GFLOP/s)"
    )
    total = sum(parts.values())
    print(f"per subset on one thread ({total:.1f} ms; 2 threads share the 100 subsets):")
    for name, ms in parts.items():
        print(f"  {name:<27} {ms:6.2f} ms  ({100 * ms / total:4.1f} %)")


def _noise_image(rng, size: int, tint: float):
    from PIL import Image

    arr = rng.integers(0, 256, (size, size, 3)).astype(np.float32) * 0.5 + tint
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


def _is_div_workspace(root: Path, prompts: int, seeds: int, size: int):
    from arena.config import load_settings
    from arena.storage.store import PromptRow, Store

    store = Store(load_settings(env={}, workspace=str(root / "ws")))
    store.add_prompts([PromptRow(f"prompt {k}", f"p{k}") for k in range(prompts)], "set")
    pids = store.prompt_ids("set")
    rng = np.random.default_rng(0)
    mid = store.add_model("bench", "import")
    for k in range(prompts):
        for seed in range(seeds):
            stored = store.images.put_image(_noise_image(rng, size, 40.0 * (k % 4)))
            store.add_image(mid, pids[("set", f"p{k}")], stored, seed=seed)
    real = store.add_model("real", "reference")
    for _ in range(4):
        store.add_image(real, None, store.images.put_image(_noise_image(rng, size, 90.0)))
    return store


def bench_is_div(prompts: int, seeds: int, size: int, batch_size: int) -> None:
    import torch

    from scoring.distribution import stats
    from scoring.distribution.features import InceptionExtractor
    from scoring.distribution.lpips_div import LpipsAlex
    from scoring.distribution.run import run
    from scoring.testing.tiny_extractors import write_tiny_inception, write_tiny_lpips

    n = prompts * seeds
    print(f"torch threads: {torch.get_num_threads()}; load average: {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = _is_div_workspace(root, prompts, seeds, size)
        inception = InceptionExtractor.load(write_tiny_inception(root / "inception"))
        net = LpipsAlex.load({"div-lpips": str(write_tiny_lpips(root / "lpips"))})
        common = {"batch_size": batch_size, "progress": False, "kid_subsets": 10}
        extractors = {"inception": inception, LpipsAlex.name: net}
        t0 = time.perf_counter()
        (est,) = run(store, ["is"], "real", extractors=extractors, **common)
        first = time.perf_counter() - t0
        passes = inception.images
        print(
            f"IS, {n} images {size}x{size}, batch {batch_size}: {first:.2f} s, "
            f"{passes / first:.1f} images/s through Inception ({passes} images, {inception.passes}"
            f" passes; pool features and logits both stored); IS {est.value:.4f} ± {est.std:.2g}"
        )
        t0 = time.perf_counter()
        run(store, ["is"], "real", extractors=extractors, **common)
        again = time.perf_counter() - t0
        print(
            f"IS again: {again:.2f} s, {inception.images - passes} images through Inception "
            "(the logits read from the cache)"
        )
        logits = np.random.default_rng(0).normal(0, 3, (50_000, 1008)).astype(np.float32)
        t0 = time.perf_counter()
        stats.inception_score(logits)
        ours = time.perf_counter() - t0
        from torch_fidelity.metric_isc import isc_features_to_metric

        t0 = time.perf_counter()
        isc_features_to_metric(torch.from_numpy(logits))
        print(
            f"IS of 50,000 x 1008 logits (10 splits, float64): {ours:.2f} s; torch-fidelity's "
            f"isc_features_to_metric {time.perf_counter() - t0:.2f} s"
        )
        t0 = time.perf_counter()
        (div,) = run(store, ["div-lpips"], "real", extractors=extractors, **common)
        ours = time.perf_counter() - t0
        pairs = prompts * seeds * (seeds - 1) // 2
        print(
            f"DIV, {prompts} prompts x {seeds} seeds ({pairs} pairs): {ours:.2f} s, "
            f"{n / ours:.1f} images/s ({net.images} AlexNet images, one pass each; decoding "
            f"included); DIV {div.value:.4f}"
        )
        store.close()
        _lpips_package_baseline(net, size, seeds, ours / prompts)


def _lpips_package_baseline(net, size: int, seeds: int, ours_per_prompt: float) -> None:
    """The lpips package's own forward on every pair of one prompt's images."""
    try:
        import lpips
    except ModuleNotFoundError:
        print("lpips package not installed: no per-pair baseline")
        return
    import torch

    reference = lpips.LPIPS(pretrained=True, net="alex", pnet_rand=True, verbose=False)
    rng = np.random.default_rng(1)
    pixels = torch.from_numpy(rng.integers(0, 256, (seeds, 3, size, size), dtype=np.uint8))
    x = (pixels.double() / 127.5 - 1).float()
    pairs = [(i, j) for i in range(seeds) for j in range(i + 1, seeds)]
    t0 = time.perf_counter()
    with torch.no_grad():
        for i, j in pairs:
            reference(x[i : i + 1], x[j : j + 1])
    theirs = time.perf_counter() - t0
    t0 = time.perf_counter()
    from scoring.distribution.lpips_div import mean_pairwise

    mean_pairwise(net, list(pixels), batch_size=seeds)
    ours = time.perf_counter() - t0
    print(
        f"one prompt, {seeds} seeds ({len(pairs)} pairs): lpips package pair by pair "
        f"{theirs:.2f} s, ours {ours:.2f} s (network and pairs only; {theirs / ours:.1f}x); "
        f"ours through the job {ours_per_prompt:.2f} s per prompt"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--skip-kid", action="store_true")
    parser.add_argument(
        "--kid-only", action="store_true", help="only the KID part (no feature-cache workspace)"
    )
    parser.add_argument("--is-div", action="store_true", help="only the IS and DIV part")
    parser.add_argument("--prompts", type=int, default=8, help="--is-div: prompts")
    parser.add_argument("--seeds", type=int, default=8, help="--is-div: seeds per prompt")
    parser.add_argument("--size", type=int, default=256, help="--is-div: image side (px)")
    args = parser.parse_args()
    if args.kid_only and args.skip_kid:
        parser.error("--kid-only and --skip-kid exclude each other")
    if args.is_div:
        bench_is_div(args.prompts, args.seeds, args.size, min(args.batch_size, 32))
        return
    if not args.kid_only:
        bench_cache(args.images, args.batch_size)
    if not args.skip_kid:
        bench_kid()


if __name__ == "__main__":
    main()
