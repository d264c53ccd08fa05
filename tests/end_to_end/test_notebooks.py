"""Both notebooks run top to bottom under nbval: train.ipynb in smoke mode, app.ipynb as Voila would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_synthetic_photos

pytestmark = pytest.mark.slow  # each runs a notebook in a fresh kernel (train.ipynb trains)


def run_nbval(notebook: str, env_extra: dict, tmp_path) -> subprocess.CompletedProcess:
    # TMPDIR: smoke mode's throw-away folders (tempfile.mkdtemp in the notebook) go under the test's own folder
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", "TMPDIR": str(tmp_path), **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", "--rootdir", str(tmp_path), notebook],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_train_notebook_runs_in_smoke_mode_and_leaves_model_alone(photos, tmp_path):
    shipped = {p.name: p.stat().st_mtime_ns for p in (REPO / "model").iterdir()}
    result = run_nbval("train.ipynb", {"PICSORT_SMOKE": "1", "PICSORT_SOURCE": str(photos[0]),
                                       "PICSORT_DATA": str(tmp_path / "data")}, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (REPO / "model").iterdir()} == shipped


def test_app_notebook_runs(tmp_path):
    result = run_nbval("app.ipynb", {"PICSORT_LABELS_DIR": str(tmp_path / "labels")}, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


# --- train.ipynb as a learner runs it: edit the first cell, run all ------------------------------------------

def run_train_notebook(tmp_path, categories: dict | None, source, output, data_root, timeout: int = 900,
                       env_extra: dict | None = None):
    """Execute train.ipynb (smoke settings) with CATEGORIES edited as a learner edits the first cell (unless None),
    from the repository as its working folder; returns (the executed notebook, the error it stopped on or None)."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(REPO / "train.ipynb", as_version=4)
    if categories is not None:
        first = next(cell for cell in notebook.cells if cell.cell_type == "code" and "CATEGORIES = {" in cell.source)
        start = first.source.index("CATEGORIES = {")
        end = first.source.index("}", start) + 1
        first.source = first.source[:start] + f"CATEGORIES = {categories!r}" + first.source[end:]
    env = {"PICSORT_SMOKE": "1", "PICSORT_SOURCE": str(source), "PICSORT_OUTPUT": str(output),
           "PICSORT_DATA": str(data_root), "PICSORT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1",
           "MPLBACKEND": "Agg", "PICSORT_CATEGORIES": "", "TMPDIR": str(tmp_path), **(env_extra or {})}
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # the kernel inherits the environment of the process that starts it
    try:
        client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO)}})
        try:
            client.execute()
            error = None
        except CellExecutionError as exc:
            error = exc
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return notebook, error


def _outputs_text(notebook) -> str:
    return "\n".join(output.get("text", "") + "".join(output.get("traceback", []))
                     + output.get("evalue", "") + str(output.get("data", {}).get("text/plain", ""))
                     for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))


def _other_categories(tmp_path, real: bool) -> tuple[dict, Path]:
    """Three categories that are not bears, and a folder of photos of them (Imagenette where it is here)."""
    from tests.conftest import SHARED

    imagenette = SHARED / "imagenette"
    if real and imagenette.is_dir():
        return {"church": "church", "parachute": "parachute", "golf_ball": "golf ball"}, imagenette
    folder = make_synthetic_photos(tmp_path / "others", classes=("church", "parachute", "golf_ball"), per_class=12)
    return {"church": "church", "parachute": "parachute", "golf_ball": "golf ball"}, folder


