"""Image folders into the database as a model of kind "import".

Which file belongs to which prompt is decided by the folder's layout (``layouts``);
decoding, hashing and writing run in worker processes on small batches (``pool``);
rows are committed per chunk, so the memory of an import does not grow with the
number of images. Re-running an import adds only what is new. Each file that
cannot be imported is skipped with its reason and nothing of it is written; the
report counts what was added, what was already present and what was skipped and
why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arena.intake.layouts import ImageItem, plan_folder
from arena.intake.pool import BATCH_FILES, default_workers, stored_results
from arena.intake.reading import IngestError, with_skips
from arena.storage.errors import StoreWriteError
from arena.storage.intake_verbs import NewImage

if TYPE_CHECKING:
    from arena.storage.store import Store

CHUNK_ROWS = 500  # image rows per database transaction


@dataclass
class ImageReport:
    folder: str
    model: str
    added: int = 0
    present: int = 0
    broken: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self, limit: int = 20) -> str:
        head = (
            f"{self.folder} -> model {self.model!r}: added {self.added}, already present "
            f"{self.present}, skipped {len(self.skipped)}"
        )
        if self.broken:
            head += f" (of the added, {self.broken} are one flat colour: flagged broken)"
        return with_skips(head, self.skipped, limit)


class _ImageWriter:
    """Records image rows per chunk; the store checks each against what the model has."""

    def __init__(self, store: Store, model: str, source: str, report: ImageReport):
        self.store, self.model, self.source, self.report = store, model, source, report
        existing = model in store.model_names(include_reference=True)
        # An existing name is checked now (add_model refuses a collision and writes nothing);
        # a new model is created with the first chunk that has something to add.
        self.model_id = self._register() if existing else None

    def _register(self) -> int:
        return self.store.add_model(self.model, "import", source=self.source)

    def flush(self, rows: list[tuple[ImageItem, tuple]]) -> None:
        if not rows:
            return
        if self.model_id is None:
            self.model_id = self._register()
        images = [
            NewImage(sha, width, height, item.prompt_id, item.seed, item.params, broken, item.name)
            for item, (_ok, sha, width, height, broken) in rows
        ]
        try:
            clashes = self.store.add_images(self.model_id, images)
        except StoreWriteError as exc:
            raise IngestError(
                f"database {self.store.url}: cannot write ({exc.reason}); the {len(rows)} images "
                "of this chunk were not recorded. Check that the workspace is writable, then "
                "re-run the import (finished chunks are kept)."
            ) from None
        for (item, _result), image, clash in zip(rows, images, clashes, strict=True):
            if clash is None:
                self.report.added += 1
                self.report.broken += image.broken is not None
            elif clash.kind == "seed":
                self.report.skipped.append(
                    (
                        item.name,
                        f"model {self.model!r} already has a different image for this prompt "
                        f"and seed {item.seed} ({clash.source_name}); remove one of the two",
                    )
                )
            elif (clash.prompt_id, clash.seed) == (item.prompt_id, item.seed):
                self.report.present += 1
            else:
                self.report.skipped.append(
                    (
                        item.name,
                        f"same pixels as {clash.source_name}, already stored for model "
                        f"{self.model!r} (prompt #{clash.prompt_id}, seed {clash.seed}); one "
                        "image cannot belong to two prompts of one model: remove the duplicate",
                    )
                )


def import_images(
    store: Store,
    folder: str | Path,
    model: str,
    prompt_set: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], Any] | None = None,
    on_plan: Callable[[int], Any] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> ImageReport:
    """Import the images of ``folder`` as ``model`` (kind "import"); see the module docstring.

    ``on_plan(n)`` is called once with the number of files to process and
    ``progress(k)`` after every k processed files (for a progress bar).
    """
    folder = Path(folder)
    model = model.strip()
    if not model:
        raise IngestError("the model name is empty; give one with --model NAME.")
    report = ImageReport(str(folder), model)
    source = str(folder.resolve())
    items = plan_folder(store, folder, prompt_set, report.skipped)
    writer = _ImageWriter(store, model, source, report)
    if on_plan is not None:
        on_plan(len(items))
    workers = default_workers() if workers is None else workers
    root = str(store.workspace)
    buffer: list[tuple[ImageItem, tuple]] = []
    done = 0
    limit, display = store.settings.max_image_pixels, store.settings.display_size
    for item, result in stored_results(items, root, limit, workers, display):
        status = result[0]
        if status == "fatal":
            writer.flush(buffer)
            raise IngestError(
                f"{item.name}: {result[1]}; the workspace must be writable. "
                f"{report.added} images were recorded before this; re-run after fixing it."
            )
        if status == "skip":
            report.skipped.append((item.name, result[1]))
        else:
            buffer.append((item, result))
            if len(buffer) >= chunk_rows:
                writer.flush(buffer)
                buffer = []
        done += 1
        if progress is not None and done % BATCH_FILES == 0:
            progress(BATCH_FILES)
    writer.flush(buffer)
    if progress is not None and done % BATCH_FILES:
        progress(done % BATCH_FILES)
    return report
