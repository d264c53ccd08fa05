"""The app served the three ways people reach it, and used in Chromium as a person would: the rehearsal the
browser tests (kernel culling, offline, server safety, the Binder pod) and benchmarks/binder_pod.py run. Used by
tests and benchmarks only, never to serve; it runs from a clone of the repository (`pip install -e .`).

- `picsort app`, as the README's quick start runs it;
- `voila app.ipynb` (voila.json), the course's "run voila locally";
- the Binder route: `jupyter server` with voila as a server extension, configured by binder/postBuild,
  the page at /voila/render/app.ipynb (as a Binder pod serves it: rehearsal.binder).

The app-specific part of driving the page (how files are given to the uploader, what a card is) is in
`upload` and `CARD` below and nowhere else.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from picsort.foundation.folders import EXAMPLES_DIR as EXAMPLES
from picsort.foundation.folders import REPOSITORY
from rehearsal.phone_sized import PHONE_SIZE
from rehearsal.ports import free_port

if REPOSITORY is None:
    raise ImportError("rehearsal.browser serves the app from a clone of the repository (pip install -e .); "
                      "this picsort is a regular install")
REPO = REPOSITORY
BINDER = REPO / "binder"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
SERVER_START_SECONDS = 90
PAGE_SECONDS = 180  # a first page starts a kernel that loads torch and the model; one busy CPU is slow

# ---- the page (the only place that knows how the app takes files and shows results) --------------------
CARD = ".picsort-card"  # one per file the app has answered for


def upload(page, files: list[Path]) -> None:
    """Give `files` to the app's uploader as one selection, as a person choosing them would."""
    paths = [str(path) for path in files]
    chooser = page.locator("input[type=file]")
    if chooser.count():
        chooser.first.set_input_files(paths)
    else:  # the stock ipywidgets 8 FileUpload keeps its <input> out of the page until clicked
        with page.expect_file_chooser() as opened:
            page.locator(".picsort-upload").click()
        opened.value.set_files(paths)


def wait_for_cards(page, count: int, timeout_seconds: float = PAGE_SECONDS) -> None:
    """Until at least `count` cards are on the page."""
    page.locator(CARD).nth(count - 1).wait_for(timeout=timeout_seconds * 1000)


def wait_for_app(page) -> None:
    """Until the uploader is on screen (the notebook has run in the kernel and the widgets are drawn)."""
    page.locator(".picsort-upload, input[type=file]").first.wait_for(state="attached", timeout=PAGE_SECONDS * 1000)


def page_kernel_id(page) -> str:
    """The id of the kernel serving this page (Voila writes it into the page's config)."""
    return page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")


# ---- the browser ---------------------------------------------------------------------------------------
def chromium_path() -> str | None:
    return shutil.which("chromium")


@contextmanager
def browser(executable: str, extra_args: tuple[str, ...] = ()):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield launched
        finally:
            try:
                launched.close()
            except Exception:  # the driver is already gone (it can die on a huge websocket frame)
                pass


LOCAL_HOSTS = {"127.0.0.1", "localhost"}
FAKE_CAMERA = ("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream")  # a camera, no prompt


def record_requests(context) -> list[str]:
    """Every URL the pages of a browser `context` ask for from now on, websockets included (in order)."""
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    context.on("page", lambda page: page.on("websocket", lambda socket: requests.append(socket.url)))
    return requests


def off_the_machine(urls: list[str]) -> list[str]:
    """The URLs that would leave the machine (data: and blob: URLs are the page's own memory)."""
    return [url for url in urls if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).hostname not in LOCAL_HOSTS]


# ---- servers -------------------------------------------------------------------------------------------

class Server:
    """A running server: `page_url`, `kernel(id)`, `kernels()`; its log in `log`."""

    def __init__(self, process: subprocess.Popen, base_url: str, page_path: str, token: str, log: Path):
        self.process, self.base_url, self.page_path, self.token, self.log = process, base_url, page_path, token, log

    @property
    def page_url(self) -> str:
        query = f"?token={self.token}" if self.token else ""
        return f"{self.base_url}{self.page_path}{query}"

    def api(self, path: str):
        """GET a server API path as JSON; None for 404."""
        request = urllib.request.Request(f"{self.base_url}{path}")
        if self.token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def kernel(self, kernel_id: str) -> dict | None:
        """The server's model of a kernel (execution_state, connections, last_activity), None once it is gone."""
        return self.api(f"api/kernels/{kernel_id}")

    def kernels(self) -> list[dict]:
        """All kernels (the Jupyter server's list; standalone Voila has no list endpoint)."""
        return self.api("api/kernels")

    def wait_until_up(self) -> None:
        """Until the server accepts connections (a plain connect: a page request would start a kernel)."""
        port = int(self.base_url.rsplit(":", 1)[1].split("/")[0])
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"server did not answer within {SERVER_START_SECONDS} s:\n{self.log_tail()}")

    def log_tail(self, characters: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-characters:] if self.log.exists() else ""

    def stop(self) -> None:
        """Stop the server and its kernels (the process group started for it, and any descendant that made a
        group of its own, as `picsort app` does for Voila)."""
        import psutil

        try:
            family = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            family = []
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        try:  # kernels may outlive the server for a moment
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for member in family:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass


