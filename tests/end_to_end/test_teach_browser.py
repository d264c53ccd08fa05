"""Teach mode in a real Chromium with its fake camera: photos taken into two new classes (clicks, then a held
button), Train, and a try-it photo answered by the new model; the model downloads as a zip load_model serves.
Two browsers on one server each teach their own classes and never see, download or remove the other's.
Reuses tests/end_to_end/test_browser.py's Voila and Chromium helpers; uses Debian's Chromium (never `playwright install`)."""

from __future__ import annotations

import io
import zipfile

import pytest

import tests.end_to_end.test_browser as browser_helpers
from picsort.inference.classify import load_model
from tests.conftest import make_synthetic_photos
from tests.end_to_end.test_browser import EXAMPLES, browser, card, serve  # noqa: F401 - fixtures used by name

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


def teach_photos(page, name: str, files: list) -> None:
    """Open Teach (once the page has sent its visitor id), add the class `name` and choose `files` for it."""
    page.locator(".picsort-teach-open").click()  # Playwright waits for the button to be enabled
    page.locator(".picsort-teach").wait_for(timeout=120_000)
    page.locator(".picsort-teach-name input").fill(name)
    page.locator(".picsort-teach-add").click()
    count_of(page, name).filter(has_text=f"{name}: 0 photos").wait_for(timeout=60_000)
    page.locator(".picsort-teach-upload .picsort-file-input").set_input_files([str(file) for file in files])
    count_of(page, name).filter(has_text=f"{name}: {len(files)} photos").wait_for(timeout=120_000)


def test_two_visitors_each_teach_their_own_classes(serve, browser, tmp_path, monkeypatch):
    monkeypatch.setenv("PICSORT_CACHE", str(tmp_path / "cache"))
    made = make_synthetic_photos(tmp_path / "photos", classes=("dark", "mid", "light"), per_class=5)
    dark, light = sorted((made / "dark").iterdir()), sorted((made / "light").iterdir())
    url, labels, log, _ = serve()
    visitors = labels.parent / "taught" / "visitors"
    first, second = browser(), browser()  # two browsers: two visitors
    with first.opened(url, log, "teach-visitor-a") as a, second.opened(url, log, "teach-visitor-b") as b:
        teach_photos(a, "mugs", dark)
        teach_photos(b, "cups", [*light[:3], dark[0]])  # one photo A has too
        for page, _own, other, photos in ((a, "mugs", "cups", 5), (b, "cups", "mugs", 4)):
            assert count_of(page, other).count() == 0 and page.locator(".picsort-teach-class img").count() == photos
            assert str(tmp_path) not in page.locator(".picsort-app").inner_text()  # no server path on the page

        with b.expect_download(timeout=60_000) as download:
            b.locator(".picsort-teach-photos-download .picsort-download").click()
        names = zipfile.ZipFile(open(download.value.path(), "rb")).namelist()
        assert sorted(name.split("/")[0] for name in names if "/" in name) == ["cups"] * 4

        b.locator(".picsort-teach-remove-class").click()
        count_of(b, "cups").wait_for(state="detached", timeout=30_000)
        visitor_a = a.evaluate("localStorage.getItem('picsort-visitor')")
        assert visitor_a != b.evaluate("localStorage.getItem('picsort-visitor')")
        assert len(list((visitors / visitor_a / "mugs").iterdir())) == 5  # B's remove took none of A's

        a.reload()  # a new page, a new kernel: A's classes come back
        a.locator(".picsort-drop").wait_for(timeout=120_000)
        a.locator(".picsort-teach-open").click()
        count_of(a, "mugs").filter(has_text="mugs: 5 photos").wait_for(timeout=120_000)
        a.locator(".picsort-teach-class img").nth(4).wait_for(timeout=30_000)
        assert a.locator(".picsort-teach-class img").count() == 5 and count_of(a, "cups").count() == 0
        assert first.errors == [] and second.errors == [], (first.errors, second.errors)
    assert "Traceback" not in log.read_text()


def test_without_local_storage_teach_works_for_the_page(serve, browser, tmp_path, monkeypatch):
    """A browser that keeps nothing (storage blocked): the page makes an id of its own, Teach opens and takes
    photos; a reload is a new visitor then, with an empty Teach."""
    monkeypatch.setenv("PICSORT_CACHE", str(tmp_path / "cache"))
    made = make_synthetic_photos(tmp_path / "photos", classes=("dark",), per_class=2)
    url, _, log, _ = serve()
    window = browser()
    window.page.add_init_script("Object.defineProperty(window, 'localStorage', "
                                "{get() { throw new DOMException('blocked', 'SecurityError'); }});")
    with window.opened(url, log, "teach-no-storage") as page:
        teach_photos(page, "mugs", sorted((made / "dark").iterdir()))
        page.reload()
        page.locator(".picsort-drop").wait_for(timeout=120_000)
        page.locator(".picsort-teach-open").click()
        page.locator(".picsort-teach").wait_for(timeout=120_000)
        page.wait_for_timeout(1000)
        assert count_of(page, "mugs").count() == 0
        assert window.errors == [], window.errors
