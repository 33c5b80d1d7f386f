"""Content-addressed image store.

Decision (docs/importing.md, "Image identity"): an image's name is the sha256 of its
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

Speed (``benchmarks/ingest.py``): three quarters of Pillow's PNG decode is
zlib's inflate. A PNG's image data is therefore inflated with libdeflate
(about 2.5x faster) and handed to Pillow as uncompressed ("stored") deflate
blocks, so Pillow still does everything else -- unfiltering, interlacing,
palettes, bit depths, transparency -- and the pixels are Pillow's own. Any
PNG the fast path does not take (a stream libdeflate refuses, a wrong inflated
size, APNG, odd chunk layout) is decoded by Pillow from the original bytes,
which also gives Pillow's own error for a corrupt file.
"""

from __future__ import annotations

import ctypes
import hashlib
import io
import struct
from dataclasses import dataclass
from pathlib import Path

import deflate
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from arena.storage.renditions import Renditions, write_atomic

ACCEPTED_MODES = {"RGB", "L", "P", "RGBA", "LA", "1"}


class ImageError(ValueError):
    """An input image cannot be stored; the message names the file and the fix."""


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    width: int
    height: int
    path: Path


def pixel_sha256(rgb: PILImage.Image, raw: bytes | None = None) -> str:
    """sha256 over the header ``RGB8 w h`` and the raw RGB bytes of an RGB image.

    ``raw`` is ``rgb.tobytes()`` when the caller already has it.
    """
    if rgb.mode != "RGB":
        raise ValueError(f"pixel_sha256 needs an RGB image, got mode {rgb.mode}")
    digest = hashlib.sha256(b"RGB8" + struct.pack(">II", rgb.width, rgb.height))
    digest.update(rgb.tobytes() if raw is None else raw)
    return digest.hexdigest()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_KEEP = (b"IHDR", b"IDAT", b"IEND")


def png_header(data: bytes) -> tuple[int, int, int] | None:
    """(bit depth, colour type, interlace) from a PNG's IHDR, or None if ``data`` is no PNG."""
    if len(data) < 29 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return data[24], data[25], data[28]


def png_chunks(data: bytes) -> list[tuple[bytes, int, int]] | None:
    """(type, start, stop) of each chunk of a PNG up to and including IEND.

    None when a chunk runs past the end of ``data`` or there is no IEND.
    """
    chunks = []
    pos, end = len(PNG_SIGNATURE), len(data)
    while pos + 12 <= end:
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > end:
            return None
        chunks.append((kind, pos, stop))
        if kind == b"IEND":
            return chunks
        pos = stop
    return None


def _chunk_crc_ok(data: bytes, start: int, stop: int) -> bool:
    (crc,) = struct.unpack_from(">I", data, stop - 4)
    return deflate.crc32(memoryview(data)[start + 4 : stop - 4]) == crc


def strip_png(data: bytes) -> bytes | None:
    """The critical chunks (IHDR, IDAT..., IEND) of an 8-bit RGB non-interlaced PNG.

    Returns None -- the caller then re-encodes -- for any other PNG, an animated
    PNG (acTL), a chunk with a wrong CRC, or a malformed chunk layout. Every
    ancillary chunk (tEXt/iTXt/zTXt, eXIf, iCCP, tIME, ...) and anything after
    IEND is dropped.
    """
    if png_header(data) != (8, 2, 0):
        return None
    chunks = png_chunks(data)
    if chunks is None or any(kind == b"acTL" for kind, _start, _stop in chunks):
        return None
    out = [PNG_SIGNATURE]
    for kind, start, stop in chunks:
        if kind in _PNG_KEEP:
            if not _chunk_crc_ok(data, start, stop):
                return None
            out.append(data[start:stop])
    return b"".join(out)


_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
# Adam7 passes: first column, first row, column step, row step.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
_STORED_BLOCK = 65535  # the largest uncompressed deflate block


