"""Attack 1 on the voting path (issue 16, "Trustworthy votes"): telling the model from the
side channels, everything a client sees before the vote but the pixels. Reproduced against
the real app on a free port over real HTTP, as a bot would run it, and asserted to fail.

Clients are raw HTTP (``tests/attack_kit.Api``: the public API ``/rater``, ``/battle``,
``/vote`` through ``/gradio_api/call/<name>``, and the image URLs), so that every header
and every timing is seen. Servers run with ``trusted_proxies="127.0.0.1"`` and clients
send ``X-Forwarded-For: 10.0.x.y`` to act as different addresses (only ever to
127.0.0.1). Ground truth (which model is on which side) is read from the database
afterwards by battle token. No mocks.

The other attacks of the suite: 2 (linking image URLs) and 3 (spotting gold checks) in
tests/test_attacks_urls_and_gold.py; 4 (minting ids), 5 (rate limits under forged
addresses) and 6 (a fingerprinting bot) in tests/test_attacks_identities.py.

attack -> test                                         covered elsewhere (not repeated)
-----------------------------------------------------  -------------------------------------
1. side-channel scan: predict the model from all a     test_blinding.py: no model name,
   client sees before the vote but the pixels (URL,    source or path reaches the browser;
   headers of /battle and /img, JPEG layout, natural   metadata-free JPEG markers
   size, side, timings), on images imported by
   `arena import-images` from 3 encoders, 3 native
   sizes, 3 import runs; the served bytes are the
   fixed pipeline applied to the pixels, byte for
   byte; the same scan on the pre-defence route
   separates the models
   -> test_side_channel_scan_predicts_no_model
   the first GET of each image after a start on a
   workspace imported under another display size
   -> test_first_fetches_do_not_tell_the_model_when_renditions_were_missing
   ... and of a model imported while the server runs,
   from a shell with another display size
   -> test_first_fetches_of_a_live_import_do_not_tell_the_model
      (found by this suite; fixed: the matchmaker makes
      missing renditions before new images enter it)

What the pixels themselves tell is not asserted (every served byte is asserted to be the
fixed pipeline's output for the stored pixels). For the record, from the scan: the body
size, a function of the pixels, tells the upscaled 128-px model from the others a little
better than chance (kNN about 0.55-0.58 against a 0.53 bound over 72 images, Kruskal-Wallis
p about 6e-4): an upscaled image keeps a faint resampling texture that JPEG q95 partly
encodes (at q90 the same scan gives 0.31, p 0.28).

Run time: about 30 s on two cores (the scan's workspace and 180 battles ~12 s; the live
import waits 10 s for the matchmaker to see the new model).
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from arena import cli
from arena.config import load_settings
from arena.storage.renditions import parse_display_size, render
from arena.storage.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import build_fixture
from tests.attack_kit import (
    DISPLAY,
    PROXY,
    VOTE_TAB,
    Api,
    Observed,
    assert_no_leak,
    battle_truth,
    png_layout,
    report,
    scan,
)

# -- 1. the side-channel scan ---------------------------------------------------------------------
CONTENT_SIZE = 256
SCAN_MODELS = {  # name: (native size, encoder); the content is the same for all three
    "velvet-otter": (128, "pillow-level-0"),
    "granite-heron": (192, "pillow-level-9"),
    "saffron-mole": (256, "handmade-many-idat"),
}
SCAN_PROMPTS = 24
# DISPLAY (tests/attack_kit.py) is 160x160: 128 is scaled up, 192 and 256 down


def content_image(rng: np.random.Generator, size: int = CONTENT_SIZE) -> Image.Image:
    """Smooth random shapes on a gradient, plus mild noise.

    Band-limited on purpose: Gaussian blobs at least ~15 px wide and noise drawn on a
    16x16 grid, so downscaling to the smallest native size (128) loses next to nothing
    and the three models' display renditions differ by little more than the faint
    texture resampling leaves (see the module docstring). Detail above 128 px's Nyquist
    would survive only in the larger models' renditions: a difference in the pixels that
    any rater sees, which no rendition can hide.
    """
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        img[..., c] = rng.uniform(40, 200) + rng.uniform(-60, 60) * xx + rng.uniform(-60, 60) * yy
    for _ in range(int(rng.integers(3, 8))):
        cx, cy, sigma = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.06, 0.2)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
        img += blob[..., None] * rng.uniform(-90, 90, 3)
    grid = rng.normal(0.0, 8.0, (16, 16, 3)).astype(np.float32)
    noise = np.dstack(
        [
            np.asarray(Image.fromarray(grid[..., c], "F").resize((size, size), Image.BICUBIC))
            for c in range(3)
        ]
    )
    return Image.fromarray(np.clip(img + noise, 0, 255).astype(np.uint8))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(img: Image.Image) -> bytes:
    """An 8-bit RGB PNG written by hand: 'Up' filter on every row, zlib level 4 with the
    filtered strategy and a 2 KiB window, the stream cut into 700-byte IDAT chunks."""
    arr = np.asarray(img, dtype=np.uint8)
    height, width, _ = arr.shape
    rows = arr.reshape(height, width * 3).astype(np.int16)
    up = (rows - np.vstack([np.zeros((1, width * 3), np.int16), rows[:-1]])) % 256
    raw = b"".join(b"\x02" + up[y].astype(np.uint8).tobytes() for y in range(height))
    z = zlib.compressobj(4, zlib.DEFLATED, 11, 5, zlib.Z_FILTERED)
    stream = z.compress(raw) + z.flush()
    idat = b"".join(_chunk(b"IDAT", stream[k : k + 700]) for k in range(0, len(stream), 700))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + idat + _chunk(b"IEND", b"")


def encode(img: Image.Image, encoder: str) -> bytes:
    if encoder == "handmade-many-idat":
        return handmade_png(img)
    out = io.BytesIO()
    img.save(out, format="PNG", compress_level=int(encoder.rsplit("-", 1)[1]))
    return out.getvalue()


def build_scan_workspace(root: Path, monkeypatch) -> Path:
    """Three models imported by `arena import-images`, one run each, seconds apart, from
    PNG files of different encoders, native sizes and file times, same content."""
    ws = root / "ws"
    monkeypatch.setenv("ARENA_DISPLAY_SIZE", DISPLAY)  # the CLI reads its settings from env
    prompts = root / "prompts.txt"
    prompts.write_text(
        "\n".join(
            f"a quiet harbour with {k} small boats" + ", at dawn" * (k % 5) for k in range(24)
        )
    )
    assert cli.main(["-w", str(ws), "import-prompts", str(prompts), "--set", "scan"]) == 0
    rng = np.random.default_rng(16)
    folders = {name: root / name for name in SCAN_MODELS}
    for folder in folders.values():
        folder.mkdir()
    for k in range(1, SCAN_PROMPTS + 1):
        for name, (size, encoder) in SCAN_MODELS.items():
            img = content_image(rng)
            if size != CONTENT_SIZE:
                img = img.resize((size, size), Image.Resampling.LANCZOS)
            (folders[name] / f"{k}_0.png").write_bytes(encode(img, encoder))
    for m, (name, folder) in enumerate(folders.items()):
        stamp = time.time() - (m + 1) * 86_400 * 37  # each model's files from another month
        for path in folder.iterdir():
            os.utime(path, (stamp, stamp))
        if m:
            time.sleep(1.1)  # separate runs, more than a second apart
        argv = ["-w", str(ws), "import-images", str(folder), "--model", name]
        assert cli.main([*argv, "--workers", "1", "--no-progress"]) == 0
    return ws


def before_defences(ws: Path, observed: Observed, truth: dict):
    """What the pre-defence route (``/img/<sha>.png``, the stored original through
    Starlette's FileResponse: Last-Modified, ETag, the file's own bytes) showed of the
    same served images: the file's size, time, natural size, zlib header, IDAT layout."""
    categorical = {
        "natural size": [],
        "zlib header": [],
        "IDAT chunks": [],
        "first deflate byte": [],
    }
    numeric = {"file size": [], "file time (Last-Modified)": []}
    for im in observed.images:
        sha = truth[im["token"]][im["side"]]["sha"]
        path = ws / "images" / sha[:2] / f"{sha}.png"
        layout = png_layout(path.read_bytes())
        categorical["natural size"].append((layout["width"], layout["height"]))
        categorical["zlib header"].append(layout["zlib_header"])
        categorical["IDAT chunks"].append(layout["idat_chunks"])
        categorical["first deflate byte"].append(layout["first_deflate_byte"])
        numeric["file size"].append(path.stat().st_size)
        numeric["file time (Last-Modified)"].append(int(path.stat().st_mtime))
    return categorical, numeric


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """The scan's data: a bot's observations of 180 battles (360 images) over HTTP, with
    the ground truth read from the database afterwards."""
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("scan")
    with pytest.MonkeyPatch.context() as monkeypatch:
        ws = build_scan_workspace(root, monkeypatch)
    settings = load_settings(env={}, workspace=str(ws), display_size=DISPLAY, trusted_proxies=PROXY)
    store = Store(settings)
    observed = Observed()
    raters, per_rater = 5, 36  # within the default limits (60 battles per rater-minute)
    with (
        running_app(store, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for r in range(raters):
            api = Api(http, f"10.0.1.{r + 1}")
            rater = api.rater()
            api.battle(rater)  # one warm-up battle per client, not scanned
            for _ in range(per_rater):
                observed.serve(api, rater)
    truth = battle_truth(store, [b["token"] for b in observed.battles])
    # What the fixed pipeline makes of each stored original's pixels.
    box = parse_display_size(DISPLAY)
    shas = {t[side]["sha"] for t in truth.values() for side in ("left", "right")}
    rendered = {
        sha: hashlib.sha256(render(store.images.open(sha), box)).hexdigest() for sha in shas
    }
    store.close()
    assert len(truth) == raters * per_rater
    models = [truth[i["token"]][i["side"]]["model"] for i in observed.images]
    pair = {
        t: "+".join(sorted((v["left"]["model"], v["right"]["model"]))) for t, v in truth.items()
    }
    pairs = [pair[b["token"]] for b in observed.battles]
    assert set(models) == set(SCAN_MODELS) and len(set(pairs)) == 3
    yield dict(
        ws=ws,
        observed=observed,
        truth=truth,
        models=models,
        pairs=pairs,
        rendered=rendered,
        seconds=time.monotonic() - t0,
    )


def test_side_channel_scan_predicts_no_model(scanned):
    """Attack 1: everything a client sees before the vote except the pixels, against the
    model; and the same scan on what the route served before the defences."""
    observed, truth, models = scanned["observed"], scanned["truth"], scanned["models"]
    images = [truth[i["token"]][i["side"]]["sha"] for i in observed.images]  # numeric: per image
    categorical, numeric = observed.image_features()
    body = numeric.pop("body size")
    numeric["side (0 left, 1 right)"] = [i["side"] == "right" for i in observed.images]
    assert_no_leak("served images -> model", scan(categorical, numeric, models, images))
    cat_b, num_b = observed.battle_features()
    assert_no_leak("/battle responses -> model pair", scan(cat_b, num_b, scanned["pairs"]))
    # The body is the one pipeline applied to the stored pixels, byte for byte: whatever
    # the bytes tell (their length included) the pixels tell, and nothing else.
    for im, sha in zip(observed.images, images, strict=True):
        assert im["sha"] == scanned["rendered"][sha], im["url"]
        assert im["length"] == im["content_length"]
    # For the record, not asserted: what the body size (so the pixels) tells. An upscaled
    # image keeps a faint resampling texture that q95 JPEG partly encodes; with this
    # content it is near the noise (see the module docstring).
    print(
        report("body size (the pixels), for the record", scan({}, {"body": body}, models, images))
    )

    # The scan has power: on the stored originals that the route served before the
    # defences (same battles, same images) it separates the models.
    cat_0, num_0 = before_defences(scanned["ws"], observed, truth)
    before = scan(cat_0, num_0, models, images)
    text = report("stored originals (the pre-defence /img/<sha>.png) -> model", before)
    print(text)
    assert all(v.accuracy > v.bound for v in before), text
    assert sum(v.accuracy >= 0.99 for v in before) >= 4, text
    print(
        f"scan: {len(observed.battles)} battles, {len(observed.images)} images served "
        f"({len(set(images))} distinct), {scanned['seconds']:.1f} s"
    )


LAZY_MODELS = {"slate-newt": (256, "pillow-level-0"), "amber-ibis": (1024, "pillow-level-6")}


def first_fetch_times(observed: Observed, truth: dict) -> tuple[list[float], list[str]]:
    """The GET time of each image's first fetch (an image later served again is not
    counted again), with its model."""
    seen, times, models = set(), [], []
    for im in observed.images:
        side = truth[im["token"]][im["side"]]
        if side["sha"] not in seen:
            seen.add(side["sha"])
            times.append(im["seconds"])
            models.append(side["model"])
    return times, models


def test_first_fetches_do_not_tell_the_model_when_renditions_were_missing(tmp_path, monkeypatch):
    """Attack 1, timing: the first GET of each image right after the server starts, on a
    workspace imported under another display size (the CLI takes its settings from its
    own environment: here 768x768), so the renditions of the server's size were missing.
    The matchmaker makes them before the first rater
    (``arena.storage.renditions.complete_renditions``)."""
    monkeypatch.setenv("ARENA_DISPLAY_SIZE", "768x768")
    ws, prompts = tmp_path / "ws", tmp_path / "prompts.txt"
    prompts.write_text("\n".join(f"a lighthouse in fog, study {k}" for k in range(16)))
    assert cli.main(["-w", str(ws), "import-prompts", str(prompts), "--set", "lazy"]) == 0
    rng = np.random.default_rng(7)
    for name, (size, encoder) in LAZY_MODELS.items():
        folder = tmp_path / name
        folder.mkdir()
        for k in range(1, 17):
            img = content_image(rng).resize((size, size), Image.Resampling.LANCZOS)
            (folder / f"{k}_0.png").write_bytes(encode(img, encoder))
        argv = ["-w", str(ws), "import-images", str(folder), "--model", name]
        assert cli.main([*argv, "--workers", "1", "--no-progress"]) == 0
    settings = load_settings(env={}, workspace=str(ws), display_size=DISPLAY, trusted_proxies=PROXY)
    store = Store(settings)
    observed = Observed()
    with (
        running_app(store, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        api = Api(http, "10.0.8.1")
        rater = api.rater()
        for _ in range(16):  # 16 prompts, one image each: every image served once
            observed.serve(api, rater)
    truth = battle_truth(store, [b["token"] for b in observed.battles])
    store.close()
    first, models = first_fetch_times(observed, truth)
    assert sorted(Counter(models).values()) == [16, 16]
    for model in LAZY_MODELS:
        ms = [1000 * t for t, m in zip(first, models, strict=True) if m == model]
        print(f"{model}: first GET median {np.median(ms):.1f} ms")
    assert_no_leak("first fetches -> model", scan({}, {"image GET time": first}, models))


def test_first_fetches_of_a_live_import_do_not_tell_the_model(tmp_path, monkeypatch):
    """Attack 1, timing, continued: a model imported into the running arena from a shell
    that lacks the server's display size (the default, 512x512, there)."""
    settings = load_settings(
        env={}, workspace=str(tmp_path / "ws"), display_size=DISPLAY, trusted_proxies=PROXY
    )
    store = Store(settings)
    build_fixture(store, n_prompts=12, seeds=1, size=256)  # renditions of the server's size
    live = tmp_path / "live"
    live.mkdir()
    rng = np.random.default_rng(9)
    for k in range(12):
        img = content_image(rng).resize((1024, 1024), Image.Resampling.LANCZOS)
        (live / f"p{k}_0.png").write_bytes(encode(img, "pillow-level-6"))
    observed = Observed()
    with (
        running_app(store, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        monkeypatch.setenv("ARENA_DISPLAY_SIZE", "512x512")
        argv = ["-w", str(settings.workspace_path), "import-images", str(live)]
        argv += ["--model", "late-heron", "--prompt-set", "fixture"]
        assert cli.main([*argv, "--workers", "1", "--no-progress"]) == 0
        time.sleep(10.5)  # the matchmaker looks for new images every 10 s
        for r in range(3):
            api = Api(http, f"10.0.9.{r + 1}")
            rater = api.rater()
            for _ in range(20):
                observed.serve(api, rater)
    truth = battle_truth(store, [b["token"] for b in observed.battles])
    store.close()
    first, models = first_fetch_times(observed, truth)
    new = ["late-heron" if m == "late-heron" else "before" for m in models]
    assert Counter(new)["late-heron"] >= 8, Counter(models)
    for label in ("before", "late-heron"):
        ms = [1000 * t for t, m in zip(first, new, strict=True) if m == label]
        print(f"{label}: first GET median {np.median(ms):.1f} ms over {len(ms)} images")
    assert_no_leak("first fetches -> imported live or not", scan({}, {"GET": first}, new))
