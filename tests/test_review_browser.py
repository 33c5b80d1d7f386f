"""The gallery and failure flags served for real (issue 22, items 1 and 2): the image route
answers only logged-in admins and reviewers, the raters' app has no route to the gallery or
the flags (reveal on or off), and in headless chromium a reviewer flags an image and sees
the failure rate change on the Review and Leaderboard tabs."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest

from arena.config import load_settings
from arena.storage.store import Store
from arena.ui.review_images import ImageHandles
from tests.arena_fixtures import MODEL_NAMES, build_fixture

SECRET = "review-admin-secret"
REVIEWERS = [("ann", "ann-pass:with-colon")]


@pytest.fixture
def fixture_store(tmp_path):
    store = Store(
        load_settings(
            env={}, workspace=str(tmp_path / "ws"), admin_secret=SECRET, bootstrap_rounds=10
        )
    )
    build_fixture(store, n_prompts=3, seeds=2, size=96)
    yield store
    store.close()


def _login(http: httpx.Client, app: str, user: str, password: str) -> int:
    return http.post(f"{app}/login", data={"username": user, "password": password}).status_code


@pytest.mark.parametrize("reveal", [False, True])
def test_only_logged_in_admins_and_reviewers_reach_the_images(fixture_store, reveal):
    from tests.arena_app import running_app

    store = fixture_store.with_settings(reveal_models=reveal)
    image_id = int(store.gallery_images()["image_id"].iloc[0])
    handle = ImageHandles.of(store).seal(image_id)
    original = store.images.path_for(store.image_sha256(image_id)).read_bytes()
    with running_app(store, reviewers=REVIEWERS) as url:
        with httpx.Client(base_url=url, timeout=30) as raters:
            # the raters' app: no gallery route, its own image route knows no such handle
            for path in (
                f"review-image/{handle}",
                f"img/{handle}",
                f"gradio_api/review-image/{handle}",
            ):
                response = raters.get(path)
                assert response.status_code in (401, 404), path
                assert not response.headers.get("content-type", "").startswith("image/")
            # the Admin and Review apps' route: nothing without their login
            for app in ("admin", "review"):
                assert raters.get(f"{app}/review-image/{handle}").status_code == 401
                assert raters.get(f"{app}/review-image/{handle}?full=1").status_code == 401
            config = raters.get("config").text
            for word in (
                "Save verdict",
                "Failure modes",
                "Blind review",
                "review-image",
                "Failure rates",
            ):
                assert word not in config, word
            named = raters.get("gradio_api/info").json()["named_endpoints"]
            assert set(named) == {"/rater", "/battle", "/vote"}
            # the HTTP guards cover the Review app as they cover the Admin app
            assert raters.get("review/openapi.json").status_code == 404
            assert raters.post("review/gradio_api/upload", content=b"x").status_code == 403
        with httpx.Client(base_url=url, timeout=30) as admin:
            assert _login(admin, "admin", "admin", SECRET) == 200
            shown = admin.get(f"admin/review-image/{handle}")
            assert shown.status_code == 200 and shown.headers["content-type"] == "image/jpeg"
            assert "etag" not in shown.headers and "last-modified" not in shown.headers
            full = admin.get(f"admin/review-image/{handle}?full=1")
            assert full.headers["content-type"] == "image/png" and full.content == original
            assert admin.get(f"admin/review-image/{'0' * 16}").status_code == 404
            assert admin.get("admin/review-image/not-a-handle").status_code == 404
            # the admin's session is the Admin app's: the Review app does not take it
            assert admin.get(f"review/review-image/{handle}").status_code == 401
            _check_the_blind_route(admin, store, image_id, handle)
            assert "Held-out sets" in admin.get("admin/config").text  # the operators' filter
        with httpx.Client(base_url=url, timeout=30) as reviewer:
            assert _login(reviewer, "admin", "ann", REVIEWERS[0][1]) == 400  # not an admin
            assert _login(reviewer, "review", "ann", "wrong") == 400
            assert _login(reviewer, "review", "ann", REVIEWERS[0][1]) == 200
            assert reviewer.get(f"review/review-image/{handle}").status_code == 200
            assert reviewer.get(f"admin/review-image/{handle}").status_code == 401
            assert reviewer.get("admin/config").status_code == 401
            review_config = reviewer.get("review/config").text
            assert "Save verdict" in review_config and "Exclude rater" not in review_config
            # reviewers filter failure rates by prompts, but not by held-out sets
            assert "Prompt tag" in review_config and "Held-out sets" not in review_config


def _check_the_blind_route(admin: httpx.Client, store, image_id: int, handle: str) -> None:
    """The blind review's route: its own handles (never the browse views'), renditions
    only, its "full size" one box for every model whatever the originals' sizes."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (120, 200, 3), dtype=np.uint8)
    wide = store.add_image(  # a model whose images are wide: its originals' size shows
        store.add_model("wide-model", "import"),
        int(store.gallery_images()["prompt_id"].iloc[0]),
        store.images.put_image(Image.fromarray(pixels)),
        seed=0,
    )
    original = admin.get(f"admin/{ImageHandles.of(store).url(wide, full=True)}")
    assert Image.open(io.BytesIO(original.content)).size == (200, 120)
    blind = ImageHandles.of(store, blind=True)
    sealed = blind.seal(image_id)
    assert sealed != handle and blind.open(handle) != image_id
    assert blind.url(image_id, full=True) == f"review-blind/{sealed}?full=1"
    assert admin.get(f"admin/review-blind/{handle}").status_code == 404  # a browse handle
    assert admin.get(f"admin/review-image/{sealed}").status_code == 404  # and the reverse
    sizes = set()
    for other in [wide, *store.gallery_images()["image_id"].head(5)]:
        full = admin.get(f"admin/{blind.url(int(other), full=True)}")
        assert full.status_code == 200 and full.headers["content-type"] == "image/jpeg"
        sha = store.image_sha256(int(other))
        assert full.content != store.images.path_for(sha).read_bytes()  # never the original
        sizes.add(Image.open(io.BytesIO(full.content)).size)
        shown = admin.get(f"admin/{blind.url(int(other))}")
        assert Image.open(io.BytesIO(shown.content)).size == (512, 512)
    assert sizes == {(1024, 1024)}
    with httpx.Client(base_url=str(admin.base_url), timeout=30) as nobody:
        assert nobody.get(f"admin/review-blind/{sealed}?full=1").status_code == 401


