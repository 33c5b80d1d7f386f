"""The content-addressed image store: pixel hashing, metadata stripping, refusals."""

import hashlib
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from arena.storage.images import (
    ImageError,
    ImageStore,
    broken_kind,
    decode_rgb,
    inflate_png,
    pixel_sha256,
    png_chunks,
    png_raw_size,
    store_files,
    stored_zlib,
    strip_png,
)
from tests.image_files import BAD_FILES, png_bytes, rgb_array, rgba_png_bytes


def _chunk_types(data: bytes) -> list[bytes]:
    pos, kinds = 8, []
    while pos < len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kinds.append(data[pos + 4 : pos + 8])
        pos += 12 + length
    return kinds


def test_the_name_is_the_sha256_of_the_decoded_pixels(tmp_path):
    arr = rgb_array(0)
    stored = ImageStore(tmp_path).put_bytes(png_bytes(arr), "a.png")
    header = b"RGB8" + struct.pack(">II", 32, 32)
    assert stored.sha256 == hashlib.sha256(header + arr.tobytes()).hexdigest()
    assert stored.path == tmp_path / "images" / stored.sha256[:2] / f"{stored.sha256}.png"
    assert (stored.width, stored.height) == (32, 32)


def test_text_chunks_are_stripped_and_the_pixels_kept(tmp_path):
    arr = rgb_array(1)
    tagged = png_bytes(arr, {"parameters": "Model: secret-model, Steps: 20"})
    store = ImageStore(tmp_path)
    stored = store.put_bytes(tagged, "tagged.png")
    data = stored.path.read_bytes()
    assert b"secret-model" not in data
    assert set(_chunk_types(data)) == {b"IHDR", b"IDAT", b"IEND"}
    assert np.array_equal(np.asarray(Image.open(stored.path)), arr)
    # the same pixels without the chunk, or as a lossless WebP, are the same image
    assert store.put_bytes(png_bytes(arr), "plain.png").sha256 == stored.sha256
    webp = io.BytesIO()
    Image.fromarray(arr).save(webp, format="WEBP", lossless=True)
    assert store.put_bytes(webp.getvalue(), "a.webp").sha256 == stored.sha256


def test_non_png_inputs_are_re_encoded_without_exif(tmp_path):
    img = Image.fromarray(rgb_array(2))
    exif = Image.Exif()
    exif[0x010E] = "secret-model"  # ImageDescription
    out = io.BytesIO()
    img.save(out, format="JPEG", exif=exif.tobytes())
    stored = ImageStore(tmp_path).put_bytes(out.getvalue(), "a.jpg")
    data = stored.path.read_bytes()
    assert data.startswith(b"\x89PNG") and b"secret-model" not in data
    assert set(_chunk_types(data)) <= {b"IHDR", b"IDAT", b"IEND"}
    decoded = decode_rgb(out.getvalue(), "a.jpg")
    assert pixel_sha256(Image.open(stored.path).convert("RGB")) == pixel_sha256(decoded)


def test_an_opaque_rgba_image_is_accepted_as_rgb(tmp_path):
    stored = ImageStore(tmp_path).put_bytes(rgba_png_bytes(255), "opaque.png")
    assert Image.open(stored.path).mode == "RGB"


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_files_are_refused_with_their_name(tmp_path, kind):
    make, fragment = BAD_FILES[kind]
    with pytest.raises(ImageError) as err:
        ImageStore(tmp_path).put_bytes(make(), f"{kind}.png")
    assert str(err.value).startswith(f"{kind}.png: ")
    assert fragment in str(err.value)
    assert not (tmp_path / "images").exists()


def test_a_used_transparent_colour_is_refused_and_an_unused_one_is_not():
    arr = rgb_array(4)
    used = tuple(int(v) for v in arr[0, 0])
    with pytest.raises(ImageError, match="transparent"):
        decode_rgb(png_bytes(arr, transparency=used), "trns.png")
    arr[arr == 7] = 8
    decode_rgb(png_bytes(arr, transparency=(7, 7, 7)), "trns-unused.png")


