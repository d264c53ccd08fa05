"""The app as a person uses it: Voila serving app.ipynb, driven in a real Chromium through Playwright.

Runs on a fresh clone (the example photos in examples/, phone-size photos made from them): tries the examples,
labels with a click and a key, undoes, downloads the labels zip, uploads 20 phone photos in one selection,
checks the page at phone width, that no request leaves the machine, and that a dead kernel is announced.
Keeps a screenshot of the page in the test's temporary folder; README's is refreshed with
`PICSORT_SCREENSHOT=docs/app-screenshot.png` (tests write only under temporary folders unless told).
Uses Debian's Chromium (never `playwright install`).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from picsort.inference.model import read_card
from picsort.photos.images import MAX_UPLOAD_BYTES
from rehearsal.ports import free_port
from tests.conftest import stop_process_group

pytestmark = pytest.mark.slow  # Voila and Chromium: 30 s to minutes a test (the folder drop: ~4 min)

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT_VARIABLE = "PICSORT_SCREENSHOT"
ARTIFACTS = REPO / "test-artifacts"  # gitignored: a screenshot and the server log when this test fails
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))
TEMPLATES = REPO / "share" / "jupyter"  # the picsort Voila template (no icon font from a CDN)
SERVER_START_SECONDS = 60
PAGE_SECONDS = 120  # first load starts a kernel and loads the model; a busy 2-core machine is slow



def wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    """Until the server accepts connections (a plain connect: a page request would start a kernel)."""
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"voila exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"voila did not answer on port {port} within {SERVER_START_SECONDS} s:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    """Stop voila and its kernels (they share the process group started for it)."""
    stop_process_group(process, timeout=15)
    # Kernels may outlive voila for a moment; make sure none is left behind.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def serve(tmp_path):
    """serve(model_folder=None) -> (url, labels folder, log, process): voila on app.ipynb, stopped afterwards."""
    started = []

    def start(model_folder: Path | None = None):
        port = free_port()
        labels = tmp_path / f"labels-{len(started)}"
        log = tmp_path / f"voila-{len(started)}.log"
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PICSORT_LABELS_DIR": str(labels),
               "JUPYTER_PATH": str(TEMPLATES)}
        if model_folder is not None:
            env["PICSORT_MODEL_DIR"] = str(model_folder)
        with log.open("w") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "voila", "app.ipynb", "--no-browser", f"--port={port}",
                 "--Voila.ip=127.0.0.1", "--template=picsort"],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        started.append(process)
        wait_for_port(port, process, log)
        return f"http://127.0.0.1:{port}/", labels, log, process

    try:
        yield start
    finally:
        for process in started:
            stop(process)


class Browser:
    """One Chromium page that records every request leaving the machine (and blocks it) and every JS error."""

    def __init__(self, playwright, chromium: str, width: int = 1000):
        self.browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        self.context = self.browser.new_context(viewport={"width": width, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page.on("websocket", lambda ws: self._check(ws.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _check(self, url: str) -> bool:
        host = re.match(r"^[a-z]+://([^/:]+)", url)
        local = url.startswith(("data:", "blob:")) or (host and host.group(1) in ("127.0.0.1", "localhost"))
        if not local:
            self.outside.append(url)
        return bool(local)

    def _route(self, route):
        if self._check(route.request.url):
            route.continue_()
        else:
            route.abort()

    @contextlib.contextmanager
    def opened(self, url: str, log: Path, name: str):
        """The app's page at `url`, loaded; the browser is closed afterwards, and if the block failed a
        screenshot (`name`.png) and the server's `log` are kept in test-artifacts/."""
        try:
            self.page.goto(url, timeout=PAGE_SECONDS * 1000)
            self.page.locator(".picsort-drop").wait_for(timeout=PAGE_SECONDS * 1000)
            yield self.page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            whole_page(self.page)
            self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            shutil.copyfile(log, ARTIFACTS / f"{name}-voila.log")
            raise
        finally:
            self.browser.close()


@pytest.fixture
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        opened = []

        def open_browser(width: int = 1000) -> Browser:
            opened.append(Browser(playwright, chromium, width))
            return opened[-1]

        yield open_browser
        for item in opened:
            with contextlib.suppress(Exception):
                item.browser.close()