@contextmanager
def serve(command: list[str], *, base_url: str, page_path: str, token: str, log: Path, env: dict,
          cwd: Path = REPO):
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
    server = Server(process, base_url, page_path, token, log)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


def app_environment(work: Path, bin_dir: Path | None = None) -> dict:
    """The environment a server runs in: a scratch labels folder and Jupyter folders of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PICSORT_LABELS_DIR": str(work / "labels"),
           "JUPYTER_CONFIG_DIR": str(work / "jupyter-config"), "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"),
           "JUPYTER_DATA_DIR": str(work / "jupyter-data")}
    env.pop("VIRTUAL_ENV", None)
    env.pop("JUPYTER_PATH", None)  # only what the route itself arranges
    if bin_dir is not None:
        env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return env


@contextmanager
def picsort_app_route(work: Path, *options: str, python: str = sys.executable):
    """`picsort app` with `options`, started from another folder, as a person runs it after installing."""
    port = free_port()
    command = [python, "-m", "picsort", "app", "--no-browser", f"--port={port}", *options]
    with serve(command, base_url=f"http://127.0.0.1:{port}/", page_path="", token="", log=work / "picsort-app.log",
               env=app_environment(work), cwd=work) as server:
        yield server


@contextmanager
def voila_route(work: Path, python: str = sys.executable):
    """`voila app.ipynb`, configured by voila.json from the repository's root."""
    port = free_port()
    command = [python, "-m", "voila", "app.ipynb", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"]
    with serve(command, base_url=f"http://127.0.0.1:{port}/", page_path="", token="", log=work / "voila.log",
               env=app_environment(work)) as server:
        yield server


def run_post_build(env: dict) -> None:
    """binder/postBuild, run as repo2docker runs it (from the repository's root, once)."""
    subprocess.run(["bash", str(BINDER / "postBuild")], cwd=REPO, env=env, check=True, capture_output=True,
                   text=True)


@contextmanager
def binder_route(work: Path, bin_dir: Path | None = None, wrap=lambda command: command):
    """`jupyter server` with the configuration binder/postBuild installs; `wrap` can put it in a cgroup."""
    bin_dir = bin_dir or Path(sys.executable).parent
    env = app_environment(work, bin_dir)
    run_post_build(env)
    port, token = free_port(), secrets.token_hex(16)
    # --allow-root: CI runs as root, where Binder runs as an ordinary user.
    command = wrap([str(bin_dir / "jupyter"), "server", "--no-browser", "--allow-root", f"--port={port}",
                    "--ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={REPO}"])
    with serve(command, base_url=f"http://127.0.0.1:{port}/", page_path="voila/render/app.ipynb", token=token,
               log=work / "jupyter-server.log", env=env) as server:
        yield server


# ---- photos --------------------------------------------------------------------------------------------
# Two bears half and half: photos the shipped model is unsure of, so the app decodes them whole a second time
# (`Classifier.answered_whole_near_edges`), the heaviest path a photo can take.
HALF_AND_HALF = [("grizzly-1", "teddy-1"), ("grizzly-1", "teddy-2"), ("grizzly-2", "teddy-1")]


def make_phone_photos(folder: Path, count: int, prefix: str = "phone") -> list[Path]:
    """`count` 12-MP JPEGs of 3-4 MB: the development photos upscaled, each made distinct by a shift.

    One in five is two photos of different bears half and half (HALF_AND_HALF), an answer near an edge.
    """
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(EXAMPLES.glob("*.jpg"))
    made = []
    for index in range(count):
        if index % 5 == 4:
            first, second = HALF_AND_HALF[index // 5 % len(HALF_AND_HALF)]
            source, blended = EXAMPLES / f"{first}.jpg", EXAMPLES / f"{second}.jpg"
        else:
            source, blended = sources[index % len(sources)], None
        path = folder / f"{prefix}-{index:03d}-{source.stem}{'' if blended is None else '-' + blended.stem}.jpg"
        if not path.exists():
            with Image.open(source) as image:
                big = image.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC)
            if blended is not None:
                with Image.open(blended) as image:
                    big = Image.blend(big, image.convert("RGB").resize(PHONE_SIZE, Image.Resampling.BICUBIC), 0.5)
            # Fine grain, as a phone sensor has, so the JPEG is as heavy as a real photo (3-4 MB).
            noise = Image.effect_noise(PHONE_SIZE, 22 + index % 5)
            big = Image.blend(big, Image.merge("RGB", [noise] * 3), 0.2)
            big.save(path, quality=92)
        made.append(path)
    return made


# ---- the rehearsal: visits to a pod ----------------------------------------------------------------------
def kernel_pid(kernel_id: str) -> int | None:
    """The process of a kernel, found by the connection file named in its command line."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if any(kernel_id in part for part in process.info["cmdline"] or []):
            return process.pid
    return None


class MemorySampler:
    """Samples a reading (e.g. a cgroup's process memory) in a thread, keeping the highest value."""

    def __init__(self, read, every_seconds: float = 0.25):
        import threading

        self.read, self.every, self.peak = read, every_seconds, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.read())
            except OSError:  # the group is being removed
                return
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(timeout=5)


def visit(page, server, photos: list[Path], *, reload: bool, killed=lambda: False,
          timeout_seconds: float = PAGE_SECONDS, on_loaded=lambda kernel_pid: None) -> dict:
    """One visit: open (or reload) the page, upload `photos` in one selection, wait for their cards.

    Returns what was seen: the kernel id and process, seconds from selection to the last card, the card
    count. Stops waiting as soon as `killed()` says a kernel was killed (the cards would never come).
    `on_loaded(pid)` is called once the page is ready, just before the upload.
    """
    if reload:
        page.reload()
    else:
        page.goto(server.page_url)
    wait_for_app(page)
    kernel_id = page_kernel_id(page)
    pid = kernel_pid(kernel_id)
    on_loaded(pid)
    started = time.monotonic()
    upload(page, photos)
    cards = page.locator(CARD)
    while cards.count() < len(photos):
        if killed():
            break
        if time.monotonic() - started > timeout_seconds:
            break
        page.wait_for_timeout(250)
    seconds = time.monotonic() - started
    texts = cards.all_inner_texts()
    return {"kernel_id": kernel_id, "pid": pid, "seconds": seconds, "cards": len(texts),
            "named": sum(any(photo.name in text for text in texts) for photo in photos)}


# ---- Teach mode (issue 20): the page's selectors as tests/test_teach_browser.py drives them ----------------------
def teach_count(page, name: str, photos: int):
    """The Teach section's count line of class `name` once it says exactly `photos` photos."""
    pattern = re.compile(rf"^{re.escape(name)}: {photos} photos?(\s|$)")
    return page.locator(f".picsort-teach-count[data-class='{name}']").filter(has_text=pattern)


def photos_taught(page, name: str) -> int:
    text = page.locator(f".picsort-teach-count[data-class='{name}']").inner_text()
    return int(re.match(rf"{re.escape(name)}: (\d+) photo", text).group(1))


def take_photo(page, name: str, number: int, deadline: float) -> None:
    """Click the camera button once; class `name` then has its `number`th photo (a click while the last photo is
    still on its way is taken after it)."""
    page.locator(".picsort-camera-take").click()
    teach_count(page, name, number).wait_for(timeout=max(1.0, deadline - time.monotonic()) * 1000)


def teach(page, classes: list[str], photos_per_class: int, try_photo: Path, *, killed=lambda: False,
          timeout_seconds: float = PAGE_SECONDS) -> dict:
    """Teach mode with the browser's camera (needs FAKE_CAMERA): name `classes`, take `photos_per_class` photos
    of each, one click a photo, press Train, then give `try_photo` to the page's try-it zone.

    Returns each class's photo count, the seconds taken to capture and to train, the Train status, the try-it
    card's verdict and bars, and whether `killed()` stopped it early.
    """
    wait = timeout_seconds * 1000
    page.locator(".picsort-teach-open").click()
    page.locator(".picsort-teach").wait_for(timeout=wait)
    for name in classes:
        page.locator(".picsort-teach-name input").fill(name)
        page.locator(".picsort-teach-add").click()
        teach_count(page, name, 0).wait_for(timeout=wait)
    page.locator(".picsort-camera-start").click()
    take = page.locator(".picsort-camera-take")
    take.wait_for(state="visible", timeout=wait)
    page.wait_for_function("() => document.querySelector('.picsort-camera-video').videoWidth > 0", timeout=wait)
    started = time.monotonic()
    for name in classes:
        page.locator(".picsort-teach-target button", has_text=re.compile(rf"^{re.escape(name)}$")).click()
        for number in range(1, photos_per_class + 1):
            if killed():
                return {"killed": True}
            take_photo(page, name, number, deadline=time.monotonic() + timeout_seconds)
    captured = time.monotonic() - started
    counts = {name: photos_taught(page, name) for name in classes}
    started = time.monotonic()
    page.locator(".picsort-teach-train").click()
    status = page.locator(".picsort-teach-status", has_text="Held-out accuracy")
    status.wait_for(timeout=wait)
    trained = time.monotonic() - started
    page.locator(".picsort-try-upload .picsort-file-input").set_input_files([str(try_photo)])
    tried = page.locator(CARD, has_text=try_photo.name)
    tried.wait_for(timeout=wait)
    return {"killed": False, "counts": counts, "capture_seconds": captured, "train_seconds": trained,
            "status": status.inner_text(),
            "verdict": tried.locator(".picsort-verdict").inner_text(),
            "bars": tried.locator(".picsort-bar").evaluate_all("bars => bars.map(bar => bar.dataset.class)")}
