"""Display renditions: one size, one encoder, nothing of the source file survives."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from arena.config import load_settings
from arena.storage.images import store_files
from arena.storage.renditions import (
    BACKGROUND,
    RenditionError,
    Renditions,
    fit,
    letterbox,
    parse_display_size,
    render,
)
from arena.storage.store import Store
from arena.voting.matchmaking import Matchmaker, UniformPolicy


def picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + y) % 256], axis=-1)
    noise = rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def png_bytes(img: Image.Image, **params) -> bytes:
    out = io.BytesIO()
    img.save(out, format="PNG", **params)
    return out.getvalue()


def handmade_png(img: Image.Image, chunk: int, level: int) -> bytes:
    """A PNG with many small IDAT chunks at another zlib level (another 'encoder')."""
    raw = b"".join(b"\x00" + img.tobytes()[r * img.width * 3 : (r + 1) * img.width * 3]
                   for r in range(img.height))  # fmt: skip
    data = zlib.compress(raw, level)

    def part(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body).to_bytes(4, "big")
        return len(body).to_bytes(4, "big") + kind + body + crc

    header = img.width.to_bytes(4, "big") + img.height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    idats = [part(b"IDAT", data[i : i + chunk]) for i in range(0, len(data), chunk)]
    return b"\x89PNG\r\n\x1a\n" + part(b"IHDR", header) + b"".join(idats) + part(b"IEND", b"")


@pytest.mark.parametrize("size", [(300, 200), (200, 300), (64, 64), (1024, 512), (511, 513)])
def test_every_image_comes_out_at_the_display_size_letterboxed(size):
    box = (256, 256)
    out = letterbox(picture(*size), box)
    assert out.size == box and out.mode == "RGB"
    w, h = fit(*size, box)
    assert max(w, h) == 256 and abs(w / h - size[0] / size[1]) < 0.02
    pixels = np.asarray(out)
    if w < 256:  # bars left and right, neutral grey
        assert (pixels[:, : (256 - w) // 2] == BACKGROUND).all()
    if h < 256:
        assert (pixels[: (256 - h) // 2] == BACKGROUND).all()


def test_the_same_pixels_give_the_same_bytes_whatever_the_source_encoder():
    """The fingerprint of an encoder (zlib level, chunking, text chunks) does not survive."""
    img = picture(200, 160, seed=3)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", "model: secret-model-v2, steps 28")
    sources = [
        png_bytes(img, compress_level=0),
        png_bytes(img, compress_level=9, pnginfo=info),
        handmade_png(img, chunk=512, level=1),
    ]
    assert len({s[:64] for s in sources}) == 3  # the sources do differ in their bytes
    outs = {render(Image.open(io.BytesIO(s)), (256, 256)) for s in sources}
    assert len(outs) == 1
    out = outs.pop()
    assert b"secret-model" not in out and b"parameters" not in out
    with Image.open(io.BytesIO(out)) as shown:
        assert shown.format == "JPEG" and shown.size == (256, 256)
        assert set(shown.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density"}


def test_a_rendition_is_close_to_the_original_pixels():
    img = picture(256, 256, seed=5)
    with Image.open(io.BytesIO(render(img, (256, 256)))) as shown:
        diff = np.asarray(shown, dtype=np.float64) - np.asarray(img, dtype=np.float64)
    psnr = 10 * np.log10(255**2 / np.mean(diff**2))
    assert psnr > 35  # quality 95, 4:4:4, even on this noisy picture: visually the same


@pytest.mark.parametrize("text", ["", "512", "512x", "10x10", "512x99999", "axb", "512*512"])
def test_bad_display_sizes_name_the_setting(text):
    with pytest.raises(RenditionError, match=r"display_size.*WIDTHxHEIGHT.*ARENA_DISPLAY_SIZE"):
        parse_display_size(text)


def test_display_size_parses():
    assert parse_display_size(" 640 x 480 ") == (640, 480)


def test_the_store_writes_renditions_of_imported_and_generated_images(tmp_path):
    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws"), display_size="128x96"))
    stored = store.images.put_image(picture(300, 300))
    path = store.images.renditions.path_for(stored.sha256)
    assert path.is_file() and path.parent.parent.name == "r1-128x96"
    with Image.open(path) as shown:
        assert shown.size == (128, 96)
    # Import workers write them too; reference sets (no display size) do not.
    src = tmp_path / "a.png"
    src.write_bytes(png_bytes(picture(90, 60, seed=9)))
    ((status, sha, *_rest),) = store_files(
        str(tmp_path / "ws"), [("a.png", str(src))], 10**7, "128x96"
    )
    assert status == "ok" and store.images.renditions.exists(sha)
    ((_, ref_sha, *_),) = store_files(str(tmp_path / "ref"), [("a.png", str(src))], 10**7, None)
    assert not (tmp_path / "ref" / "renditions").exists() and ref_sha == sha
    store.close()


def test_a_missing_rendition_is_made_from_the_original(tmp_path):
    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws")))
    sha = store.images.put_image(picture(100, 100)).sha256
    other = Renditions.for_size(store.workspace, "64x64")  # a new display size
    assert not other.exists(sha)
    path = other.ensure(sha, store.images)
    with Image.open(path) as shown:
        assert shown.size == (64, 64)
    store.close()


def test_the_matchmaker_first_makes_every_missing_rendition(tmp_path):
    """A workspace from before renditions (or a new display size) is completed before any
    rater arrives, so no first look at an image waits for its rendition."""
    import shutil

    from arena.storage.renditions import complete_renditions
    from tests.arena_fixtures import build_fixture

    store = Store(load_settings(env={}, workspace=str(tmp_path / "ws")))
    build_fixture(store, n_prompts=40, seeds=1, size=48)  # 3 models x 40 images, reference
    shutil.rmtree(store.workspace / "renditions")
    made = complete_renditions(store, workers=2)
    images = store.images_frame()
    servable = images[images["model_kind"] != "reference"]["sha256"].unique()
    assert made == len(servable) > 64  # more than one batch: the process pool ran
    assert all(store.images.renditions.exists(sha) for sha in servable)
    assert complete_renditions(store, workers=2) == 0
    # ... and the matchmaker runs it before new images become servable.
    shutil.rmtree(store.workspace / "renditions")
    Matchmaker(store, UniformPolicy(), np.random.default_rng(0)).index()
    assert all(store.images.renditions.exists(sha) for sha in servable)
    store.close()