def whole_page(page) -> None:
    """Make the viewport as tall as the content and scroll to the top.

    Voila scrolls inside its own container, so a `full_page` screenshot alone shows one screen, wherever
    the last click scrolled to.
    """
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": min(int(height) + 40, 8000)})
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })")


def phone_photos(folder: Path, count: int) -> list[Path]:
    """`count` phone-size (4032x3024) JPEGs with distinct names, made by upscaling the example photos."""
    folder.mkdir()
    made = []
    for index, source in enumerate(EXAMPLES):
        path = folder / f"phone-{index:02d}.jpg"
        Image.open(source).convert("RGB").resize((4032, 3024), Image.BICUBIC).save(path, quality=90)
        made.append(path)
    while len(made) < count:
        path = folder / f"phone-{len(made):02d}.jpg"
        shutil.copyfile(made[len(made) % len(EXAMPLES)], path)
        made.append(path)
    return made[:count]


def card(page, name: str):
    return page.locator(".picsort-card", has_text=name)


def effective_labels(labels: Path) -> dict[str, str]:
    """sha256 -> label after every save and undo in the manifest."""
    current = {}
    for line in (labels / "manifest.jsonl").read_text().splitlines():
        entry = json.loads(line)
        current[entry["sha256"]] = entry["label"]
    return {sha: label for sha, label in current.items() if label is not None}