def test_strip_png_refuses_a_wrong_crc_and_apng_and_keeps_the_rest():
    data = png_bytes(rgb_array(5), {"a": "b"})
    stripped = strip_png(data)
    assert stripped is not None and b"tEXt" not in stripped
    idat = data.index(b"IDAT")
    broken = bytearray(data)
    broken[idat + 10] ^= 0xFF
    assert strip_png(bytes(broken)) is None
    apng = io.BytesIO()
    frames = [Image.fromarray(rgb_array(6)), Image.fromarray(rgb_array(7))]
    frames[0].save(apng, format="PNG", save_all=True, append_images=frames[1:])
    assert strip_png(apng.getvalue()) is None
    assert strip_png(b"GIF89a...") is None


def test_storing_is_idempotent_and_keeps_the_first_file(tmp_path):
    store = ImageStore(tmp_path)
    arr = rgb_array(8)
    first = store.put_bytes(png_bytes(arr), "a.png")
    before = first.path.read_bytes()
    again = store.put_bytes(png_bytes(arr, compress_level=9), "b.png")
    assert again == first and first.path.read_bytes() == before
    assert len(list((tmp_path / "images").rglob("*"))) == 2  # one folder, one file


def test_flat_images_are_flagged():
    assert broken_kind(Image.new("RGB", (8, 8))) == "black"
    assert broken_kind(Image.new("RGB", (8, 8), (9, 9, 9))) == "uniform"
    assert broken_kind(Image.fromarray(rgb_array(9))) is None


def test_store_files_reports_each_file(tmp_path):
    good = tmp_path / "good.png"
    good.write_bytes(png_bytes(rgb_array(10)))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    out = store_files(
        str(tmp_path / "ws"), [("good.png", str(good)), ("bad.png", str(bad)), ("gone", "/nx")]
    )
    assert out[0][0] == "ok" and out[0][2:] == (32, 32, None)
    assert out[1][0] == "skip" and "not an image" in out[1][1]
    assert out[2] == ("skip", "cannot read the file (No such file or directory)")


# -- the fast PNG path (libdeflate inflate, Pillow unfilter) ----------------------------

ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _filter_rows(rows: list[np.ndarray], bpp: int) -> bytes:
    """PNG-filter byte rows, cycling through the five filter types (None, Sub, Up, Avg, Paeth)."""
    out, prev = [], np.zeros_like(rows[0], dtype=np.int16)
    for k, row in enumerate(rows):
        x = row.astype(np.int16)
        left = np.concatenate([np.zeros(bpp, np.int16), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int16), prev[:-bpp]])
        kind = k % 5
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(bytes([kind]) + ((x - pred) % 256).astype(np.uint8).tobytes())
        prev = x
    return b"".join(out)


