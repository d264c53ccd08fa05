"""Shared fixtures: where photos come from, and the rule for tests that need real ones."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "datasets"
SHARED_BEARS = SHARED / "bears"
EXAMPLES = REPO / "examples"  # two photos per class of the shipped model, in every clone
PHOTOS_VARIABLE = "PICSORT_TEST_PHOTOS"
IN_CI = os.environ.get("CI", "").lower() == "true"


def pytest_configure(config):
    """The run gets a home folder of its own, removed at the end: Jupyter's runtime files, IPython's and
    matplotlib's settings, Chromium's profile and picsort's feature cache go there, not into the user's home.
    Package caches (pip's, npm's) stay where they were: they are the machine's, not the tests' leftovers."""
    real_home = Path.home()
    os.environ.setdefault("PIP_CACHE_DIR", str(real_home / ".cache" / "pip"))
    os.environ.setdefault("npm_config_cache", str(real_home / ".npm"))
    home = Path(tempfile.mkdtemp(prefix="picsort-tests-home-"))
    config.stash[_HOME_KEY] = (home, os.environ.get("HOME"))
    os.environ["HOME"] = str(home)
    for variable in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR", "MPLCONFIGDIR",
                     "IPYTHONDIR", "JUPYTER_RUNTIME_DIR", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR"):
        os.environ.pop(variable, None)


def pytest_unconfigure(config):
    home, before = config.stash.get(_HOME_KEY, (None, None))
    if home is None:
        return
    if before is None:
        os.environ.pop("HOME", None)
    else:
        os.environ["HOME"] = before
    shutil.rmtree(home, ignore_errors=True)


_HOME_KEY = pytest.StashKey[tuple]()


def real_photos_folder() -> Path | None:
    """The folder of real class-folder photos: `$PICSORT_TEST_PHOTOS`, else ../shared/datasets/bears."""
    named = os.environ.get(PHOTOS_VARIABLE)
    for candidate in ([Path(named)] if named else []) + [SHARED_BEARS]:
        if candidate.is_dir() and any(candidate.glob("*/*.jpg")):
            return candidate
    return None


def make_synthetic_photos(root: Path, classes=("black", "grizzly", "teddy"), per_class: int = 12) -> Path:
    """A small class-folder set of coloured noise pictures, distinct per class, for fresh clones."""
    rng = np.random.default_rng(0)
    tints = {0: (40, 40, 40), 1: (140, 90, 40), 2: (220, 170, 120)}
    for index, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(per_class):
            base = np.array(tints[index % 3], dtype=np.int16)
            pixels = np.clip(base + rng.integers(-40, 40, size=(96, 128, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{number:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="session", autouse=True)
def worker_models(tmp_path_factory) -> Path:
    """Where the Dask workers the tests start (in this process, in the commands they run, as separate processes)
    keep the model folders they are sent: under this run's temporary folder, not in /tmp, where a worker keeps
    them for the next run (picsort.batch.cluster.model_folder, $PICSORT_WORKER_MODELS)."""
    folder = tmp_path_factory.mktemp("worker-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PICSORT_WORKER_MODELS", str(folder))
        yield folder


@pytest.fixture(scope="session")
def photos(tmp_path_factory) -> tuple[Path, bool]:
    """`(folder, real)`: real photos where there are some, else a synthetic class-folder set."""
    real = real_photos_folder()
    if real is not None:
        return real, True
    return make_synthetic_photos(tmp_path_factory.mktemp("synthetic-photos")), False


def require_real_photos(photos) -> Path:
    """The real photos folder; without one a test skips with the reason, or fails in CI."""
    folder, real = photos
    if not real:
        reason = (f"needs real photos: put them in ../shared/datasets/bears or name a class-folder set "
                  f"with ${PHOTOS_VARIABLE}")
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.fixture(scope="session")
def real_photos(photos) -> Path:
    """Real photos only (skip outside CI, fail in CI when there are none)."""
    return require_real_photos(photos)


def train_small_model(folder: Path, output: Path, *, size: int = 64, epochs: int = 1, pretrained: bool = True,
                      backbone: str = "efficientnet_lite0", images_per_class: int | None = 16):
    """Train a quick learner the way train.ipynb does, export it to `output`; returns the learner."""
    from fastai.vision.all import error_rate, set_seed, vision_learner

    from picsort.inference.backbones import learner_architecture
    from picsort.photos.sources import gather_from_folder
    from picsort.training.export import export_model
    from picsort.training.notebook import training_datablock

    set_seed(42)  # the same photos, splits and initial head on every run
    data = output / "data"
    counts = gather_from_folder(folder, data, images_per_class=images_per_class)
    # A quarter to validate (the notebook: a fifth): a few photos per class leave enough to measure on.
    dls = training_datablock(size, valid_pct=0.25).dataloaders(data, bs=8, num_workers=0)
    arch, options = learner_architecture(backbone) if pretrained else (learner_architecture(backbone)[0], {})
    learn = vision_learner(dls, arch, metrics=error_rate, pretrained=pretrained, **options)
    with learn.no_bar(), learn.no_logging():
        learn.fine_tune(epochs, freeze_epochs=1)
        export_model(learn, output / "model", backbone=backbone, data_source=str(folder), images_per_class=counts)
    return learn


@pytest.fixture(scope="session")
def small_model(photos, tmp_path_factory) -> Path:
    """A model folder exported from a one-epoch learner on the `photos` fixture (never the shipped model/)."""
    output = tmp_path_factory.mktemp("small-model")
    train_small_model(photos[0], output)
    return output / "model"


@pytest.fixture
def make_prediction():
    """`make(classes, **changes)`: a `Prediction` a test chooses, its first class on top (every other at 0.1) and
    like the training photos, with `changes` to its fields; for what a card or the page does with an answer, without a model."""
    from picsort.inference.classify import Prediction

    def make(classes, **changes):
        probabilities = {name: 0.1 for name in classes}
        probabilities[classes[0]] = 1 - 0.1 * (len(classes) - 1)
        fields = dict(closest=classes[0], probability=probabilities[classes[0]], probabilities=probabilities,
                      unsure=False, none_of_these=False, similarity=0.9)
        fields.update(changes)
        return Prediction(**fields)

    return make


@pytest.fixture
def sent_by(monkeypatch):
    """`sent_by(widget)`: the list that gets what the widget sends its page, instead of a page (each message's
    content; with `buffers=True`, (content, buffers) pairs)."""
    def record(widget, buffers: bool = False) -> list:
        sent = []
        monkeypatch.setattr(widget, "send", lambda content, data=None: sent.append((content, data) if buffers else content))
        return sent

    return record


def chromium_or_skip() -> str:
    """Debian's Chromium for the browser tests; without it they skip (and fail in CI, where they must run)."""
    path = shutil.which("chromium")
    if path is None:
        reason = "needs Debian's chromium (apt-get install chromium)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def chromium() -> str:
    return chromium_or_skip()


