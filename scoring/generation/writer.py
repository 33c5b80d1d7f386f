"""One background worker that writes batches while the caller computes the next one.

Why: PNG encoding, hashing and the database commit of a batch left the GPU idle. With
this writer batch k is written while the pipeline generates batch k+1. The queue holds
at most ``depth`` batches besides the one being written, so memory stays bounded and a
killed run loses at most the batches in flight; each batch is still committed on its
own, so resume is unchanged.

The first error in the worker -- a failed commit, or an exception raised by a callback
the write function runs, such as ``on_batch`` -- stops the writing (later batches are
dropped, not written) and is raised on the caller's thread at its next ``put`` or at
``close``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

_STOP = object()


class BatchWriter:
    """``put`` items for ``write`` on one worker thread; ``close`` waits for the rest."""

    def __init__(self, write: Callable[[Any], None], depth: int = 1, name: str = "writer"):
        if depth < 1:
            raise ValueError(f"BatchWriter depth {depth}: needs at least 1 queued batch.")
        self._write = write
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # after an error: drop, so a blocked ``put`` returns and raises
            try:
                self._write(item)
            except BaseException as exc:  # re-raised on the caller's thread
                self._error = exc

    def raise_error(self) -> None:
        """Raise the worker's error on this thread, if it had one."""
        if self._error is not None:
            raise self._error

    def put(self, item: Any) -> None:
        """Queue ``item``; blocks while ``depth`` batches wait. Raises the worker's error."""
        self.raise_error()
        self._queue.put(item)

    def close(self, raise_error: bool = True) -> None:
        """Write what is queued, stop the worker, then raise its error (if asked)."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()
        if raise_error:
            self.raise_error()
