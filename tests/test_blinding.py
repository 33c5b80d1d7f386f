"""Blinding: everything the browser receives before a vote -- page HTML, every API/SSE
payload, image URLs and image bytes -- names no model, no model source and no path.

The collector wraps ``fetch`` in the page (so streamed SSE messages are captured as they
arrive), listens to every HTTP response and websocket frame, and reads the DOM and local
storage. Its power is checked at the end: after one vote the names *do* show up (reveal).
"""

from __future__ import annotations

import io
import re
import struct

import pytest
from PIL import Image

from arena.config import load_settings
from arena.storage.store import Store
from tests.arena_app import running_app
from tests.arena_fixtures import MODEL_NAMES, REFERENCE_NAME, build_fixture
from tests.browser import chromium

pytestmark = pytest.mark.browser
OPEN = "#arena-battle .arena-battle.arena-open"
IMAGE_URL = re.compile(r"/img/([A-Za-z0-9_-]{24})$")  # a battle's random handle

TAP_FETCH = """
window.__received = [];
const realFetch = window.fetch;
window.fetch = async (...args) => {
  const response = await realFetch(...args);
  try {
    const reader = response.clone().body.getReader();
    const decoder = new TextDecoder();
    (async () => {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        window.__received.push(decoder.decode(value, { stream: true }));
      }
    })();
  } catch (e) {}
  return response;
};
"""


def jpeg_markers(data: bytes) -> list[int]:
    """The marker bytes of a baseline JPEG, up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    pos, kinds = 2, [0xD8]
    while pos < len(data):
        assert data[pos] == 0xFF
        kind = data[pos + 1]
        kinds.append(kind)
        if kind == 0xDA:  # start of scan: entropy-coded data follows to the end
            return kinds
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return kinds


# SOI, APP0 (JFIF), DQT, SOF0 (baseline), DHT, SOS: no EXIF, ICC, XMP or comment segment.
DISPLAY_MARKERS = {0xD8, 0xE0, 0xDB, 0xC0, 0xC4, 0xDA}


class Collector:
    def __init__(self, page):
        self.page = page
        self.http: list[tuple[str, bytes]] = []
        self.ws: list[str] = []
        self.images: dict[str, bytes] = {}
        page.add_init_script(TAP_FETCH)
        page.on("response", self._response)
        page.on("websocket", lambda ws: ws.on("framereceived", lambda f: self.ws.append(str(f))))

    def _response(self, response):
        if "text/event-stream" in response.headers.get("content-type", ""):
            return  # streamed: captured by the fetch tap
        try:
            body = response.body()
        except Exception:
            return
        self.http.append((response.url, body))
        match = IMAGE_URL.search(response.url)
        if match:
            self.images[match.group(1)] = body

    def texts(self) -> list[str]:
        """Every piece of text received so far, one entry per response/message."""
        out = [url + "\n" + body.decode("utf-8", "replace") for url, body in self.http]
        out += self.page.evaluate("window.__received")
        out += self.ws
        out.append(self.page.content())
        out.append(self.page.evaluate("JSON.stringify(window.localStorage)"))
        return out


def needles(store, fx) -> list[str]:
    ws = str(store.workspace)
    return [*MODEL_NAMES, REFERENCE_NAME, *fx.sources.values(), "SOURCEPATH", ws, "/srv/"]


def browse_without_voting(collector, battles: int) -> set[str]:
    page = collector.page
    seen_images: set[str] = set()
    for _ in range(battles):
        page.wait_for_selector(OPEN, timeout=30_000)
        page.wait_for_function(
            f"() => [...document.querySelectorAll('{OPEN} .arena-frame img')]"
            ".every(i => i.complete && i.naturalWidth > 0)"
        )
        seq = page.locator(OPEN).get_attribute("data-seq")
        srcs = page.locator(f"{OPEN} img").evaluate_all("els => els.map(e => e.src)")
        for src in srcs:
            assert IMAGE_URL.search(src), src  # a per-battle handle only
            seen_images.add(IMAGE_URL.search(src).group(1))
        page.keyboard.press("s")  # skip: no vote, so nothing may be revealed
        page.wait_for_function(
            f"() => document.querySelector('{OPEN}')?.dataset.seq !== '{seq}'", timeout=30_000
        )
    page.wait_for_timeout(300)
    return seen_images


def check_images(collector, seen: set[str]) -> None:
    """Every shown image came through /img/<handle> as a metadata-free display rendition."""
    assert seen <= set(collector.images), "every shown image came through /img/<handle>"
    for handle, data in collector.images.items():
        assert set(jpeg_markers(data)) <= DISPLAY_MARKERS, handle
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == "JPEG" and img.size == (512, 512)  # the display box
            assert set(img.info) <= {"jfif", "jfif_version", "jfif_unit", "jfif_density"}
            assert not img.getexif()


def test_vote_page_reveals_nothing_before_the_vote(tmp_path):
    # the reveal on, so that the end can check the collector sees names once they are sent
    settings = load_settings(env={}, workspace=str(tmp_path / "ws"), reveal_models=True)
    store = Store(settings)
    fx = build_fixture(store, n_prompts=4, seeds=2)
    words = needles(store, fx)
    with running_app(store, tabs=("arena.ui.vote_tab",)) as url, chromium() as browser:
        page = browser.new_page()
        collector = Collector(page)
        page.goto(url)
        seen = browse_without_voting(collector, battles=5)
        received = collector.texts()
        assert len(received) > 10 and any("arena-battle" in t for t in received)
        for text in received:
            for word in words:
                assert word not in text, f"{word!r} reached the browser before a vote"
        check_images(collector, seen)
        # The collector would have seen a leak: after a vote the names are revealed.
        page.click("#vote-left")
        page.wait_for_selector("#arena-battle .arena-revealed .arena-model")
        page.wait_for_timeout(200)
        streamed = "\n".join(page.evaluate("window.__received"))
        assert any(name in streamed for name in MODEL_NAMES), "the SSE tap saw the reveal"
    store.close()


def test_full_app_never_links_a_model_to_a_battle(tmp_path):
    """With every tab: the Workspace and Leaderboard tabs list model names (that links no
    image to a model), but no source or path reaches the page, and no message that carries
    a battle (prompt, image hash, battle HTML) names a model."""
    settings = load_settings(env={}, workspace=str(tmp_path / "ws"))
    store = Store(settings)
    fx = build_fixture(store, n_prompts=4, seeds=2)
    with running_app(store) as url, chromium() as browser:
        page = browser.new_page()
        collector = Collector(page)
        page.goto(url)
        seen = browse_without_voting(collector, battles=4)
        received = collector.texts()
        paths = [*fx.sources.values(), "SOURCEPATH", str(store.workspace), "/srv/"]
        for text in received:
            for word in paths:
                assert word not in text, f"{word!r} reached the browser"
        battle_marks = [*seen, "arena-battle", "lighthouse"]
        streamed = page.evaluate("window.__received")
        messages = [m for chunk in streamed for m in chunk.split("\n\n") if m.strip()]
        for message in messages:
            if any(mark in message for mark in battle_marks):
                for name in [*MODEL_NAMES, REFERENCE_NAME]:
                    assert name not in message, f"{name!r} sent with a battle"
        dom_battle = page.locator("#arena-battle").inner_html()
        assert not any(name in dom_battle for name in MODEL_NAMES)
        check_images(collector, seen)
    store.close()
