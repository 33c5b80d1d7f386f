"""Import benchmark: N 512x512 PNGs into a fresh workspace through the real import path.

    .venv/bin/python benchmarks/ingest.py               # 10,000 images, 2 workers
    .venv/bin/python benchmarks/ingest.py --n 2000 --workers 2

The images are written by the benchmark: 40 smooth "base" pictures (sine
fields, discs, mild noise) are cut into 16 bands of 32 rows, and each image
is a different mix of bands, so every file has distinct pixels and a real
zlib stream (Sub-filtered rows, compressed per band with a full flush, which
is how bands from different bases can be joined). Each file carries a tEXt
chunk naming the model, as AUTOMATIC1111 writes it. File names follow the
``<prompt_id>_<seed>.png`` layout over 1,000 prompts.

The import is ``arena.intake.image_import.import_images`` -- what ``arena import-images``
runs -- with a process pool of ``--workers`` processes. It prints images/s and
the peak resident memory of the importing process and of its workers
(sampled every 50 ms from /proc), at 20% of the images and at the end: equal
peaks mean memory is flat in the number of images. Workers also write each
image's display rendition (``--display-size``, the setting's 512x512 by
default; ``none`` for the A/B), and the CPU of a rendition alone is printed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZE = 512
BANDS = 16
ROWS = SIZE // BANDS
N_BASES = 40
N_PROMPTS = 1000


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _base_picture(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    img = np.empty((SIZE, SIZE, 3), np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.002, 0.03), rng.uniform(0.002, 0.03), rng.uniform(0, 6)
        img[..., c] = 127 + 100 * np.sin(x * fx + phase) * np.cos(y * fy)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, SIZE), rng.uniform(0, SIZE), rng.uniform(20, 90)
        img[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return img.clip(0, 255).astype(np.uint8)


def _bands(seed: int) -> list[tuple[bytes, bytes]]:
    """(raw filtered rows, deflate data ending in a full flush) per band of one base."""
    img = _base_picture(seed).astype(np.int16)
    sub = img.copy()
    sub[:, 1:] = (img[:, 1:] - img[:, :-1]) % 256  # PNG filter type 1 (Sub): rows independent
    rows = np.concatenate([np.ones((SIZE, 1), np.uint8), sub.astype(np.uint8).reshape(SIZE, -1)], 1)
    out = []
    for b in range(BANDS):
        raw = rows[b * ROWS : (b + 1) * ROWS].tobytes()
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        out.append((raw, comp.compress(raw) + comp.flush(zlib.Z_FULL_FLUSH)))
    return out


_BASES: list = []


def _init_bases() -> None:
    _BASES[:] = [_bands(k) for k in range(N_BASES)]


def _write_images(args: tuple[str, int, int, int]) -> int:
    folder, start, stop, seed = args
    bases = _BASES
    rng = np.random.default_rng([seed, start])
    header = _chunk(b"IHDR", struct.pack(">IIBBBBB", SIZE, SIZE, 8, 2, 0, 0, 0))
    text = _chunk(b"tEXt", b"parameters\x00Steps: 28, Sampler: Euler a, Model: bench-secret-model")
    for i in range(start, stop):
        picks = rng.integers(N_BASES, size=BANDS)
        raw = b"".join(bases[p][b][0] for b, p in enumerate(picks))
        body = b"".join(bases[p][b][1] for b, p in enumerate(picks))
        stream = b"\x78\x9c" + body + b"\x03\x00" + struct.pack(">I", zlib.adler32(raw))
        data = b"\x89PNG\r\n\x1a\n" + header + text + _chunk(b"IDAT", stream) + _chunk(b"IEND", b"")
        prompt, image_seed = i % N_PROMPTS + 1, i // N_PROMPTS
        Path(folder, f"{prompt}_{image_seed}.png").write_bytes(data)
    return stop - start


def generate(folder: Path, n: int, workers: int) -> None:
    step = max(1, n // (workers * 4))
    jobs = [(str(folder), s, min(s + step, n), 0) for s in range(0, n, step)]
    with ProcessPoolExecutor(workers, initializer=_init_bases) as pool:
        assert sum(pool.map(_write_images, jobs)) == n


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    kids = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(k) for k in f.read().split()]
        except OSError:
            pass
    return kids + [g for k in kids for g in _children(k)]


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class MemorySampler(threading.Thread):
    """Peak RSS of this process and of its largest child, and the children's CPU time,
    sampled every 50 ms from /proc."""

    def __init__(self):
        super().__init__(daemon=True)
        self.main_peak = self.child_peak = 0
        self.child_cpu: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        me = os.getpid()
        while not self.stop.wait(0.05):
            self.main_peak = max(self.main_peak, _rss_kib(me))
            for kid in _children(me):
                self.child_peak = max(self.child_peak, _rss_kib(kid))
                self.child_cpu[kid] = max(self.child_cpu.get(kid, 0.0), _cpu_seconds(kid))


def rendition_cost(store, display: str, sample: int = 200) -> str:
    """CPU per display rendition alone (decode of the original excluded), on stored images."""
    from arena.storage.renditions import parse_display_size, render

    box = parse_display_size(display)
    shas = [p.stem for p in sorted((store.workspace / "images").rglob("*.png"))[:sample]]
    images = [store.images.open(sha) for sha in shas]
    cpu0 = time.process_time()
    sizes = [len(render(img, box)) for img in images]
    cpu = time.process_time() - cpu0
    return (
        f"renditions ({display}, JPEG q95 4:4:4): {1000 * cpu / len(images):.1f} ms CPU per "
        f"image (resize + letterbox + encode, {len(images)} images), "
        f"{np.mean(sizes) / 1024:.0f} KiB each; included in the import figures above"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000, help="images to import")
    parser.add_argument("--workers", type=int, default=2, help="import worker processes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--display-size",
        default="512x512",
        help="display renditions written on import (the setting's default); 'none' imports "
        "without them, for the A/B",
    )
    args = parser.parse_args()
    display = "" if args.display_size == "none" else args.display_size

    from arena.config import load_settings
    from arena.intake.image_import import import_images
    from arena.intake.prompts import import_prompts
    from arena.storage.store import Store

    tmp = Path(tempfile.mkdtemp(prefix="arena-bench-ingest-"))
    try:
        folder = tmp / "outputs"
        folder.mkdir()
        t0 = time.perf_counter()
        generate(folder, args.n, max(2, args.workers))
        size = sum(p.stat().st_size for p in folder.iterdir())
        print(
            f"generated {args.n} PNGs of {SIZE}x{SIZE} ({size / args.n / 1024:.0f} KiB each) "
            f"in {time.perf_counter() - t0:.1f}s"
        )
        store = Store(load_settings(env={}, workspace=str(tmp / "ws"), display_size=display))
        prompts = tmp / "prompts.txt"
        prompts.write_text("".join(f"bench prompt {i}\n" for i in range(1, N_PROMPTS + 1)))
        import_prompts(store, prompts, "bench")

        sampler = MemorySampler()
        marks: dict[str, tuple[int, int, float]] = {}
        done = 0
        early = args.n // 5

        def progress(k: int) -> None:
            nonlocal done
            done += k
            if done >= early and "early" not in marks:
                marks["early"] = (sampler.main_peak, sampler.child_peak, time.perf_counter())

        load_before = os.getloadavg()[0]
        sampler.start()
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        report = import_images(
            store, folder, "bench-model", workers=args.workers, progress=progress
        )
        elapsed = time.perf_counter() - t0
        main_cpu = time.process_time() - cpu0
        sampler.stop.set()
        sampler.join()
        assert report.added == args.n, report.summary()
        stored = next((tmp / "ws" / "images").rglob("*.png")).read_bytes()
        assert b"bench-secret-model" not in stored
        early_main, early_child, _ = marks.get("early", (0, 0, 0.0))
        rate = report.added / elapsed
        print(f"imported {report.added} images in {elapsed:.1f}s: {rate:.0f} images/s")
        print(
            f"workers {args.workers}, cpus {os.cpu_count()}, load average "
            f"{load_before:.1f} -> {os.getloadavg()[0]:.1f} (other processes share the cpus)"
        )
        worker_cpu = sum(sampler.child_cpu.values())
        print(
            f"cpu time: main process {main_cpu:.1f}s ({1000 * main_cpu / args.n:.1f} ms/image), "
            f"workers {worker_cpu:.1f}s ({1000 * worker_cpu / args.n:.1f} ms/image); on "
            f"{args.workers} otherwise idle cores that is at most "
            f"{args.n / max(worker_cpu / args.workers, main_cpu, 1e-9):.0f} images/s"
        )
        print(
            f"peak RSS main process: {early_main / 1024:.0f} MiB at {early} images, "
            f"{sampler.main_peak / 1024:.0f} MiB at {args.n}"
        )
        print(
            f"peak RSS of one worker: {early_child / 1024:.0f} MiB at {early} images, "
            f"{sampler.child_peak / 1024:.0f} MiB at {args.n}"
        )
        if display:
            print(rendition_cost(store, display))
        t0 = time.perf_counter()
        again = import_images(store, folder, "bench-model", workers=args.workers)
        print(
            f"re-import: added {again.added}, already present {again.present} in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        store.close()
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