def png_raw_size(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes of a PNG's inflated image data: each row is a filter byte and packed samples."""
    bits = _SAMPLES[colour] * depth

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if not interlace:
        return rows(width, height)
    return sum(
        rows((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy) for x0, y0, dx, dy in _ADAM7
    )


def _stored_parts(raw: bytes) -> list:
    """The pieces of a zlib stream holding ``raw`` in uncompressed ("stored") deflate blocks."""
    view = memoryview(raw)
    parts: list = [b"\x78\x01"]  # deflate, 32 KiB window, no dictionary, "fastest"
    for start in range(0, max(len(raw), 1), _STORED_BLOCK):
        piece = view[start : start + _STORED_BLOCK]
        final = start + _STORED_BLOCK >= len(raw)
        parts.append(struct.pack("<BHH", final, len(piece), len(piece) ^ 0xFFFF))
        parts.append(piece)
    parts.append(struct.pack(">I", deflate.adler32(raw)))
    return parts


def stored_zlib(raw: bytes) -> bytes:
    """A zlib stream holding ``raw`` in stored deflate blocks (inflating it is a copy)."""
    return b"".join(_stored_parts(raw))


def inflate_png(data: bytes) -> bytes | None:
    """``data`` with its IDAT chunks replaced by one holding the image data inflated.

    The inflate is libdeflate's; the result is the same PNG (every other chunk
    kept as it is) that Pillow decodes to the same pixels without zlib's slow
    inflate. None -- decode ``data`` itself -- for no PNG, an APNG, a bit depth
    over 8, IDAT chunks that are not consecutive, a malformed chunk layout, or
    image data that libdeflate refuses or that does not inflate to exactly the
    size the header implies (corrupt, truncated or padded: Pillow then gives
    its own verdict on the original).
    """
    header = png_header(data)
    if header is None or header[0] > 8 or header[1] not in _SAMPLES:
        return None
    chunks = png_chunks(data)
    if chunks is None:
        return None
    idats = [i for i, (kind, _start, _stop) in enumerate(chunks) if kind == b"IDAT"]
    if not idats or idats[-1] - idats[0] + 1 != len(idats):
        return None
    if any(kind == b"acTL" for kind, _start, _stop in chunks):
        return None
    width, height = struct.unpack_from(">II", data, 16)
    size = png_raw_size(width, height, *header)
    view = memoryview(data)
    stream = b"".join(view[chunks[i][1] + 8 : chunks[i][2] - 4] for i in idats)
    try:
        raw = deflate.zlib_decompress(stream, size)
    except deflate.DeflateError:
        return None
    del stream
    if len(raw) != size:
        return None
    # One IDAT chunk, assembled in a single join (its CRC runs over the pieces): at most
    # the file, the inflated data and the result are in memory at once.
    parts = _stored_parts(raw)
    length = sum(len(part) for part in parts)
    if length > 2**31 - 1:  # the PNG limit for one chunk
        return None
    crc = deflate.crc32(b"IDAT")
    for part in parts:
        crc = deflate.crc32(part, crc)
    first, last = chunks[idats[0]][1], chunks[idats[-1]][2]
    head = (view[:first], struct.pack(">I", length), b"IDAT")
    return b"".join((*head, *parts, struct.pack(">I", crc), view[last:]))


def _has_transparency(img: PILImage.Image) -> bool:
    if img.mode in ("RGBA", "LA"):
        low, _high = img.getchannel("A").getextrema()
        return low < 255
    if img.mode in ("P", "RGB", "L") and "transparency" in img.info:
        # A palette entry or (tRNS) one colour marked transparent: only real if it is used.
        return _has_transparency(img.convert("RGBA"))
    return False


def broken_kind(rgb: PILImage.Image, raw: bytes | None = None) -> str | None:
    """'black' or 'uniform' for an RGB image of one colour (a failed generation), else None.

    ``raw`` is ``rgb.tobytes()`` when the caller already has it. One colour
    means every byte equals the one three places on; the comparison stops at
    the first difference, so a normal picture costs almost nothing.
    """
    if rgb.mode != "RGB":
        raise ValueError(f"broken_kind needs an RGB image, got mode {rgb.mode}")
    view = memoryview(rgb.tobytes() if raw is None else raw)
    if view[3:] != view[:-3]:
        return None
    return "black" if view[:3] == b"\0\0\0" else "uniform"


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
    img = _load_fast(data) if header is not None else None
    if img is None:
        try:
            img = _load(data)
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


def _load(data: bytes) -> PILImage.Image:
    img = PILImage.open(io.BytesIO(data))
    img.load()
    return img


def _load_fast(data: bytes) -> PILImage.Image | None:
    """A PNG decoded through ``inflate_png``; None where that does not apply or fails."""
    inflated = inflate_png(data)
    if inflated is None:
        return None
    try:
        return _load(inflated)
    except (
        OSError,
        SyntaxError,
        ValueError,
        PILImage.DecompressionBombError,
        PILImage.DecompressionBombWarning,
    ):
        return None  # e.g. a bad filter byte: decode the original for Pillow's own error


def encode_png(rgb: PILImage.Image) -> bytes:
    """A metadata-free PNG of the pixels (fast zlib level; the size is not the point)."""
    out = io.BytesIO()
    rgb.save(out, format="PNG", compress_level=1)
    return out.getvalue()


class ImageStore:
    """Files under ``root/images``; names are pixel hashes; writes are atomic."""

    def __init__(self, root: Path, display_size: str | None = None):
        self.root = Path(root) / "images"
        # With a display size, every stored image also gets its display rendition (what
        # raters are served, see arena.storage.renditions); reference sets have none.
        self.renditions = Renditions.for_size(root, display_size) if display_size else None

    def path_for(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.png"

    def put_bytes(self, data: bytes, name: str, max_pixels: int = 64_000_000) -> StoredImage:
        """Decode, check and store the image file ``data`` (``name`` is used in errors)."""
        return self.put_image(decode_rgb(data, name, max_pixels), source=data)

    def put_image(self, img: PILImage.Image, source: bytes | None = None) -> StoredImage:
        """Store ``img``; ``source``, the file it was decoded from, is copied stripped if it can."""
        rgb = img if img.mode == "RGB" else img.convert("RGB")
        return self.put_pixels(rgb, rgb.tobytes(), source)

    def put_pixels(self, rgb: PILImage.Image, raw: bytes, source: bytes | None) -> StoredImage:
        """``put_image`` of an RGB image whose ``tobytes()`` the caller already made."""
        sha = pixel_sha256(rgb, raw)
        path = self.path_for(sha)
        if not path.exists():
            stripped = strip_png(source) if source is not None else None
            write_atomic(path, stripped if stripped is not None else encode_png(rgb))
        if self.renditions is not None:
            self.renditions.make(sha, rgb)
        return StoredImage(sha, rgb.width, rgb.height, path)

    def open(self, sha256: str) -> PILImage.Image:
        with PILImage.open(self.path_for(sha256)) as img:
            return img.convert("RGB")

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).exists()


def store_files(
    root: str,
    jobs: list[tuple[str, str]],
    max_pixels: int = 64_000_000,
    display_size: str | None = None,
) -> list[tuple]:
    """Store each ``(display name, file path)`` under the workspace ``root``.

    The work of one import worker process (read, decode, check, hash, write);
    it returns small tuples, never pixels, so an import's memory stays flat:
    ``("ok", sha256, width, height, broken)``, ``("skip", reason)`` for a bad
    file, or ``("fatal", reason)`` when the image folder cannot be written.
    """
    store = ImageStore(Path(root), display_size)
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
        raw = rgb.tobytes()
        try:
            stored = store.put_pixels(rgb, raw, source=data)
        except OSError as exc:
            out.append(("fatal", f"cannot write into {store.root} ({exc.strerror})"))
            continue
        out.append(("ok", stored.sha256, stored.width, stored.height, broken_kind(rgb, raw)))
    return out


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters


def init_worker() -> None:
    """Run once in each import worker process: keep freed image-sized buffers for reuse.

    Every image allocates a few buffers of about 1 MB (the file, the inflated
    data, the pixels). By default glibc hands each one back to the kernel when
    it is freed (mmap above its threshold, or a heap trim), and the next image
    pays for fresh zeroed pages again: measured at about 1 ms per buffer for a
    512x512 image. Raising the two thresholds keeps buffers of up to 16 MiB in
    the heap for reuse; a worker keeps at most 64 MiB of freed memory, so its
    size still does not grow with the number of images. Nothing changes where
    the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 16 << 20)
    mallopt(M_TRIM_THRESHOLD, 64 << 20)
