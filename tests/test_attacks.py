"""Attacks on the voting path (issue 16, "Trustworthy votes"), each reproduced against the
real app on a free port over real HTTP, as a bot would run it, and each asserted to fail.

Clients are raw HTTP (``tests/attack_kit.Api``: the public API ``/rater``, ``/battle``,
``/vote`` through ``/gradio_api/call/<name>``, and the image URLs), so that every header
and every timing is seen. Servers run with ``trusted_proxies="127.0.0.1"`` and clients
send ``X-Forwarded-For: 10.0.x.y`` to act as different addresses (only ever to
127.0.0.1), except in attack 5, where the forged header is the attack. Ground truth
(which model is on which side, which battle is a gold check) is read from the database
afterwards by battle token. No mocks.

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
2. link one image's URLs across battles; reuse a URL   test_tampering.py: expired, forged
   from another address or after the battle's TTL;     and cross-rater *vote* tokens
   tell the failures apart
   -> test_image_urls_are_unlinkable_bound_and_short_lived
3. tell gold checks from normal battles before the     test_gold_battles.py: the gold rate,
   vote; ETag / Last-Modified anywhere                 answers, copies (domain level)
   -> test_gold_battles_look_like_normal_battles
4. mint ids: 60 from one address; made-up, altered     test_vote_api.py: a non-issued id
   and foreign ids; 60 one-vote ids for one model      "x"; test_public_view.py: probation
   -> test_identities_cannot_be_minted_and_fresh_ids_do_not_count   in the release rule
5. outrun the limits: battles in a tight loop, many    test_vote_api.py: the per-rater
   ids voting from one address, a forged               vote limit
   X-Forwarded-For on every request
   -> test_rate_limits_hold_against_loops_and_forged_addresses
6. all together, with the reveal on: learn byte        test_targeted.py: the statistics,
   fingerprints from reveals, push one model with      and the policy on a domain-level
   fresh ids, then with one persistent id              attacker
   -> test_a_fingerprinting_bot_does_not_lift_its_model

What the pixels themselves tell is not asserted (every served byte is asserted to be the
fixed pipeline's output for the stored pixels). For the record, from the scan: the body
size, a function of the pixels, tells the upscaled 128-px model from the others a little
better than chance (kNN about 0.55-0.58 against a 0.53 bound over 72 images, Kruskal-Wallis
p about 6e-4): an upscaled image keeps a faint resampling texture that JPEG q95 partly
encodes (at q90 the same scan gives 0.31, p 0.28). Gold copies are degraded on purpose, and
their body sizes differ too.

Run time: about 50 s on two cores (the scan's workspace and 180 battles ~12 s; the live
import waits 10 s for the matchmaker to see the new model).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import secrets
import struct
import time
import zlib
from collections import Counter
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from arena import cli, db
from arena.admission import Admission
from arena.battles import record_vote, serve_battle
from arena.config import load_settings
from arena.leaderboard import leaderboard_frame
from arena.matchmaking import BalancedPolicy, Matchmaker
from arena.policy import refresh_exclusions
from arena.public_view import PublicViews
from arena.renditions import parse_display_size, render
from arena.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import MODEL_NAMES, build_fixture
from tests.attack_kit import (
    Api,
    Refused,
    headers_of,
    jpeg_header,
    jpeg_segments,
    png_layout,
    refusal,
    report,
    scan,
)

VOTE_TAB = ("arena.ui.vote_tab",)
PROXY = "127.0.0.1"  # the test client's own address, made a trusted proxy


# -- shared helpers ---------------------------------------------------------------------------
def battle_truth(store, tokens) -> dict[str, dict]:
    """Per battle token: kind, the image id, sha256 and model of each side, the handles."""
    b, i, m = db.Battle.__table__, db.Image.__table__, db.Model.__table__
    with store.engine.connect() as conn:
        images = {
            row.id: (row.sha256, row.name)
            for row in conn.execute(select(i.c.id, i.c.sha256, m.c.name).join(m))
        }
        rows = conn.execute(
            select(
                b.c.token,
                b.c.kind,
                b.c.left_image_id,
                b.c.right_image_id,
                b.c.left_handle,
                b.c.right_handle,
            ).where(b.c.token.in_(list(tokens)))
        ).all()
    out = {}
    for token, kind, left, right, left_handle, right_handle in rows:
        out[token] = {
            "kind": kind,
            "left": {"image": left, "sha": images[left][0], "model": images[left][1]},
            "right": {"image": right, "sha": images[right][0], "model": images[right][1]},
            "handles": (left_handle, right_handle),
        }
    return out


def url_features(url: str) -> list[float]:
    """Character classes of an image URL's handle: digits, upper, lower, '-', '_', first."""
    handle = url.rsplit("/", 1)[-1]
    return [
        sum(c.isdigit() for c in handle),
        sum(c.isupper() for c in handle),
        sum(c.islower() for c in handle),
        handle.count("-"),
        handle.count("_"),
        ord(handle[0]) if handle else 0,
    ]