def _log_in(page, url: str, app: str, user: str, password: str) -> None:
    page.goto(url + f"{app}/")
    page.fill("input[type=text]", user)
    page.fill("input[type=password]", password)
    page.keyboard.press("Enter")


def _pick(page, option: str) -> None:
    page.get_by_label("Image #").locator("visible=true").first.click()
    page.get_by_role("option", name=option, exact=True).click()


@pytest.mark.browser
def test_flag_an_image_and_see_the_rate_change(fixture_store, tmp_path):
    """Admin app in headless chromium: flag in the prompt view, judge a blind sample,
    the Review tab's rates and the Leaderboard's failure table follow."""
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    store = fixture_store
    second = sorted(MODEL_NAMES)[1]
    with running_app(store) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        _log_in(page, url, "admin", "admin", SECRET)
        page.get_by_role("tab", name="Review").click()
        expect(page.locator(".rv-card").nth(1)).to_contain_text(f"#2 {second}", timeout=60_000)
        cards = page.locator(".rv-card img")
        expect(cards).to_have_count(3)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.rv-card img')].every(i => i.naturalWidth > 0)"
        )
        sizes = cards.evaluate_all("els => els.map(e => [e.clientWidth, e.clientHeight])")
        assert len(set(map(tuple, sizes))) == 1  # side by side at one size
        _pick(page, f"#2 {second}")
        expect(page.locator(".rv-full img")).to_be_visible()
        page.get_by_label("hands").locator("visible=true").first.check()
        page.get_by_role("button", name="Save verdict").locator("visible=true").click()
        expect(page.get_by_text("Saved your verdict on image #2: hands.")).to_be_visible()
        expect(page.get_by_text("flags: hands (admin)")).to_be_visible()

        page.get_by_role("tab", name="Failure rates").click()
        cell = page.get_by_text("100.0% [20.7–100.0] (1/1)", exact=True).locator("visible=true")
        expect(cell.first).to_be_visible(timeout=30_000)

        page.get_by_role("tab", name="Blind review").click()
        page.get_by_label("Sample size").fill("3")
        page.get_by_role("button", name="Draw a sample").click()
        expect(page.get_by_text("3 image(s), 0 judged by you")).to_be_visible(timeout=30_000)
        for name in MODEL_NAMES:  # blind: no model name anywhere on the sample
            assert page.locator(".rv-card").locator("visible=true").get_by_text(name).count() == 0
        _pick(page, "#1")
        # the sample's images and its full-size view come through the blind route only
        expect(page.locator(".rv-full img").locator("visible=true")).to_be_visible()
        sources = page.locator("img").evaluate_all(
            "els => els.filter(e => e.offsetParent !== null).map(e => e.getAttribute('src'))"
        )
        shown = [src for src in sources if src and "review-" in src]
        assert len(shown) == 4 and all("review-blind/" in src for src in shown), shown
        page.get_by_role("button", name="Save verdict").locator("visible=true").click()
        expect(
            page.get_by_text("Saved your blind verdict on image #1: no failure.")
        ).to_be_visible()
        expect(page.get_by_text("3 image(s), 1 judged by you")).to_be_visible()
        # the panel moved on to #2: flag it
        expect(page.get_by_label("Image #").locator("visible=true").first).to_have_value("#2")
        page.get_by_label("other").locator("visible=true").first.check()
        page.get_by_role("button", name="Save verdict").locator("visible=true").click()
        expect(page.get_by_text("needs a note saying what failed")).to_be_visible()
        page.get_by_label("Note (needed for 'other')").locator("visible=true").fill("melted")
        page.get_by_role("button", name="Save verdict").locator("visible=true").click()
        expect(page.get_by_text("Saved your blind verdict on image #2: other.")).to_be_visible()

        flags = store.image_flags_frame()
        blind = flags[flags["blind"]]
        assert len(blind) == 2 and set(flags["reviewer"]) == {"admin"}
        assert set(blind["flag"]) == {"none", "other"}
        page.get_by_role("tab", name="Failure rates").click()
        blind_cell = page.get_by_text("0.0% [0.0–79.3] (0/1)", exact=True).locator("visible=true")
        expect(blind_cell.first).to_be_visible(timeout=30_000)

        page.get_by_role("tab", name="Leaderboard").click()
        expect(page.get_by_role("heading", name="Failure rates")).to_be_visible(timeout=60_000)
        failures = page.locator("#lb-fail")
        shown = failures.get_by_text("100.0% [20.7–100.0] (1/1)", exact=True)
        expect(shown.locator("visible=true").first).to_be_visible()
        page.screenshot(path=str(tmp_path / "leaderboard-failures.png"), full_page=True)
        page.close()