def test_the_whole_loop_in_a_real_browser(serve, browser, tmp_path):
    url, labels, log, _ = serve()
    classes = read_card()["classes"]
    window = browser()
    with window.opened(url, log, "browser-loop") as page:
        text = page.inner_text("body")
        assert f"Is it {', '.join(classes[:-1])} or {classes[-1]}?" in text
        assert "validation photos" in text and "20 MB each" in text

        # Try the examples.
        page.locator(".picsort-examples").click()
        results = page.locator(".picsort-card-result")
        results.nth(len(EXAMPLES) - 1).wait_for(timeout=60_000)
        assert results.count() == len(EXAMPLES)
        verdict = re.compile(rf"({'|'.join(map(re.escape, classes))}) — (<1|>99|\d+)%")
        for example in EXAMPLES:
            shown = card(page, example.name)
            assert verdict.search(shown.inner_text()), shown.inner_text()
            assert shown.locator(".picsort-bar").count() == len(classes)
            assert shown.locator(".picsort-label-button[data-key='1']").inner_text().startswith("1")

        # "None of these" with a click, a class with its key, then undo with U.
        first, second = EXAMPLES[0], EXAMPLES[2]
        card(page, first.name).locator("[data-label='none']").click()
        card(page, first.name).locator(".picsort-saved", has_text="Saved as none of these").wait_for(timeout=30_000)
        card(page, second.name).focus()
        page.keyboard.press("2")
        card(page, second.name).locator(".picsort-saved", has_text=f"Saved as {classes[1]}").wait_for(timeout=30_000)
        shown = page.locator(".picsort-card-result .picsort-filename").all_inner_texts()
        focused = page.locator(".picsort-card-result:focus .picsort-filename").inner_text(timeout=5_000)
        keyed = card(page, second.name).locator(".picsort-filename").inner_text()
        assert shown.index(focused) == shown.index(keyed) + 1  # the key moved focus to the next card
        assert card(page, second.name).locator(".picsort-chosen").inner_text().endswith(classes[1])
        page.locator(".picsort-counts", has_text=f"{classes[1]}: 1").wait_for(timeout=30_000)
        page.keyboard.press("u")  # focus moved on to the next card: undo is page-wide
        page.locator(".picsort-undo-note", has_text=f"no longer saved as {classes[1]}").wait_for(timeout=30_000)
        assert card(page, second.name).locator(".picsort-chosen").count() == 0
        sha = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in EXAMPLES}
        assert effective_labels(labels) == {sha[first.name]: "none"}

        # Download the labels.
        with page.expect_download(timeout=60_000) as download:
            page.locator(".picsort-download").click()
        archive = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes()))
        assert download.value.suggested_filename.endswith(".zip")
        assert archive.read(f"none/{sha[first.name]}.jpg") == first.read_bytes()
        lines = [json.loads(line) for line in archive.read("manifest.jsonl").decode().splitlines()]
        assert {(line["sha256"], line["label"]) for line in lines} >= {(sha[first.name], "none")}
        assert not [n for n in archive.namelist() if n.startswith(f"{classes[1]}/")]

        # A picture of no bear at all: the headline is "none of these", the closest class and the bars are small
        # beneath it, and no class is headlined with a bold percentage.
        other = tmp_path / "stripes.png"
        bands = (np.arange(240) // 12 % 2)[:, None, None]
        Image.fromarray(np.broadcast_to(np.where(bands == 0, [30, 90, 200], [250, 240, 20]).astype(np.uint8),
                                        (240, 320, 3)).copy()).save(other)
        page.locator(".picsort-file-input").set_input_files([str(other)])
        stripes = card(page, other.name)
        stripes.wait_for(timeout=60_000)
        assert f"does not look like any of: {', '.join(classes)}" in stripes.inner_text()
        assert stripes.locator(".picsort-verdict").inner_text() == "none of these"
        assert not verdict.search(stripes.inner_text())
        closest = stripes.locator(".picsort-answer-small .picsort-closest").inner_text()
        assert re.fullmatch(rf"closest class: ({'|'.join(map(re.escape, classes))}) \((<1|>99|\d+)%\)", closest)
        assert stripes.locator(".picsort-answer-small b").count() == 0
        assert stripes.locator(".picsort-answer-small").evaluate("e => parseFloat(getComputedStyle(e).fontSize)") < \
            stripes.locator(".picsort-verdict").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert stripes.locator(".picsort-bar").count() == len(classes)
        assert stripes.locator(".picsort-bar-answer").count() == 0  # green marks an answer's bar
        assert stripes.locator(".picsort-answer").inner_text().endswith("✓ none of these")

        # "Why?" shows the heatmap; this is the README's screenshot.
        card(page, EXAMPLES[1].name).locator(".picsort-why").click()
        card(page, EXAMPLES[1].name).locator(".picsort-heatmap").wait_for(timeout=60_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.picsort-card img')].every(i => i.complete && i.naturalWidth)")
        screenshot = Path(os.environ.get(SCREENSHOT_VARIABLE) or tmp_path / "app-screenshot.png")
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        whole_page(page)
        page.screenshot(path=str(screenshot), full_page=True)
        page.set_viewport_size({"width": 1000, "height": 900})

        # Labelling the explained card redraws what the label changes (the status line, the buttons' marks), not
        # the picture or the heatmap: their blob URLs stay, and "Hide why" still hides the heatmap.
        explained = card(page, EXAMPLES[1].name)
        pictures = [".picsort-thumbnail", ".picsort-heatmap"]
        before = [explained.locator(picture).get_attribute("src") for picture in pictures]
        explained.locator(f"[data-label='{classes[0]}']").click()
        explained.locator(".picsort-saved", has_text=f"Saved as {classes[0]}").wait_for(timeout=30_000)
        assert explained.locator(".picsort-chosen").inner_text().endswith(classes[0])
        assert [explained.locator(picture).get_attribute("src") for picture in pictures] == before
        explained.locator(".picsort-why", has_text="Hide why").click()
        explained.locator(".picsort-heatmap").wait_for(state="detached", timeout=30_000)

        # Twenty phone photos in one selection (~80 MB: more than one websocket message may carry), with a
        # damaged file and one over the size limit; the progress line counts them.
        phones = phone_photos(tmp_path / "phone", 20)
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(EXAMPLES[0].read_bytes()[:2000])
        huge = tmp_path / "huge.jpg"
        huge.write_bytes(EXAMPLES[0].read_bytes()[:2] + bytes(MAX_UPLOAD_BYTES + 1024))
        selection = [*phones, broken, huge]
        page.evaluate("""() => { window.progressSeen = [];
            new MutationObserver(() => window.progressSeen.push(document.querySelector('.picsort-progress').innerText))
              .observe(document.querySelector('.picsort-progress'), {subtree: true, childList: true,
                                                                      characterData: true}); }""")
        page.locator(".picsort-file-input").set_input_files([str(f) for f in selection])
        page.locator(".picsort-progress", has_text=f"{len(phones)} photos classified").wait_for(timeout=300_000)
        assert page.locator(".picsort-card").count() == len(EXAMPLES) + 1 + len(selection)
        for phone in phones:
            assert verdict.search(card(page, phone.name).inner_text())
        seen = page.evaluate("() => window.progressSeen")
        assert any(f"of {len(selection)}" in line for line in seen), seen
        assert "damaged or incomplete" in card(page, broken.name).inner_text()
        assert "larger than the 20 MB limit" in card(page, huge.name).inner_text()
        assert card(page, huge.name).locator(".picsort-label-button").count() == 0

        assert window.outside == [], window.outside
        assert window.errors == [], window.errors
    assert "Traceback" not in log.read_text()


def test_class_names_with_spaces_at_phone_width(serve, browser, tmp_path):
    """A model whose classes have spaces: buttons and bars work, and at 390 px nothing is cut."""
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.safetensors", "reference.safetensors"):
        shutil.copyfile(REPO / "model" / name, model / name)
    card_data = json.loads((REPO / "model" / "model.json").read_text())
    classes = ["black bear", "grizzly bear", "teddy bear toy"]
    card_data["classes"] = classes
    (model / "model.json").write_text(json.dumps(card_data))
    url, labels, log, _ = serve(model)
    window = browser(width=390)
    with window.opened(url, log, "browser-phone-width") as page:
        page.locator(".picsort-examples").click()
        page.locator(".picsort-card-result").nth(len(EXAMPLES) - 1).wait_for(timeout=60_000)
        first = card(page, EXAMPLES[0].name)
        button = first.locator(f"[data-label='{classes[2]}']")
        assert button.inner_text().endswith(classes[2])
        button.click()
        first.locator(".picsort-saved", has_text=f"Saved as {classes[2]}").wait_for(timeout=30_000)
        digest = hashlib.sha256(EXAMPLES[0].read_bytes()).hexdigest()
        assert (labels / classes[2] / f"{digest}.jpg").exists()
        assert first.locator(".picsort-bar[data-class='grizzly bear']").count() == 1

        # Nothing cut or pushed off the screen at phone width.
        cut = page.evaluate("""() => {
            const bad = [];
            const width = document.documentElement.clientWidth;
            for (const el of document.querySelectorAll(
                '.picsort-bar-name, .picsort-bar-value, .picsort-label-button, .picsort-verdict, .picsort-filename,'
                + ' .picsort-title, .picsort-choose, .picsort-download')) {
              const box = el.getBoundingClientRect();
              if (el.scrollWidth > el.clientWidth + 1 || box.right > width + 1 || box.left < -1)
                bad.push(`${el.className}: ${el.innerText} (${box.left.toFixed(0)}-${box.right.toFixed(0)} of ${width})`);
            }
            return bad; }""")
        assert cut == []
        page.screenshot(path=str(tmp_path / "phone-width.png"), full_page=True)
        assert window.outside == [] and window.errors == []


def test_the_page_says_when_its_kernel_is_gone(serve, browser):
    url, _, log, process = serve()
    window = browser()
    with window.opened(url, log, "browser-kernel-gone") as page:
        page.wait_for_timeout(7_000)  # a few pings answered
        assert not page.locator(".picsort-session-ended").is_visible()
        kernels = [child for child in psutil.Process(process.pid).children(recursive=True)
                   if "ipykernel" in " ".join(child.cmdline())]
        assert len(kernels) == 1
        kernels[0].kill()
        banner = page.locator(".picsort-session-ended")
        banner.wait_for(state="visible", timeout=90_000)
        assert "This session has ended" in banner.inner_text() and "reload" in banner.inner_text()


def test_a_drop_of_the_whole_photo_folder_shows_its_cards_a_page_at_a_time(real_photos, serve, browser):
    """All 416 development photos in one selection: every one gets a card, 60 to a page."""
    photos = sorted(p for p in real_photos.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    url, _, log, _ = serve()
    window = browser()
    with window.opened(url, log, "browser-whole-folder") as page:
        page.locator(".picsort-file-input").set_input_files([str(p) for p in photos])
        page.locator(".picsort-progress", has_text="classified in").wait_for(timeout=600_000)
        pages = -(-len(photos) // 60)
        assert page.locator(".picsort-card").count() == 60
        note = page.locator(".picsort-page-note")
        assert f"Page 1 of {pages} (cards 1–60 of {len(photos)})" in note.inner_text()
        for _ in range(pages - 1):
            page.locator(".picsort-pager button", has_text="Older").click()
        note.filter(has_text=f"Page {pages} of {pages}").wait_for(timeout=30_000)
        page.wait_for_function(f"() => document.querySelectorAll('.picsort-card').length == "
                               f"{len(photos) - 60 * (pages - 1)}", timeout=30_000)
        assert window.errors == []