def url_shape(url: str) -> str:
    """The URL with every handle character replaced by its class: what a regex would see."""
    prefix, _, handle = url.rpartition("/")
    return prefix + "/" + "".join("x" for _ in handle) + f"[{len(url)}]"


def longest_common_substring(a: str, b: str) -> int:
    best = 0
    for i in range(len(a)):
        for j in range(i + best + 1, len(a) + 1):
            if a[i:j] in b:
                best = j - i
            else:
                break
    return best


class Observed:
    """Everything a client saw before voting, per battle and per image."""

    def __init__(self):
        self.battles: list[dict] = []
        self.images: list[dict] = []

    def serve(self, api: Api, rater: str) -> dict:
        reply = api.call("battle", rater)
        battle = dict(
            token=reply.value["token"],
            seconds=reply.seconds,
            join_headers=reply.join_headers,
            stream_headers=reply.stream_headers,
            join_length=len(reply.join_body),
            stream_length=len(reply.stream_body),
            keys=tuple(sorted(reply.value)),
        )
        self.battles.append(battle)
        for side in ("left", "right"):
            url = reply.value[f"{side}_image"]
            response, seconds = api.get(url)
            assert response.status_code == 200, (url, response.status_code)
            data = response.content
            with Image.open(io.BytesIO(data)) as img:
                size, fmt, info = img.size, img.format, tuple(sorted(img.info))
            self.images.append(
                dict(
                    token=battle["token"],
                    side=side,
                    url=url,
                    seconds=seconds,
                    headers=headers_of(response, {"date", "content-length"}),
                    all_headers=headers_of(response),
                    length=len(data),
                    content_length=int(response.headers["content-length"]),
                    segments=tuple(jpeg_segments(data)),
                    header_bytes=hashlib.sha256(jpeg_header(data)).hexdigest(),
                    size=size,
                    format=fmt,
                    info=info,
                    sha=hashlib.sha256(data).hexdigest(),
                )
            )
        return reply.value

    def image_features(self):
        ims = self.images
        categorical = {
            "image headers": [i["headers"] for i in ims],
            "url shape": [url_shape(i["url"]) for i in ims],
            "natural size": [i["size"] for i in ims],
            "format and info keys": [(i["format"], i["info"]) for i in ims],
            "jpeg segment layout": [i["segments"] for i in ims],
            "jpeg header bytes": [i["header_bytes"] for i in ims],
        }
        numeric = {
            "body size": [i["length"] for i in ims],
            "image GET time": [i["seconds"] for i in ims],
            "url characters": [url_features(i["url"]) for i in ims],
        }
        return categorical, numeric

    def battle_features(self):
        bs = self.battles
        categorical = {
            "/battle join headers": [b["join_headers"] for b in bs],
            "/battle stream headers": [b["stream_headers"] for b in bs],
            "/battle join body length": [b["join_length"] for b in bs],
            "/battle keys": [b["keys"] for b in bs],
        }
        numeric = {
            "/battle time": [b["seconds"] for b in bs],
            "/battle stream length": [b["stream_length"] for b in bs],
        }
        return categorical, numeric


def assert_no_leak(title: str, verdicts) -> str:
    text = report(title, verdicts)
    print(text)
    leaks = [v.line() for v in verdicts if v.leaks]
    assert not leaks, f"{title}: these features predict the label:\n" + "\n".join(leaks)
    return text