@pytest.mark.browser
def test_a_reviewer_login_reviews_under_its_own_name(fixture_store):
    from playwright.sync_api import expect

    from tests.arena_app import running_app
    from tests.browser import chromium

    store = fixture_store
    with running_app(store, reviewers=REVIEWERS) as url, chromium() as browser:
        page = browser.new_page(viewport={"width": 1366, "height": 900})
        _log_in(page, url, "review", *REVIEWERS[0])
        expect(page.locator(".rv-card").first).to_contain_text("#1 ", timeout=60_000)
        assert page.get_by_role("tab", name="Raters").count() == 0  # not the Admin app
        _pick(page, f"#1 {sorted(MODEL_NAMES)[0]}")
        page.get_by_label("face/anatomy").locator("visible=true").first.check()
        page.get_by_role("button", name="Save verdict").locator("visible=true").click()
        expect(page.get_by_text("flags: face/anatomy (ann)")).to_be_visible()
        page.close()
    flags = store.image_flags_frame()
    assert flags[["reviewer", "flag", "blind"]].values.tolist() == [["ann", "face/anatomy", False]]


def test_reviewer_logins_are_throttled_like_the_admins(fixture_store):
    from tests.arena_app import running_app

    store = fixture_store.with_settings(admin_login_attempts=2, admin_lockout_seconds=60)
    with running_app(store, reviewers=REVIEWERS) as url, httpx.Client(base_url=url) as http:
        assert [_login(http, "review", "ann", "wrong") for _ in range(2)] == [400, 400]
        assert _login(http, "review", "ann", REVIEWERS[0][1]) == 429  # locked out, right or not
