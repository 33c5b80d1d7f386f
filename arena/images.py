"""Content-addressed image store.

Decision (documented in the README): an image's name is the sha256 of its
*decoded pixels* -- ``b"RGB8" + width + height (uint32 big-endian) + the RGB
bytes`` -- not of the file. Two files with the same pixels (one with a PNG
text chunk naming the model, one without; a PNG and a lossless WebP) are the
same image, and the name does not depend on the zlib or Pillow version that
wrote the file. The stored file is a fresh PNG holding only the pixels: no
text chunks, no EXIF, no ICC profile, no timestamps, so nothing in it can name
the model. Files live at ``images/<sha[:2]>/<sha>.png``; storing is idempotent.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from PIL import UnidentifiedImageError

ACCEPTED_MODES = {"RGB", "L", "P", "RGBA", "LA", "1"}


class ImageError(ValueError):
    """An input image cannot be stored; the message names the file and the fix."""


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    width: int
    height: int
    path: Path


def pixel_sha256(rgb: PILImage.Image) -> str:
    """sha256 over the header ``RGB8 w h`` and the raw RGB bytes of an RGB image."""
    if rgb.mode != "RGB":
        raise ValueError(f"pixel_sha256 needs an RGB image, got mode {rgb.mode}")
    digest = hashlib.sha256(b"RGB8" + struct.pack(">II", rgb.width, rgb.height))
    digest.update(rgb.tobytes())
    return digest.hexdigest()


def _has_transparency(img: PILImage.Image) -> bool:
    if img.mode in ("RGBA", "LA"):
        low, _high = img.getchannel("A").getextrema()
        return low < 255
    if img.mode == "P" and "transparency" in img.info:
        return _has_transparency(img.convert("RGBA"))
    return False


def decode_rgb(data: bytes, name: str, max_pixels: int = 64_000_000) -> PILImage.Image:
    """Decode image bytes into an 8-bit RGB image, or raise ImageError saying why not."""
    try:
        with PILImage.open(io.BytesIO(data)) as probe:
            width, height = probe.size
            fmt = probe.format
            mode = probe.mode
    except UnidentifiedImageError:
        raise ImageError(
            f"{name}: not an image file (expected PNG, JPEG or WebP). Remove it from the "
            "folder or convert it."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{name}: cannot read the image header ({exc}); the file is corrupt."
        ) from None
    if width * height > max_pixels:
        raise ImageError(
            f"{name}: {width}x{height} is {width * height:,} pixels, more than the limit of "
            f"{max_pixels:,} (setting max_image_pixels); downscale it or raise the limit."
        )
    if mode not in ACCEPTED_MODES:
        hint = "convert it to 8-bit RGB" if mode != "CMYK" else "convert it from CMYK to RGB"
        raise ImageError(
            f"{name}: unsupported {fmt} image mode {mode!r} (expected 8-bit RGB, greyscale or "
            f"palette; 16-bit, float and CMYK images are not accepted): {hint}, e.g. "
            "`magick in.png -depth 8 -colorspace sRGB out.png`."
        )
    try:
        img = PILImage.open(io.BytesIO(data))
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(
            f"{name}: the image data is corrupt or truncated ({exc}); re-export the file."
        ) from None
    if _has_transparency(img):
        raise ImageError(
            f"{name}: the image has transparent pixels (mode {img.mode}); raters would see "
            "different backgrounds. Flatten it onto a background colour first."
        )
    return img if img.mode == "RGB" else img.convert("RGB")


def encode_png(rgb: PILImage.Image) -> bytes:
    """A metadata-free PNG of the pixels (fast zlib level; the size is not the point)."""
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class ImageStore:
    """Files under ``root/images``; names are pixel hashes; writes are atomic."""

    def __init__(self, root: Path):
        self.root = Path(root) / "images"

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def put_bytes(self, data: bytes, name: str, max_pixels: int = 64_000_000) -> StoredImage:
        return self.put_image(decode_rgb(data, name, max_pixels))

    def put_image(self, img: PILImage.Image) -> StoredImage:
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        sha = pixel_sha256(rgb)
        path = self.path_for(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(encode_png(rgb))
            os.replace(tmp, path)
        return StoredImage(sha, rgb.width, rgb.height, path)

    def open(self, sha256: str) -> PILImage.Image:
        with PILImage.open(self.path_for(sha256)) as img:
            return img.convert("RGB")

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()