def _pack(samples: np.ndarray, depth: int) -> list[np.ndarray]:
    """Rows of samples (h x w*channels, values < 2**depth) packed into bytes, MSB first."""
    if depth == 8:
        return list(samples.astype(np.uint8))
    per = 8 // depth
    padded = np.zeros((samples.shape[0], -(-samples.shape[1] // per) * per), np.uint8)
    padded[:, : samples.shape[1]] = samples
    groups = padded.reshape(samples.shape[0], -1, per).astype(np.uint16)
    shifts = np.array([8 - depth * (i + 1) for i in range(per)], np.uint16)
    return list((groups << shifts).sum(axis=2).astype(np.uint8))


def _write_png(samples: np.ndarray, depth: int, colour: int, interlace: int, **extra) -> bytes:
    """A PNG written by hand (every filter type, optional Adam7, IDAT split in three)."""
    h, w = samples.shape[:2]
    flat = samples.reshape(h, w, -1)
    bpp = max(1, SAMPLES[colour] * depth // 8)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            sub = flat[y0::dy, x0::dx]
            if sub.size:
                raw += _filter_rows(_pack(sub.reshape(sub.shape[0], -1), depth), bpp)
    else:
        raw = _filter_rows(_pack(flat.reshape(h, -1), depth), bpp)
    stream = zlib.compress(raw, 6)
    third = len(stream) // 3
    parts = [stream[:third], stream[third : 2 * third], stream[2 * third :]]
    ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, interlace)
    body = _chunk(b"IHDR", ihdr) + _chunk(b"tEXt", b"parameters\0Model: secret-model")
    for kind, value in extra.items():
        body += _chunk(kind.encode(), value)
    body += b"".join(_chunk(b"IDAT", p) for p in parts) + _chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _kind(colour: int, depth: int, interlace: int, seed: int) -> tuple[bytes, np.ndarray]:
    """(PNG bytes, the RGB pixels it must decode to) for one colour type and bit depth."""
    rng = np.random.default_rng(seed)
    h, w = 19, 23  # not multiples of 8: partial Adam7 passes and padded sub-byte rows
    top = 2**depth - 1
    if colour == 0:
        grey = rng.integers(0, top + 1, (h, w))
        expected = np.repeat((grey * 255 // top)[..., None], 3, axis=2)
        return _write_png(grey, depth, 0, interlace), expected.astype(np.uint8)
    if colour == 3:
        palette = rng.integers(0, 256, (top + 1, 3), dtype=np.uint8)
        index = rng.integers(0, top + 1, (h, w))
        data = _write_png(index, depth, 3, interlace, PLTE=palette.tobytes())
        return data, palette[index]
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    if colour == 2:
        return _write_png(rgb, 8, 2, interlace), rgb
    if colour == 4:
        grey = rgb[..., 0]
        la = np.dstack([grey, np.full((h, w), 255, np.uint8)])
        return _write_png(la, 8, 4, interlace), np.repeat(grey[..., None], 3, axis=2)
    rgba = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    return _write_png(rgba, 8, 6, interlace), rgb


ACCEPTED_KINDS = [
    (colour, depth, interlace)
    for colour, depths in ((0, (1, 2, 4, 8)), (3, (1, 2, 4, 8)), (2, (8,)), (4, (8,)), (6, (8,)))
    for depth in depths
    for interlace in (0, 1)
]


@pytest.mark.parametrize("colour,depth,interlace", ACCEPTED_KINDS)
def test_the_fast_path_gives_pillows_pixels_and_hash(tmp_path, colour, depth, interlace):
    data, expected = _kind(colour, depth, interlace, seed=colour * 100 + depth * 10 + interlace)
    assert inflate_png(data) is not None  # the fast path takes it
    pillow = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))  # Pillow, zlib inflate
    assert np.array_equal(pillow, expected)
    decoded = decode_rgb(data, "kind.png")
    assert decoded.tobytes() == expected.tobytes()
    stored = ImageStore(tmp_path).put_bytes(data, "kind.png")
    header = b"RGB8" + struct.pack(">II", expected.shape[1], expected.shape[0])
    assert stored.sha256 == hashlib.sha256(header + expected.tobytes()).hexdigest()
    assert b"secret-model" not in stored.path.read_bytes()
    assert np.array_equal(np.asarray(Image.open(stored.path).convert("RGB")), expected)


@pytest.mark.parametrize(
    "mode,save",
    [
        ("RGB", {}),
        ("RGB", {"compress_level": 0}),
        ("RGB", {"compress_level": 9}),
        ("L", {}),
        ("1", {}),
        ("P", {}),
        ("P", {"bits": 4}),
        ("LA", {}),
        ("RGBA", {}),
    ],
)
def test_the_fast_path_matches_pillow_on_pillow_written_pngs(mode, save):
    rng = np.random.default_rng(11)
    smooth = np.cumsum(rng.integers(-3, 4, (48, 40, 3)), axis=1).clip(0, 255).astype(np.uint8)
    img = Image.fromarray(smooth, "RGB")
    if mode == "P":
        img = img.quantize(16 if save.get("bits") == 4 else 200)
    elif mode in ("LA", "RGBA"):
        img = img.convert(mode)  # alpha 255: opaque
    elif mode != "RGB":
        img = img.convert(mode)
    out = io.BytesIO()
    img.save(out, format="PNG", **save)
    data = out.getvalue()
    assert inflate_png(data) is not None
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    decoded = decode_rgb(data, "pillow.png")
    assert decoded.tobytes() == reference.tobytes()
    assert pixel_sha256(decoded) == pixel_sha256(reference)


def test_png_raw_size_is_the_inflated_size():
    for colour, depth, interlace in ACCEPTED_KINDS:
        data, _ = _kind(colour, depth, interlace, seed=1)
        chunks = [(data[s + 4 : s + 8], data[s + 8 : e - 4]) for _k, s, e in png_chunks(data)]
        raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
        assert png_raw_size(23, 19, depth, colour, interlace) == len(raw)


def test_stored_zlib_round_trips():
    for n in (0, 1, 65534, 65535, 65536, 200_001):
        raw = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
        assert zlib.decompress(stored_zlib(raw)) == raw


def _corrupt_idat(data: bytes, body: bytes) -> bytes:
    """``data`` with its image data replaced by ``body`` (valid chunk layout and CRCs)."""
    chunks = png_chunks(data)
    idats = [(s, e) for kind, s, e in chunks if kind == b"IDAT"]
    return data[: idats[0][0]] + _chunk(b"IDAT", body) + data[idats[-1][1] :]


def _idat_stream(data: bytes) -> bytes:
    return b"".join(data[s + 8 : e - 4] for kind, s, e in png_chunks(data) if kind == b"IDAT")


def _pillow_verdict(data: bytes) -> str | None:
    """Pillow's own error for ``data`` (zlib inflate, no fast path), or None if it decodes."""
    try:
        Image.open(io.BytesIO(data)).load()
    except (OSError, SyntaxError, ValueError) as exc:
        return str(exc)
    return None


def test_corrupt_image_data_is_refused_through_the_fast_path(tmp_path):
    good, _ = _kind(2, 8, 0, seed=3)
    stream = _idat_stream(good)
    raw = zlib.decompress(stream)
    flipped = bytearray(stream)
    flipped[len(flipped) // 2] ^= 0xFF
    bad_filter = bytearray(raw)
    bad_filter[0] = 9  # filter types are 0..4
    cases = {
        "garbled": bytes(flipped),  # libdeflate refuses it
        "short": zlib.compress(raw[: len(raw) // 2]),  # a valid stream of half the rows
        "bad_filter": zlib.compress(bytes(bad_filter)),  # inflates, cannot be unfiltered
        "truncated": stream[: len(stream) // 2],
    }
    for label, body in cases.items():
        data = _corrupt_idat(good, body)
        if label == "bad_filter":
            assert inflate_png(data) is not None  # the fast path inflates it, Pillow refuses
        else:
            assert inflate_png(data) is None  # libdeflate or the size check refuses it
        verdict = _pillow_verdict(data)
        assert verdict is not None
        expected = (
            f"{label}.png: the image data is corrupt or truncated ({verdict}); re-export the file."
        )
        with pytest.raises(ImageError) as err:
            ImageStore(tmp_path).put_bytes(data, f"{label}.png")
        assert str(err.value) == expected
    assert not (tmp_path / "images").exists()


def test_a_stream_longer_than_the_image_is_decoded_as_pillow_does():
    good, expected = _kind(2, 8, 0, seed=4)
    padded = _corrupt_idat(good, zlib.compress(zlib.decompress(_idat_stream(good)) + b"\0" * 99))
    assert inflate_png(padded) is None  # not the size the header implies: Pillow decides
    assert decode_rgb(padded, "padded.png").tobytes() == expected.tobytes()


def test_the_inflated_png_is_a_valid_png_with_the_same_other_chunks():
    data, _ = _kind(3, 4, 1, seed=6)  # palette (PLTE), tEXt, three IDATs
    out = inflate_png(data)
    kinds = [kind for kind, _s, _e in png_chunks(out)]
    assert kinds == [b"IHDR", b"tEXt", b"PLTE", b"IDAT", b"IEND"]
    for _c, start, stop in png_chunks(out):
        (crc,) = struct.unpack_from(">I", out, stop - 4)
        assert zlib.crc32(out[start + 4 : stop - 4]) == crc
    assert zlib.decompress(_idat_stream(out)) == zlib.decompress(_idat_stream(data))
    assert [c for c in png_chunks(data) if c[0] != b"IDAT"][:3] == png_chunks(out)[:3]
