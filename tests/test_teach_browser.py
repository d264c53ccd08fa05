"""Teach mode in a real Chromium with its fake camera: photos taken into two new classes (clicks, then a held
button), Train, and a try-it photo answered by the new model; the model downloads as a zip load_model serves.
Reuses tests/test_browser.py's Voila and Chromium helpers; uses Debian's Chromium (never `playwright install`)."""

from __future__ import annotations

import io
import zipfile

import pytest

import tests.test_browser as browser_helpers
from picsort.classify import load_model
from tests.test_browser import EXAMPLES, browser, card, serve  # noqa: F401 - fixtures used by name

pytestmark = pytest.mark.slow  # Voila and Chromium with a fake camera

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def count_of(page, name: str):
    return page.locator(f".picsort-teach-count[data-class='{name}']")


def test_photos_from_the_camera_teach_a_model_the_page_answers_with(serve, browser, tmp_path, monkeypatch):
    monkeypatch.setattr(browser_helpers, "CHROMIUM_ARGS", [*browser_helpers.CHROMIUM_ARGS, *FAKE_CAMERA])
    monkeypatch.setenv("PICSORT_CACHE", str(tmp_path / "cache"))  # the kernel's converted weights: here only
    url, _, log, _ = serve()
    window = browser()
    with window.opened(url, log, "browser-teach") as page:
        page.locator(".picsort-teach-open").click()
        page.locator(".picsort-teach").wait_for(timeout=60_000)
        for name in ("mug", "cup"):
            page.locator(".picsort-teach-name input").fill(name)
            page.locator(".picsort-teach-add").click()
            count_of(page, name).filter(has_text=f"{name}: 0 photos (add 5 more)").wait_for(timeout=30_000)

        # mug: one click, one photo.
        page.locator(".picsort-teach-target button", has_text="mug").click()
        page.locator(".picsort-camera-start").click()
        take = page.locator(".picsort-camera-take")
        take.wait_for(state="visible", timeout=30_000)
        page.wait_for_function("() => document.querySelector('.picsort-camera-video').videoWidth > 0",
                               timeout=30_000)
        for _ in range(5):  # quick clicks, each before the last photo has reached the kernel: none is lost
            take.click()
        count_of(page, "mug").filter(has_text="mug: 5 photos").wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        assert count_of(page, "mug").inner_text().startswith("mug: 5 photos")  # and none taken twice
        assert page.locator(".picsort-teach-class", has_text="mug").locator("img").count() == 5
        # Kept at the size the model needs (shortest side 300 px), not the fake camera's 640x480.
        assert page.locator(".picsort-teach-remove").first.get_attribute("title") == "Remove camera-1.jpg (400×300 px)"

        # Train before cup has enough: it says how many more.
        page.locator(".picsort-teach-train").click()
        page.locator(".picsort-teach-status", has_text="Not yet: no photos of cup").wait_for(timeout=30_000)

        # cup: the button held takes a burst.
        page.locator(".picsort-teach-target button", has_text="cup").click()
        take.hover()
        page.mouse.down()
        page.wait_for_function("""() => { const el = document.querySelector(".picsort-teach-count[data-class='cup']");
            return el && parseInt(el.innerText.split(': ')[1]) >= 6; }""", timeout=120_000)
        page.mouse.up()
        page.locator(".picsort-teach-train").click()
        page.locator(".picsort-teach-status", has_text="Held-out accuracy").wait_for(timeout=60_000)
        assert "The page now answers with this model" in page.locator(".picsort-teach-status").inner_text()
        assert "Is it mug or cup?" in page.locator(".picsort-intro").inner_text()

        # Try it: a photo through the page's own zone gets the new model's answer and label buttons.
        page.locator(".picsort-try-upload .picsort-file-input").set_input_files([str(EXAMPLES[0])])
        tried = card(page, EXAMPLES[0].name)
        tried.wait_for(timeout=60_000)
        assert tried.locator(".picsort-verdict").inner_text() in ("mug", "cup", "none of these")
        assert tried.locator(".picsort-bar[data-class='mug']").count() == 1
        assert tried.locator(".picsort-bar[data-class='cup']").count() == 1
        assert tried.locator("[data-label='cup']").count() == 1

        with page.expect_download(timeout=60_000) as download:
            page.locator(".picsort-teach-download .picsort-download").click()
        assert download.value.suggested_filename.endswith(".zip")
        zipfile.ZipFile(io.BytesIO(open(download.value.path(), "rb").read())).extractall(tmp_path / "unzipped")
        (folder,) = (tmp_path / "unzipped").iterdir()
        assert load_model(folder).classes == ["mug", "cup"]

        page.locator(".picsort-teach-open", has_text="Hide Teach").click()  # closing Teach turns the camera off
        page.wait_for_function("() => document.querySelector('.picsort-camera-video').srcObject === null",
                               timeout=10_000)

        assert window.outside == [], window.outside
        assert window.errors == [], window.errors
    assert "Traceback" not in log.read_text()


def test_a_page_the_browser_gives_no_camera_says_so(serve, browser):
    """As on `picsort app --lan`'s http address: browsers give no camera to an insecure page (no mediaDevices)."""
    url, _, log, _ = serve()
    window = browser()
    window.page.add_init_script("Object.defineProperty(navigator, 'mediaDevices', {value: undefined});")
    with window.opened(url, log, "browser-teach-no-camera") as page:
        page.locator(".picsort-teach-open").click()
        page.locator(".picsort-camera-start").click()
        note = page.locator(".picsort-camera-note", has_text="This browser gives no camera to this page")
        note.wait_for(timeout=30_000)
        assert "https" in note.inner_text()
        assert window.errors == [], window.errors