def test_a_second_run_with_other_categories_learns_exactly_those(photos, tmp_path):
    """The issue's first finding: after a bears run, a run on other categories mixed the bears in."""
    import json

    data_root = tmp_path / "data"
    bears = {"grizzly": "grizzly bear", "black": "black bear", "teddy": "teddy bear"}
    first, error = run_train_notebook(tmp_path, bears, photos[0], tmp_path / "bears-model", data_root)
    assert error is None, _outputs_text(first)[-3000:]
    categories, source = _other_categories(tmp_path, photos[1])
    second, error = run_train_notebook(tmp_path, categories, source, tmp_path / "other-model", data_root)
    assert error is None, _outputs_text(second)[-3000:]
    card = json.loads((tmp_path / "other-model" / "model.json").read_text())
    assert card["classes"] == sorted(categories)
    assert sorted(card["images_per_class"]) == sorted(categories)
    assert card["validation"]["images"] == sum(card["images_per_class"].values()) // 5
    assert not Path(card["data_source"]).is_absolute()
    # Each run kept its own data folder; the bears are still there for the next bears run.
    folders = sorted(p for p in data_root.iterdir() if p.is_dir())
    assert len(folders) == 2
    assert {sorted(c.name for c in f.iterdir() if c.is_dir()) == sorted(bears) for f in folders} == {True, False}


def test_a_headless_run_trains_the_categories_picsort_categories_names(tmp_path):
    """Issue 24: scripts and CI train other categories without editing the tracked notebook; a source whose
    folders differ from CATEGORIES stops with a message saying how to name them."""
    import json

    source = make_synthetic_photos(tmp_path / "photos", classes=("church", "golf_ball", "parachute"), per_class=8)
    notebook, error = run_train_notebook(tmp_path, None, source, tmp_path / "model", tmp_path / "data",
                                         env_extra={"PICSORT_CATEGORIES": "church, golf_ball=golf ball, parachute"})
    assert error is None, _outputs_text(notebook)[-3000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["classes"] == ["church", "golf_ball", "parachute"]
    assert "imagenet" in card["none_of_these"]  # the frozen body keeps its ImageNet classifier for "none of these"
    assert "your photos look to ImageNet like:" in _outputs_text(notebook)
    notebook, error = run_train_notebook(tmp_path, None, source, tmp_path / "bears", tmp_path / "data")
    assert error is not None and "PICSORT_CATEGORIES=church,golf_ball,parachute" in _outputs_text(notebook)
    assert not (tmp_path / "bears").exists()


def test_a_five_minute_labels_zip_trains_and_a_missing_category_is_named(tmp_path):
    """3 photos per class (a workshop's five minutes of labelling) trains; a category with none stops the run
    with a message naming it, not a traceback."""
    import json

    from picsort.foundation.vocabulary import NONE_LABEL
    from picsort.photos.labels import LabelStore

    photos = make_synthetic_photos(tmp_path / "photos", per_class=3)
    store = LabelStore(tmp_path / "labels", classes=["black", "grizzly", "teddy"])
    for label in ("black", "grizzly", "teddy"):
        for number in range(3):
            store.save((photos / label / f"{number:03d}.jpg").read_bytes(), label)
    zipped = tmp_path / "labels.zip"
    with open(zipped, "wb") as file:
        store.write_zip(file)
    bears = {"grizzly": "grizzly bear", "black": "black bear", "teddy": "teddy bear"}
    notebook, error = run_train_notebook(tmp_path, bears, zipped, tmp_path / "model", tmp_path / "data")
    assert error is None, _outputs_text(notebook)[-3000:]
    card = json.loads((tmp_path / "model" / "model.json").read_text())
    assert card["images_per_class"] == {"black": 3, "grizzly": 3, "teddy": 3}
    assert card["data_source"] == "labels.zip"

    # Only one grizzly and a "none of these" photo: grizzly is short, black and teddy have none.
    small = LabelStore(tmp_path / "small-labels")
    small.save((photos / "grizzly" / "000.jpg").read_bytes(), "grizzly")
    small.save((photos / "teddy" / "000.jpg").read_bytes(), NONE_LABEL)
    with open(tmp_path / "small.zip", "wb") as file:
        small.write_zip(file)
    notebook, error = run_train_notebook(tmp_path, bears, tmp_path / "small.zip", tmp_path / "small-model",
                                         tmp_path / "data")
    assert error is not None
    text = _outputs_text(notebook)
    assert "NotEnoughPhotosError: no photos of black, teddy" in text
    assert "Traceback" not in text and "File " not in text
    assert not (tmp_path / "small-model" / "model.json").exists()