# -- 1. the side-channel scan ---------------------------------------------------------------------
CONTENT_SIZE = 256
SCAN_MODELS = {  # name: (native size, encoder); the content is the same for all three
    "velvet-otter": (128, "pillow-level-0"),
    "granite-heron": (192, "pillow-level-9"),
    "saffron-mole": (256, "handmade-many-idat"),
}
SCAN_PROMPTS = 24
DISPLAY = "160x160"  # 128 is scaled up, 192 and 256 down


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
        running_app(store, settings, tabs=VOTE_TAB) as url,
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
    The server makes them before the first rater (``arena.serve.prepare_renditions``)."""
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
        running_app(store, settings, tabs=VOTE_TAB) as url,
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
        running_app(store, settings, tabs=VOTE_TAB) as url,
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


# -- 2. unlinkable, bound, short-lived URLs --------------------------------------------------------
def test_image_urls_are_unlinkable_bound_and_short_lived(tmp_path):
    settings = load_settings(
        env={}, workspace=str(tmp_path / "ws"), battle_ttl_seconds=2, trusted_proxies=PROXY
    )
    store = Store(settings)
    # two models, one prompt, one image each: every battle shows the same two images
    build_fixture(store, model_names=MODEL_NAMES[:2], n_prompts=1, seeds=1, with_reference=False)
    with (
        running_app(store, settings, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        alice, bob, carol = (Api(http, f"10.0.2.{k}") for k in (1, 2, 3))
        nobody = Api(http, None)  # 127.0.0.1 itself
        served = {}
        for api in (alice, bob):
            rater = api.rater()
            served[api.address] = api.battle(rater)
        t_served = time.monotonic()
        truth = battle_truth(store, [b["token"] for b in served.values()])
        by_image: dict[int, list[tuple[str, str]]] = {}
        for address, battle in served.items():
            t = truth[battle["token"]]
            for side in ("left", "right"):
                by_image.setdefault(t[side]["image"], []).append((address, battle[f"{side}_image"]))
        assert len(by_image) == 2 and all(len(v) == 2 for v in by_image.values())

        urls = [u for v in by_image.values() for _, u in v]
        assert len(set(urls)) == 4, urls
        prefixes = {u.rsplit("/", 1)[0] for u in urls}
        assert prefixes == {"img"}, prefixes
        handles = [u.rsplit("/", 1)[1] for u in urls]
        for a, b in itertools.combinations(handles, 2):
            assert longest_common_substring(a, b) < 8, (a, b)

        ok, failures = {}, []
        api_of = {alice.address: alice, bob.address: bob}
        for image, seen in by_image.items():
            for address, u in seen:
                response, _ = api_of[address].get(u)
                assert response.status_code == 200, (u, response.status_code)
                ok[(image, address)] = response.content
            # the same image in two battles: unrelated URLs, identical bytes
            assert ok[(image, alice.address)] == ok[(image, bob.address)]
            for address, u in seen:
                other = bob if address == alice.address else alice
                for stranger in (other, carol, nobody):
                    failures.append(("other address", stranger.get(u)[0]))
        sha = truth[served[alice.address]["token"]]["left"]["sha"]
        some = served[alice.address]["left_image"]
        forged = [
            f"img/{sha}.png",  # the URL of the image before the defences
            f"img/{sha}",
            f"img/{secrets.token_urlsafe(18)}",  # a well-formed handle nobody was given
            some[:-1] + ("A" if some[-1] != "A" else "B"),
            some + "x",
            "img/" + "." * 24,
        ]
        for u in forged:
            failures.append(("forged", alice.get(u)[0]))
        time.sleep(max(0.0, t_served + settings.battle_ttl_seconds + 0.6 - time.monotonic()))
        for seen in by_image.values():
            for address, u in seen:
                failures.append(("expired", api_of[address].get(u)[0]))
    store.close()

    first = failures[0][1]
    for why, response in failures:
        assert response.status_code == 404, (why, response.url, response.status_code)
        assert response.content == first.content, (why, response.content)
        assert headers_of(response) == headers_of(first), (why, headers_of(response))
    assert Counter(why for why, _ in failures) == {
        "other address": 4 * 3,
        "forged": len(forged),
        "expired": 4,
    }


# -- 3. gold checks ---------------------------------------------------------------------------
def test_gold_battles_look_like_normal_battles(tmp_path):
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        gold_rate=0.5,
        display_size=DISPLAY,
        trusted_proxies=PROXY,
    )
    store = Store(settings)
    build_fixture(store, n_prompts=6, seeds=2, size=192)
    observed = Observed()
    with (
        running_app(store, settings, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        for r in range(4):
            api = Api(http, f"10.0.3.{r + 1}")
            rater = api.rater()
            api.battle(rater)  # warm-up
            for _ in range(25):
                observed.serve(api, rater)
        missing = Api(http, "10.0.3.1").get(f"img/{secrets.token_urlsafe(18)}")[0]
    truth = battle_truth(store, [b["token"] for b in observed.battles])
    store.close()
    kinds = [truth[b["token"]]["kind"] for b in observed.battles]
    image_kinds = [truth[i["token"]]["kind"] for i in observed.images]
    assert 20 <= kinds.count("gold") <= 80, Counter(kinds)

    groups = [
        (truth[i["token"]][i["side"]]["sha"], truth[i["token"]]["kind"]) for i in observed.images
    ]
    categorical, numeric = observed.image_features()
    body = numeric.pop("body size")  # the pixels: a degraded copy is meant to look degraded
    per_image = scan(categorical, numeric, image_kinds, groups)
    cat_b, num_b = observed.battle_features()
    per_battle = scan(cat_b, num_b, kinds)
    assert_no_leak("served images -> gold or normal", per_image)
    assert_no_leak("/battle responses -> gold or normal", per_battle)
    # Not asserted, for the record: the body size follows the pixels (noise compresses badly).
    print(
        report(
            "body size (the pixels), for the record", scan({}, {"body": body}, image_kinds, groups)
        )
    )

    everything = [h for b in observed.battles for h in (*b["join_headers"], *b["stream_headers"])]
    everything += [h for i in observed.images for h in i["all_headers"]]
    everything += list(headers_of(missing))
    names = {name for name, _ in everything}
    assert not names & {"etag", "last-modified"}, names
    assert ("cache-control", "private, max-age=3600, immutable") in everything


# -- 4. minting identities -------------------------------------------------------------------------
T_HONEST = db.utcnow() - timedelta(days=1)


def honest_votes(store, raters: int, votes: int, strength: dict, seed: int) -> list[str]:
    """Honest simulated raters' votes through serve_battle/record_vote (Bradley-Terry
    outcomes, 3 s decisions); scripts' raters carry no address group and count at once."""
    mm = Matchmaker(store, BalancedPolicy(), np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 1)
    model_of = dict(
        zip(store.images_frame()["image_id"], store.images_frame()["model"], strict=True)
    )
    ids, clock = [], T_HONEST
    for r in range(raters):
        rater = f"honest-{seed}-{r:03d}"
        ids.append(rater)
        for _ in range(votes):
            view = serve_battle(store, rater, mm, now=clock)
            with store.session() as s:
                battle = s.scalar(select(db.Battle).where(db.Battle.token == view.token))
                left, right = model_of[battle.left_image_id], model_of[battle.right_image_id]
            p_left = 1 / (1 + np.exp(strength[right] - strength[left]))
            outcome = "left" if rng.random() < p_left else "right"
            clock += timedelta(seconds=3)
            record_vote(store, view.token, rater, outcome, 3000, matchmaker=mm, now=clock)
            clock += timedelta(seconds=2)
    return ids