def stop_process_group(process: subprocess.Popen, timeout: float = 20) -> None:
    """End a process started in a session of its own, and everything it started (Voila's kernels, a worker's nanny):
    SIGTERM to the group, SIGKILL if it has not ended within `timeout` seconds."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)


# ---- a served app, seen from a client (test_server_safety, test_voila_server, test_kernel_limit) ----------
def port_of(server) -> int:
    """The port of a server started by rehearsal.browser."""
    return int(server.base_url.rsplit(":", 1)[1].strip("/"))


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def open_page(port: int, path: str = "/") -> tuple[int, str]:
    """GET the app's page until its kernel id is in it: (status, kernel id or "")."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = b""
        while response.status == 200:
            chunk = response.read1(65536)
            found = re.search(rb'"kernelId": "([0-9a-f-]{36})"', body + chunk)
            if found:
                return response.status, found.group(1).decode()
            if not chunk:
                break
            body += chunk
        return response.status, ""
    finally:
        connection.close()


def get(port: int, path: str, headers: dict | None = None, timeout: float = 30) -> tuple[int, float]:
    """(status, seconds) of one GET."""
    started = time.monotonic()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        connection.close()


@pytest.fixture(scope="module")
def examples_and_bad_files(tmp_path_factory) -> Path:
    """a.jpg, b.jpg, c.jpg (one black bear, one grizzly, one teddy of the examples) and two bad files named .jpg:
    empty.jpg and text.jpg."""
    root = tmp_path_factory.mktemp("mixed")
    for name, photo in zip("abc", sorted(EXAMPLES.glob("*-1.jpg"))):
        (root / f"{name}.jpg").write_bytes(photo.read_bytes())
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a picture, just words\n")
    return root
