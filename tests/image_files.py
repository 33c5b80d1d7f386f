"""Image files of every kind the import meets, written by real encoders (Pillow, zlib)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin


def rgb_array(seed: int, size: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def png_bytes(arr: np.ndarray, text: dict | None = None, **save) -> bytes:
    """A PNG of ``arr``; ``text`` becomes tEXt chunks (as A1111 writes its parameters)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="PNG", pnginfo=info, **save)
    return out.getvalue()


def write_png(path: Path, arr: np.ndarray, text: dict | None = None) -> Path:
    path.write_bytes(png_bytes(arr, text))
    return path


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png16_rgb_bytes(size: int = 8) -> bytes:
    """A 16-bit-per-channel RGB PNG (Pillow would silently read it as 8-bit RGB)."""
    arr = np.random.default_rng(1).integers(0, 65536, (size, size, 3)).astype(">u2")
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(size))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 16, 2, 0, 0, 0))
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def cmyk_jpeg_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("CMYK", (16, 16), (10, 200, 30, 0)).save(out, format="JPEG")
    return out.getvalue()


def gray16_png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("I;16", (16, 16), 40000).save(out, format="PNG")
    return out.getvalue()


def rgba_png_bytes(alpha: int) -> bytes:
    arr = np.dstack([rgb_array(3, 16), np.full((16, 16), alpha, np.uint8)])
    out = io.BytesIO()
    Image.fromarray(arr, "RGBA").save(out, format="PNG")
    return out.getvalue()


def truncated_png_bytes() -> bytes:
    data = png_bytes(rgb_array(5, 64))
    return data[: len(data) // 2]


BAD_FILES = {
    # file name -> (bytes, a fragment the refusal must contain)
    "truncated": (truncated_png_bytes, "corrupt or truncated"),
    "not_an_image": (lambda: b"these are notes, not pixels\n", "not an image"),
    "cmyk": (cmyk_jpeg_bytes, "CMYK"),
    "deep16": (png16_rgb_bytes, "16"),
    "gray16": (gray16_png_bytes, "16"),
    "alpha": (lambda: rgba_png_bytes(100), "transparent"),
}
