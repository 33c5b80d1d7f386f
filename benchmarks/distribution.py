"""Benchmark: the feature cache over 10,000 images and KID with 100 subsets on 10k x 2048.

1. A real workspace with N images (N = 10,000 by default; small 32x32 PNGs) and a small
   real extractor (a random 3-layer conv net subclassing ``scoring.features.Extractor``):
   ``cached_features`` twice. The first run decodes, extracts and stores every vector;
   the second must extract nothing (the extractor's own call counter) and only read.
2. ``scoring.distribution.kid`` on two 10,000 x 2048 float32 matrices, 100 subsets of
   1,000, BLAS limited to 2 threads; plus a plain 1000x2048x1000 matmul rate measured
   at the same time, because this sandbox's 2 cores are shared.

    .venv/bin/python benchmarks/distribution.py [--images 10000] [--skip-kid]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import scoring  # noqa: F401  (torchvision shim)


class SmallExtractor:
    """Factory for a small real conv-net extractor (32x32 input, 64-d features)."""

    @staticmethod
    def build(weights_path: Path):
        import torch

        from scoring.features import Extractor

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

    from arena import db
    from arena.config import load_settings
    from arena.store import Store

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
    from scoring.features import cached_features

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


def bench_kid() -> None:
    from threadpoolctl import threadpool_limits

    from scoring.distribution import kid

    rng = np.random.default_rng(0)
    x = rng.random((10_000, 2048), dtype=np.float32)
    y = rng.random((10_000, 2048), dtype=np.float32) * 1.01
    with threadpool_limits(2):
        a = rng.random((1000, 2048), dtype=np.float32)
        t0 = time.perf_counter()
        for _ in range(3):
            a @ a[::-1].T
        rate = 3 * 2 * 1000 * 1000 * 2048 / (time.perf_counter() - t0) / 1e9
        t0 = time.perf_counter()
        est = kid(x, y, np.random.default_rng(1))
        cold = time.perf_counter() - t0
        cache: dict = {}
        kid(x, y, np.random.default_rng(1), reference_cache=cache)
        t0 = time.perf_counter()
        kid(x, y, np.random.default_rng(1), reference_cache=cache)
        warm = time.perf_counter() - t0
    flops = 100 * 2 * 1000 * 1000 * 2048 * 2  # XY full + XX and YY (symmetric) per subset
    print(f"float32 GEMM rate now (2 threads): {rate:.0f} GFLOP/s")
    print(
        f"KID 10k x 2048, 100 subsets of 1000: {cold:.2f} s (KID {est.value:.3g} ± {est.std:.2g})"
        f"; ~{flops / 1e9:.0f} GFLOP, i.e. {flops / 1e9 / rate:.1f} s at the GEMM rate above"
    )
    print(f"KID, reference terms cached (the next model vs the same reference): {warm:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--skip-kid", action="store_true")
    args = parser.parse_args()
    bench_cache(args.images, args.batch_size)
    if not args.skip_kid:
        bench_kid()


if __name__ == "__main__":
    main()
