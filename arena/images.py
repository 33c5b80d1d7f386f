"""Content-addressed image store.

Decision (documented in the README): an image's name is the sha256 of its
*decoded pixels* -- ``b"RGB8" + width + height (uint32 big-endian) + the RGB
bytes`` -- not of the file. Two files with the same pixels (one with a PNG
text chunk naming the model, one without; a PNG and a lossless WebP) are the
same image, and the name does not depend on the zlib or Pillow version that
wrote the file. The stored file is a PNG holding only the pixels: no text
chunks, no EXIF, no ICC profile, no timestamps, so nothing in it can name the
model. For an 8-bit RGB, non-interlaced, non-animated PNG (what diffusers and
A1111 write) the stored file is the input's critical chunks copied as they are
(``IHDR``, every ``IDAT``, ``IEND``; CRCs checked) -- no re-encoding, which is
what makes importing thousands of images fast; anything else (JPEG, WebP,
palette, greyscale, an RGBA image with an opaque alpha) is decoded and
re-encoded as a fresh RGB PNG. Either way the file decodes to exactly the
pixels that were hashed. Files live at ``images/<sha[:2]>/<sha>.png``;
storing is idempotent (the first file stored under a name is kept).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = (b"IHDR", b"IDAT", b"IEND")


def png_header(data: bytes) -> tuple[int, int, int] | None:
    """(bit depth, colour type, interlace) from a PNG's IHDR, or None if ``data`` is no PNG."""
    if len(data) < 29 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return data[24], data[25], data[28]


def strip_png(data: bytes) -> bytes | None:
    """The critical chunks (IHDR, IDAT..., IEND) of an 8-bit RGB non-interlaced PNG.

    Returns None -- the caller then re-encodes -- for any other PNG, an animated
    PNG (acTL), a chunk with a wrong CRC, or a malformed chunk layout. Every
    ancillary chunk (tEXt/iTXt/zTXt, eXIf, iCCP, tIME, ...) and anything after
    IEND is dropped.
    """
    if png_header(data) != (8, 2, 0):
        return None
    out = [PNG_SIGNATURE]
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > end:
            return None
        if kind == b"acTL":
            return None
        if kind in _PNG_KEEP:
            body = data[pos + 4 : pos + 8 + length]
            (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
            if zlib.crc32(body) != crc:
                return None
            out.append(data[pos:stop])
            if kind == b"IEND":
                return b"".join(out)
        pos = stop
    return None


def _has_transparency(img: PILImage.Image) -> bool:
    if img.mode in ("RGBA", "LA"):
        low, _high = img.getchannel("A").getextrema()
        return low < 255
    if img.mode in ("P", "RGB", "L") and "transparency" in img.info:
        # A palette entry or (tRNS) one colour marked transparent: only real if it is used.
        return _has_transparency(img.convert("RGBA"))
    return False


def broken_kind(rgb: PILImage.Image) -> str | None:
    """'black' or 'uniform' for an image of one colour (a failed generation), else None."""
    extrema = rgb.getextrema()
    if all(low == high for low, high in extrema):
        return "black" if all(high == 0 for _low, high in extrema) else "uniform"
    return None


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
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        # Pillow's own guard (a header claiming billions of pixels); the warning only
        # arrives as an exception when warnings are turned into errors.
        raise ImageError(
            f"{name}: the header claims an image too large to decode safely ({exc}); "
            f"the limit is {max_pixels:,} pixels (setting max_image_pixels). Downscale it."
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
    header = png_header(data)
    if header is not None and header[0] == 16:
        # Pillow silently reads 16-bit colour PNGs as 8-bit RGB; refuse them explicitly.
        mode = f"{mode};16"
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
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImageError(f"{name}: the image is too large to decode safely ({exc}).") from None
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
        """Decode, check and store the image file ``data`` (``name`` is used in errors)."""
        return self.put_image(decode_rgb(data, name, max_pixels), source=data)

    def put_image(self, img: PILImage.Image, source: bytes | None = None) -> StoredImage:
        """Store ``img``; ``source``, the file it was decoded from, is copied stripped if it can."""
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        sha = pixel_sha256(rgb)
        path = self.path_for(sha)
        if not path.exists():
            stripped = strip_png(source) if source is not None else None
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(stripped if stripped is not None else encode_png(rgb))
            os.replace(tmp, path)
        return StoredImage(sha, rgb.width, rgb.height, path)

    def open(self, sha256: str) -> PILImage.Image:
        with PILImage.open(self.path_for(sha256)) as img:
            return img.convert("RGB")

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()


def store_files(
    root: str, jobs: list[tuple[str, str]], max_pixels: int = 64_000_000
) -> list[tuple]:
    """Store each ``(display name, file path)`` under the workspace ``root``.

    The work of one import worker process (read, decode, check, hash, write);
    it returns small tuples, never pixels, so an import's memory stays flat:
    ``("ok", sha256, width, height, broken)``, ``("skip", reason)`` for a bad
    file, or ``("fatal", reason)`` when the image folder cannot be written.
    """
    store = ImageStore(Path(root))
    out: list[tuple] = []
    for name, path in jobs:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            out.append(("skip", f"cannot read the file ({exc.strerror})"))
            continue
        try:
            rgb = decode_rgb(data, name, max_pixels)
        except ImageError as exc:
            out.append(("skip", str(exc).removeprefix(f"{name}: ")))
            continue
        try:
            stored = store.put_image(rgb, source=data)
        except OSError as exc:
            out.append(("fatal", f"cannot write into {store.root} ({exc.strerror})"))
            continue
        out.append(("ok", stored.sha256, stored.width, stored.height, broken_kind(rgb)))
    return out
