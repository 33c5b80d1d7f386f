"""Display renditions: the only image files a rater ever receives.

A stored original keeps what its pipeline wrote (native size, and for imported
PNGs the encoder's own IDAT chunking), and any of that can name the model
before the vote. So every image a rater sees -- gold copies included -- is made
again by one pipeline with fixed parameters: scaled to fit the display box
(up or down, Lanczos) and centred on neutral grey, so both sides of a battle
have the same pixel size whatever the models' native sizes; encoded by one
encoder (libjpeg through Pillow: quality 95, 4:4:4, baseline, no EXIF, ICC or
comments). What is left to tell the sides apart is the pixels themselves.

JPEG rather than PNG: 3 ms against 30-80 ms to encode 768x768 (PNG's size would
also follow the source's noise more), and at quality 95 without chroma
subsampling the difference from the original is below what raters can see.
The default box, 512x512, is about the frame's CSS size on a 1080p screen and
keeps import at ~250 images/s on 2 cores (a rendition costs 1.6 ms there, 9.5 ms
at 768x768, where the Lanczos upscale dominates; benchmarks/README.md).
Renditions live under ``renditions/<pipeline>-<W>x<H>/`` beside ``images/``;
changing the display size or the pipeline makes a new folder, never a mix.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

from PIL import Image as PILImage

from arena.config import SettingsError

PIPELINE = "r1"  # bump when any parameter below changes
BACKGROUND = (128, 128, 128)
RESAMPLE = PILImage.Resampling.LANCZOS
JPEG_PARAMS = {"quality": 95, "subsampling": 0, "optimize": False, "progressive": False}
MEDIA_TYPE = "image/jpeg"
SIZE_PATTERN = re.compile(r"^\s*(\d{2,5})\s*[xX]\s*(\d{2,5})\s*$")
MIN_SIDE, MAX_SIDE = 64, 4096


class RenditionError(SettingsError):
    """A display size that cannot be used (a settings error: the CLI prints it plainly)."""


def parse_display_size(text: str) -> tuple[int, int]:
    """``"512x512"`` -> (512, 512); anything else names the setting and the expected form."""
    match = SIZE_PATTERN.match(str(text))
    sides = tuple(int(g) for g in match.groups()) if match else ()
    if len(sides) != 2 or not all(MIN_SIDE <= side <= MAX_SIDE for side in sides):
        raise RenditionError(
            f"display_size {text!r:.40}: expected WIDTHxHEIGHT with each side between "
            f"{MIN_SIDE} and {MAX_SIDE} pixels, e.g. 512x512 (ARENA_DISPLAY_SIZE)."
        )
    return sides[0], sides[1]


def fit(width: int, height: int, box: tuple[int, int]) -> tuple[int, int]:
    """The largest size of the image's aspect that fits ``box`` (at least 1x1)."""
    scale = min(box[0] / width, box[1] / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def letterbox(rgb: PILImage.Image, box: tuple[int, int]) -> PILImage.Image:
    """``rgb`` scaled to fit ``box`` and centred on the neutral background."""
    rgb = rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    size = fit(rgb.width, rgb.height, box)
    # reducing_gap: a large downscale first averages whole pixel blocks (fast), then
    # resamples the rest with Lanczos; no effect on upscales.
    scaled = rgb if size == rgb.size else rgb.resize(size, RESAMPLE, reducing_gap=3.0)
    if size == box:
        return scaled
    canvas = PILImage.new("RGB", box, BACKGROUND)
    canvas.paste(scaled, ((box[0] - size[0]) // 2, (box[1] - size[1]) // 2))
    return canvas


def encode(img: PILImage.Image) -> bytes:
    """The one display encoding: JPEG with fixed parameters and no metadata."""
    out = io.BytesIO()
    img.save(out, format="JPEG", **JPEG_PARAMS)
    return out.getvalue()


def render(rgb: PILImage.Image, box: tuple[int, int]) -> bytes:
    return encode(letterbox(rgb, box))


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that no reader (another process included) sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class Renditions:
    """Rendition files of one workspace for one display box; writes are atomic."""

    def __init__(self, workspace: Path, box: tuple[int, int]):
        self.box = box
        self.root = Path(workspace) / "renditions" / f"{PIPELINE}-{box[0]}x{box[1]}"

    @classmethod
    def for_size(cls, workspace: Path, display_size: str) -> Renditions:
        return cls(workspace, parse_display_size(display_size))

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.jpg"

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def make(self, sha256: str, rgb: PILImage.Image) -> Path:
        """Write the rendition of the image with pixel hash ``sha256`` unless it exists."""
        path = self.path_for(sha256)
        if not path.is_file():
            write_atomic(path, render(rgb, self.box))
        return path

    def ensure(self, sha256: str, images) -> Path:
        """The rendition's path, made from the stored original (``images``) if missing."""
        path = self.path_for(sha256)
        if path.is_file():
            return path
        return self.make(sha256, images.open(sha256))


def _make_batch(workspace: str, display_size: str, shas: list[str]) -> int:
    """Worker: make the renditions of ``shas`` from their originals under ``workspace``."""
    from arena.storage.images import ImageStore

    originals = ImageStore(Path(workspace))  # read only: no renditions of its own
    renditions = Renditions.for_size(Path(workspace), display_size)
    for sha in shas:
        renditions.ensure(sha, originals)
    return len(shas)


def make_missing(workspace: Path, display_size: str, shas: list[str], workers: int = 2) -> int:
    """Make every missing rendition among ``shas`` (in worker processes); returns how many.

    Image rows without their original file (never servable) are passed over here, so
    they start no worker.
    """
    from arena.storage.images import ImageStore

    originals = ImageStore(Path(workspace))
    renditions = Renditions.for_size(Path(workspace), display_size)
    missing = sorted({sha for sha in shas if not renditions.exists(sha) and originals.exists(sha)})
    if not missing:
        return 0
    batches = [missing[k : k + 64] for k in range(0, len(missing), 64)]
    if workers <= 1 or len(missing) < 64:
        return sum(_make_batch(str(workspace), display_size, b) for b in batches)
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=workers) as pool:
        args = ([str(workspace)] * len(batches), [display_size] * len(batches), batches)
        return sum(pool.map(_make_batch, *args))


def complete_renditions(store, workers: int = 1) -> int:
    """Make the missing renditions of every servable image of ``store`` (gold copies too).

    The matchmaker runs it whenever it (re)builds its candidate index -- at start-up and
    when images are added -- so no rater's first look at an image waits for its
    rendition: a slower first fetch would tell new images (a new model) from seen ones.
    """
    from sqlalchemy import select

    from arena.storage import db

    if store.images.renditions is None:
        return 0
    with store.session() as s:
        shas = list(
            s.scalars(
                select(db.Image.sha256)
                .join(db.Model, db.Model.id == db.Image.model_id)
                .where(
                    db.Model.kind != "reference",
                    db.Image.broken.is_(None) | (db.Image.broken == "gold"),
                )
                .distinct()
            )
        )
    return make_missing(store.workspace, store.settings.display_size, shas, workers)
