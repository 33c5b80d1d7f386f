"""Reference image sets: folders of real images stored as models of kind "reference".

A reference set is what model-level metrics (KID, FID, CMMD, FD-DINO, the Anomaly
Score) compare each model against. Its images are stored like any other (pixel-hashed,
metadata stripped, broken ones flagged) but have no prompt and no seed, and a model of
kind "reference" is never served to raters. Files are found recursively; decoding and
hashing run in worker processes (``arena.storage.images.store_files``) and rows are committed
per chunk, so a re-run adds only what is new.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from arena.intake.layouts import IMAGE_SUFFIXES
from arena.storage.images import store_files
from arena.storage.intake_verbs import NewImage

BATCH = 32


class ReferenceSetError(ValueError):
    """A reference folder that cannot be imported; the message says how to fix it."""


@dataclass
class ReferenceReport:
    name: str
    folder: str
    added: int = 0
    present: int = 0
    broken: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"reference set {self.name!r} from {self.folder}: {self.added} added, "
            f"{self.present} already present, {self.broken} flagged broken, "
            f"{len(self.skipped)} skipped"
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped[:20]]
        if len(self.skipped) > 20:
            lines.append(f"  ... and {len(self.skipped) - 20} more")
        return "\n".join(lines)


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )


def add_reference_folder(store, folder: str | Path, name: str, workers: int = 1) -> ReferenceReport:
    """Import every image under ``folder`` into the reference set ``name`` (created if new)."""
    folder = Path(folder)
    name = name.strip()
    if not name:
        raise ReferenceSetError("the reference set name is empty; give one with --set NAME.")
    if not folder.is_dir():
        raise ReferenceSetError(f"{folder}: no such folder; expected a folder of real images.")
    files = list_images(folder)
    if not files:
        raise ReferenceSetError(
            f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in the folder or below it."
        )
    model_id = store.add_model(
        name,
        "reference",
        source=str(folder.resolve()),
        description="reference images for model-level metrics; never shown to raters",
    )
    report = ReferenceReport(name, str(folder))
    jobs = [(str(p.relative_to(folder)), str(p)) for p in files]
    batches = [jobs[i : i + BATCH] for i in range(0, len(jobs), BATCH)]
    root, limit = str(store.workspace), store.settings.max_image_pixels
    if workers > 1 and len(batches) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(store_files, [root] * len(batches), batches, [limit] * len(batches))
            for batch, result in zip(batches, results, strict=True):
                _record(store, model_id, batch, result, report)
    else:
        for batch in batches:
            _record(store, model_id, batch, store_files(root, batch, limit), report)
    return report


def _record(store, model_id: int, batch, results, report: ReferenceReport) -> None:
    images = []
    for (label, _path), result in zip(batch, results, strict=True):
        if result[0] == "fatal":
            raise ReferenceSetError(
                f"{label}: {result[1]}; the workspace must be writable "
                f"({report.added} images were recorded before this)."
            )
        if result[0] == "skip":
            report.skipped.append((label, result[1]))
            continue
        _ok, sha, width, height, broken = result
        images.append(NewImage(sha, width, height, broken=broken, source_name=label))
    for image, clash in zip(images, store.add_images(model_id, images), strict=True):
        if clash is None:
            report.added += 1
            report.broken += image.broken is not None
        else:  # a reference image has no prompt and no seed: only its pixels can clash
            report.present += 1
