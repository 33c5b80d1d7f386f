"""The worker processes that decode, hash and store image files, a few batches at a time.

Small imports run in this process (a pool costs more to start than it saves). The
pool keeps at most a few batches per worker in flight, so the memory of an import
does not grow with the number of images.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

from arena.intake.layouts import ImageItem
from arena.storage.images import init_worker, store_files

BATCH_FILES = 16  # files per task sent to a worker process
IN_PROCESS_BELOW = 64  # smaller imports skip the process pool (its start costs more)


def _batches(items: list[ImageItem], size: int) -> Iterator[list[ImageItem]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _pool(workers: int) -> ProcessPoolExecutor:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=init_worker)


def stored_results(
    items: list[ImageItem], root: str, max_pixels: int, workers: int, display: str
) -> Iterator[tuple[ImageItem, tuple]]:
    """(item, worker result) in order; at most a few batches per worker in flight.

    Workers also write each image's display rendition (``display``: the display size).
    """
    if workers <= 1 or len(items) < IN_PROCESS_BELOW:
        for batch in _batches(items, BATCH_FILES):
            jobs = [(it.name, it.path) for it in batch]
            results = store_files(root, jobs, max_pixels, display)
            yield from zip(batch, results, strict=True)
        return
    with _pool(workers) as pool:
        batches = _batches(items, BATCH_FILES)
        pending: deque = deque()

        def submit() -> None:
            batch = next(batches, None)
            if batch is not None:
                jobs = [(it.name, it.path) for it in batch]
                pending.append((batch, pool.submit(store_files, root, jobs, max_pixels, display)))

        for _ in range(workers * 3):
            submit()
        while pending:
            batch, future = pending.popleft()
            results = future.result()
            submit()
            yield from zip(batch, results, strict=True)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))
