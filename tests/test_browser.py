"""The app as a person uses it: Voila serving app.ipynb, driven in a real Chromium through Playwright.

Starts `voila app.ipynb` on 127.0.0.1 with a temporary labels folder, uploads real photos together with a
damaged file and an oversized one in one go, checks what the page shows, labels one photo, and saves a
screenshot to docs/app-screenshot.png. Uses Debian's Chromium (never `playwright install`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from picsort.images import MAX_UPLOAD_BYTES
from picsort.model import read_card

REPO = Path(__file__).resolve().parent.parent
SCREENSHOT = REPO / "docs" / "app-screenshot.png"
ARTIFACTS = REPO / "test-artifacts"  # gitignored: a screenshot and the server log when this test fails
IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_SECONDS = 60
PAGE_SECONDS = 120  # first load starts a kernel and loads the model; a busy 2-core machine is slow


@pytest.fixture
def chromium() -> str:
    """Debian's Chromium; without it the test skips (fails in CI, where it must run)."""
    path = shutil.which("chromium")
    if path is None:
        reason = "needs Debian's chromium (apt-get install chromium)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    # Kernels may outlive voila for a moment; make sure none is left behind.
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture
def voila(tmp_path):
    """(url, labels folder, log file) of a voila serving app.ipynb with a temporary labels folder."""
    port = free_port()
    labels = tmp_path / "labels"
    log = tmp_path / "voila.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PICSORT_LABELS_DIR": str(labels)}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "voila", "app.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
    try:
        wait_for_port(port, process, log)
        yield f"http://127.0.0.1:{port}/", labels, log
    finally:
        stop(process)


def pick_photos(folder: Path, classes: list[str]) -> list[Path]:
    """One photo of each class (the first in name order, so runs are repeatable)."""
    chosen = []
    for name in classes:
        photos = sorted((folder / name).glob("*.jpg"))
        assert photos, f"no {name} photos in {folder}"
        chosen.append(photos[0])
    return chosen


def whole_page(page) -> None:
    """Make the viewport as tall as the content and scroll to the top.

    Voila scrolls inside its own container, so a `full_page` screenshot alone shows one screen, wherever
    the last click scrolled to.
    """
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": min(int(height) + 40, 8000)})
    page.evaluate("() => document.querySelectorAll('*').forEach(e => { e.scrollTop = 0; })")


# Fixture order matters: skip for missing photos or browser before starting a server.
def test_upload_label_and_screenshot_in_a_real_browser(real_photos, chromium, voila, tmp_path):
    from playwright.sync_api import sync_playwright

    url, labels, log = voila
    classes = read_card()["classes"]
    photos = pick_photos(real_photos, classes)
    # Copies with distinct names, so each card can be found by its file name.
    uploads = []
    for index, photo in enumerate(photos):
        copy = tmp_path / f"photo-{index}-{photo.parent.name}.jpg"
        shutil.copyfile(photo, copy)
        uploads.append(copy)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(photos[0].read_bytes()[:2000])
    # Over the per-file limit, and over tornado's default 10 MB websocket message: voila.json raises that,
    # otherwise the connection would drop and the page would go dead instead of showing a message.
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(photos[0].read_bytes()[:2] + bytes(MAX_UPLOAD_BYTES + 1024))
    files = [*uploads, broken, huge]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        try:
            page.goto(url, timeout=PAGE_SECONDS * 1000)
            upload = page.locator(".picsort-upload")
            upload.wait_for(timeout=PAGE_SECONDS * 1000)
            page_text = page.inner_text("body")
            for name in classes:
                assert name in page_text
            assert "any picture gets one of them" in page_text

            # ipywidgets 8 keeps its file input out of the page: go through the file chooser.
            with page.expect_file_chooser() as chooser:
                upload.click()
            chooser.value.set_files([str(f) for f in files])

            cards = page.locator(".picsort-card")
            cards.nth(len(files) - 1).wait_for(timeout=PAGE_SECONDS * 1000)
            assert cards.count() == len(files)

            verdict = re.compile(rf"({'|'.join(map(re.escape, classes))}) — (<1|>99|\d+)%")
            for photo in uploads:
                card = page.locator(".picsort-card", has_text=photo.name)
                assert card.count() == 1
                text = card.inner_text()
                assert verdict.search(text), text
                assert card.locator(".picsort-bar").count() == len(classes)
                assert card.locator(".picsort-thumbnail").is_visible()
            broken_card = page.locator(".picsort-card", has_text=broken.name)
            assert "damaged or incomplete" in broken_card.inner_text()
            huge_card = page.locator(".picsort-card", has_text=huge.name)
            assert "larger than the 20 MB limit" in huge_card.inner_text()
            assert broken_card.locator(".picsort-label-button").count() == 0

            # Label the first photo: click its (marked) guess.
            first = page.locator(".picsort-card", has_text=uploads[0].name)
            guess_button = first.locator(".picsort-label-button", has_text="✓")
            guess = guess_button.inner_text().replace("✓", "").strip()
            assert guess in classes
            guess_button.click()
            first.locator(".picsort-saved", has_text=f"Saved as {guess}").wait_for(timeout=30_000)
            page.locator(".picsort-counts", has_text=f"{guess}: 1").wait_for(timeout=30_000)

            digest = hashlib.sha256(uploads[0].read_bytes()).hexdigest()
            assert (labels / guess / f"{digest}.jpg").read_bytes() == uploads[0].read_bytes()
            lines = [json.loads(line) for line in (labels / "manifest.jsonl").read_text().splitlines()]
            assert [(line["sha256"], line["label"], line["original_name"]) for line in lines] == \
                [(digest, guess, uploads[0].name)]
            saved = [p for p in labels.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png")]
            assert len(saved) == 1  # nothing for the bad files, nothing for unlabelled photos

            # "Why?" shows the heatmap in the card.
            first.locator(".picsort-why").click()
            first.locator(".picsort-heatmap").wait_for(timeout=60_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('.picsort-card img')].every(i => i.complete && i.naturalWidth)")

            SCREENSHOT.parent.mkdir(exist_ok=True)
            whole_page(page)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            whole_page(page)
            page.screenshot(path=str(ARTIFACTS / "browser-failure.png"), full_page=True)
            shutil.copyfile(log, ARTIFACTS / "browser-failure-voila.log")
            raise
        finally:
            browser.close()
    assert "Traceback" not in log.read_text()