def rating_of(store, model: str) -> tuple[float, int]:
    frame, _ = leaderboard_frame(
        store.votes_frame(), np.random.default_rng(0), rounds=0, min_votes=1
    )
    row = frame.set_index("model").loc[model]
    order = list(frame.sort_values("rating", ascending=False)["model"])
    return float(row["rating"]), order.index(model) + 1


STRENGTH = {"zephyrquokka-v3": 1.5, "marmalade-basilisk-xl": 0.0, "tundrafinch-turbo": -1.5}
TARGET = "tundrafinch-turbo"  # the weakest model: the one worth pushing


def test_identities_cannot_be_minted_and_fresh_ids_do_not_count(tmp_path):
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        trusted_proxies=PROXY,
        public_view_min_votes=20,
        bootstrap_rounds=0,
    )
    limit = settings.rater_ids_per_address_per_hour
    store = Store(settings)
    build_fixture(store, n_prompts=6, seeds=2)
    honest_votes(store, raters=6, votes=10, strength=STRENGTH, seed=4)
    other = Store(settings.replace(workspace=str(tmp_path / "elsewhere")))
    foreign = Admission(other).issue("some-group")  # what another arena's server issues
    other.close()
    counted_before = set(store.votes_frame()["vote_id"])
    rating_before = rating_of(store, TARGET)
    views = PublicViews(store)
    release_before, board_before = views.board()
    assert release_before.number >= 1

    with (
        running_app(store, settings, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        # One address asks for 60 ids: `limit` come, the rest are refused.
        minter = Api(http, "10.0.4.1")
        issued, reasons = [], []
        for _ in range(60):
            try:
                issued.append(minter.rater())
            except Refused as exc:
                reasons.append(exc.reason)
        assert len(issued) == limit and len(set(issued)) == limit
        assert reasons == ["rate_limited"] * (60 - limit)

        # Ids the client makes up are refused, for battles and for votes.
        good = issued[0]
        token = minter.battle(good)["token"]
        flip = {c: "0" if c != "0" else "1" for c in "0123456789abcdef"}
        made_up = [
            "v1" + secrets.token_hex(24),  # the right shape, a random signature
            good[:5] + flip[good[5]] + good[6:],  # one character of the nonce changed
            good[:-1] + flip[good[-1]],  # one character of the signature changed
            good.upper(),
            foreign,  # signed, by another arena's key
            secrets.token_hex(16),  # what clients picked before ids were issued
        ]
        for fake in made_up:
            assert refusal(minter.battle, fake) == "bad_rater", fake
            assert refusal(minter.vote, token, fake, "left") == "bad_rater", fake

        # 60 one-vote ids, each from its own address, all for TARGET (told the side by an
        # oracle reading the database: the strongest such bot).
        stored = []
        for k in range(60):
            api = Api(http, f"10.0.5.{k + 1}")
            rater = api.rater()
            for _ in range(10):
                battle = api.battle(rater)
                t = battle_truth(store, [battle["token"]])[battle["token"]]
                side = next((s for s in ("left", "right") if t[s]["model"] == TARGET), None)
                if side:
                    break
            assert side, "the target never came up"
            stored.append(api.vote(battle["token"], rater, side)["vote_id"])

    everything = store.votes_frame(include_excluded=True)
    assert set(stored) <= set(everything["vote_id"])  # stored ...
    assert set(store.votes_frame()["vote_id"]) == counted_before  # ... and not counted
    assert rating_of(store, TARGET) == rating_before
    release_after, board_after = PublicViews(store).board()
    assert release_after == release_before
    assert board_after.frame.equals(board_before.frame)
    store.close()


# -- 5. rate limits --------------------------------------------------------------------------------
def test_rate_limits_hold_against_loops_and_forged_addresses(tmp_path):
    """No trusted proxy (the default): every request carries a different, made-up
    X-Forwarded-For, and all of them are still one client address to the limits."""
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        battles_per_minute=5,
        address_battles_per_minute=30,
        address_votes_per_minute=6,
        rate_limit_per_minute=1000,
    )
    assert settings.trusted_proxies == ""
    store = Store(settings)
    build_fixture(store, n_prompts=6, seeds=2)
    spoof = (f"10.{a}.{b}.{c}" for a, b, c in itertools.product(range(1, 200), repeat=3))

    class Spoofing(Api):
        @property
        def headers(self):
            return {"X-Forwarded-For": next(spoof)}

    with (
        running_app(store, settings, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        bot, ids = Spoofing(http), []

        def new_id() -> str:
            ids.append(bot.rater())
            return ids[-1]

        # One address votes with many ids: refused after address_votes_per_minute.
        stored, reasons = [], []
        for _ in range(settings.address_votes_per_minute + 3):
            rater = new_id()
            battle = bot.battle(rater)
            try:
                stored.append(bot.vote(battle["token"], rater, "left")["vote_id"])
            except Refused as exc:
                reasons.append(str(exc))
        assert len(stored) == settings.address_votes_per_minute
        assert len(reasons) == 3 and all("your network has cast more than 6" in r for r in reasons)
        assert set(store.votes_frame(include_excluded=True)["vote_id"]) == set(stored)
        group_battles = len(stored) + len(reasons)
        # One rater asks for battles in a tight loop: refused after battles_per_minute.
        loop = new_id()
        served, refused = 0, []
        for _ in range(settings.battles_per_minute + 5):
            try:
                bot.battle(loop)
                served += 1
            except Refused as exc:
                refused.append(str(exc))
        assert served == settings.battles_per_minute
        assert len(refused) == 5
        assert all(r.startswith("rate_limited: you have asked for more than 5") for r in refused)
        group_battles += served
        # Many ids of one address: refused after address_battles_per_minute in all.
        group_refusal = ""
        for _ in range(settings.address_battles_per_minute // settings.battles_per_minute + 2):
            rater = new_id()
            try:
                for _ in range(settings.battles_per_minute):
                    bot.battle(rater)
                    group_battles += 1
            except Refused as exc:
                group_refusal = str(exc)
                break
        assert group_refusal.startswith("rate_limited: your network has asked for more than 30")
        assert group_battles == settings.address_battles_per_minute
        # And the ids themselves: one address, however it names itself.
        with pytest.raises(Refused) as info:
            for _ in range(settings.rater_ids_per_address_per_hour + 1):
                new_id()
        assert info.value.reason == "rate_limited"
        assert len(ids) == len(set(ids)) == settings.rater_ids_per_address_per_hour
    store.close()


# -- 6. all of it together -------------------------------------------------------------------------
# A middle model: a bot that picks it wherever it shows up still agrees with the majority
# on most battles (it beats the weakest), so only the targeted-voting test stands between
# the bot and the board.
PUSHED = "marmalade-basilisk-xl"


def test_a_fingerprinting_bot_does_not_lift_its_model(tmp_path):
    """Attack 6. The reveal is on (``reveal_models=True``: the bot is told both names after
    each vote). The bot hashes the bytes of every image it is served, learns hash -> model
    from the reveals, then pushes PUSHED: first with a fresh id per vote, then with one
    persistent id that picks PUSHED whenever it recognises it and votes with the live
    leaderboard elsewhere (so that it agrees with the majority on the other battles).

    What is true, and asserted: URLs never repeat, so a URL book learns nothing; the bytes
    of one image are the same in every battle (renditions are deterministic), so the hash
    book *does* recognise images -- this is why public deployments keep the reveal off
    (docs/threat-model.md). What holds anyway: the fresh ids are limited per address and
    their votes stay in probation; the persistent id is flagged by the targeted-voting
    test and excluded; PUSHED's rating and rank end where the honest votes put them. Until
    the policy runs (``arena.policy.refresh_exclusions``: the Admin app's "apply the
    policy now" button, nothing runs it on its own) the persistent id's votes do count,
    and do lift PUSHED: asserted too.

    ``min_decision_ms=0`` stands for a bot patient enough to wait out the fast-vote flag,
    so that only the targeted-voting test can catch it.
    """
    settings = load_settings(
        env={},
        workspace=str(tmp_path / "ws"),
        reveal_models=True,
        trusted_proxies=PROXY,
        min_decision_ms=0,
        rate_limit_per_minute=1000,
        battles_per_minute=1000,
        address_battles_per_minute=100_000,
        address_votes_per_minute=100_000,
    )
    store = Store(settings)
    build_fixture(store, n_prompts=6, seeds=2)
    honest_votes(store, raters=20, votes=30, strength=STRENGTH, seed=6)
    honest_counted = set(store.votes_frame()["vote_id"])
    honest_rating, honest_rank = rating_of(store, PUSHED)
    public = {m: rating_of(store, m)[0] for m in STRENGTH}  # the live board the bot sees

    fingerprints: dict[str, str] = {}  # sha256 of served bytes -> model, from the reveals
    url_book: dict[str, str] = {}  # image URL -> model, from the reveals
    urls_seen: list[str] = []
    hits = Counter()
    fresh_votes, ids_of = [], Counter()
    with (
        running_app(store, settings, tabs=VOTE_TAB) as url,
        httpx.Client(base_url=url, timeout=60) as http,
    ):
        addresses = iter(f"10.0.6.{k}" for k in range(1, 250))
        api = Api(http, next(addresses))

        def fresh_id() -> tuple[Api, str]:
            nonlocal api
            while True:
                try:
                    rater = api.rater()
                    ids_of[api.address] += 1
                    return api, rater
                except Refused as exc:
                    assert exc.reason == "rate_limited"
                    api = Api(http, next(addresses))  # the next address of the bot's pool

        def one_battle(client: Api, rater: str, push: bool) -> dict:
            battle = client.battle(rater)
            seen = []
            for side in ("left", "right"):
                u = battle[f"{side}_image"]
                response, _ = client.get(u)
                assert response.status_code == 200
                sha = hashlib.sha256(response.content).hexdigest()
                hits["url"] += u in url_book
                hits["bytes"] += sha in fingerprints
                urls_seen.append(u)
                seen.append((u, sha))
            known = [fingerprints.get(sha) for _, sha in seen]
            outcome = "tie"
            if push and PUSHED in known:
                outcome = ("left", "right")[known.index(PUSHED)]
                hits["pushed"] += 1
            elif push and None not in known:  # elsewhere, vote with the (live) leaderboard
                outcome = "left" if public[known[0]] > public[known[1]] else "right"
            receipt = client.vote(battle["token"], rater, outcome)
            names = (receipt["left_model"], receipt["right_model"])
            for (u, sha), model in zip(seen, names, strict=True):
                fingerprints[sha], url_book[u] = model, model
            return receipt

        for k in range(90):  # learn (45 votes), then push (45), a fresh id for every vote
            client, rater = fresh_id()
            fresh_votes.append(one_battle(client, rater, push=k >= 45)["vote_id"])
        pushed_fresh = hits["pushed"]
        persistent_client = Api(http, "10.0.7.1")
        persistent = persistent_client.rater()
        for _ in range(60):
            one_battle(persistent_client, persistent, push=True)

    # Fingerprints: URLs never repeat; the bytes of an image do.
    assert len(urls_seen) == len(set(urls_seen)) == 2 * 150 and hits["url"] == 0
    assert hits["bytes"] > 150, hits  # the pixel-hash book recognises most images
    assert pushed_fresh >= 15 and hits["pushed"] - pushed_fresh >= 25, hits
    # Fresh ids: at most `rater_ids_per_address_per_hour` per address; votes in probation.
    assert max(ids_of.values()) == settings.rater_ids_per_address_per_hour, ids_of
    assert len(ids_of) == 5  # 90 ids needed 5 addresses
    assert set(fresh_votes) <= set(store.votes_frame(include_excluded=True)["vote_id"])
    assert not set(fresh_votes) & set(store.votes_frame()["vote_id"])
    # The persistent id is past probation: its votes count, and they do push PUSHED ...
    persistent_row = store.rater_id(persistent)
    assert persistent_row in set(store.votes_frame()["rater_id"])
    pushed_rating, _ = rating_of(store, PUSHED)
    assert pushed_rating > honest_rating + 10, (honest_rating, pushed_rating)
    # ... until the targeted-voting test flags it: the board is the honest votes' again.
    refresh_exclusions(store)
    assert set(store.votes_frame()["vote_id"]) == honest_counted
    rating, rank = rating_of(store, PUSHED)
    assert rating == pytest.approx(honest_rating, abs=1e-9) and rank == honest_rank
    raters = store.raters_frame().set_index("rater_id")
    assert raters.loc[persistent_row, "excluded"]
    assert raters.loc[persistent_row, "excluded_reason"].startswith(
        f"policy: targeted: favours {PUSHED} ("
    )
    print(
        f"bot: {dict(hits)}; {PUSHED}: honest {honest_rating:.1f} (rank {honest_rank}), "
        f"with the persistent id counted {pushed_rating:.1f}, after the policy {rating:.1f}"
    )
    store.close()
