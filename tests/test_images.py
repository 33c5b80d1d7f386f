"""The content-addressed image store: pixel hashing, metadata stripping, refusals."""

import hashlib
import io
import struct

import numpy as np
import pytest
from PIL import Image

from arena.images import (
    ImageError,
    ImageStore,
    broken_kind,
    decode_rgb,
    pixel_sha256,
    store_files,
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
