"""The page as a whole (picsort.app.page): build_app, the model check, the parts wired together, in a real kernel,
and the same answers as the CLI and the API."""

from __future__ import annotations

import csv
import html
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsort.app.page import ClassifierApp, build_app
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.labels import LabelStore
from tests.unit.app.conftest import EXAMPLES, REPO, model_with_classes


def test_the_store_must_know_the_models_classes(classifier, labels):
    with pytest.raises(ValueError, match="classes"):
        ClassifierApp(classifier, LabelStore(labels))
    with pytest.raises(ValueError, match="classes"):
        ClassifierApp(classifier, LabelStore(labels, ["cat", "dog"]))


def test_a_model_with_an_unsafe_class_name_gets_a_page_that_says_so(tmp_path):
    folder = model_with_classes(tmp_path / "model", ["../evil", "cat", "dog"])
    page = build_app(folder, tmp_path / "labels")
    assert "This app cannot start" in page.value and "evil" in page.value
    assert not (tmp_path / "labels").exists()


@pytest.mark.parametrize("card_changes, said", [
    ({"preprocessing": {"size": 0, "extra": 0, "mean": [0.5] * 3, "std": [0.5] * 3}},
     "preprocessing.size is 0: a whole number of pixels from 32 to 1024"),
    ({"head": {"hidden": 10**6, "pool": "avg", "batchnorm": True}}, "head.hidden is 1000000"),
    ({"architecture": {"library": "torchvision", "name": "resnet18"}},
     "reference.safetensors does not fit its model: it holds features of 333×1280, the network's features are N×512"),
])
def test_a_model_folder_that_cannot_be_served_gets_the_app_s_own_page_naming_the_problem(tmp_path, card_changes, said):
    """What app.ipynb's one call gives Voila to show: the app's message, never an exception (Voila's "error
    executing cell")."""
    folder = model_with_classes(tmp_path / "model", ["black", "grizzly", "teddy"], **card_changes)
    page = build_app(folder, tmp_path / "labels")
    assert "This app cannot start" in page.value and html.escape(said, quote=True) in page.value
    assert not (tmp_path / "labels").exists()


def test_build_app_uses_the_labels_folder_from_the_environment(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("PICSORT_LABELS_DIR", str(tmp_path / "from-env"))
    page = build_app()
    assert "picsort-app" in page._dom_classes
    assert not (tmp_path / "from-env").exists()  # nothing written until someone labels a photo


def test_importing_the_app_does_not_import_fastai():
    code = "import picsort.app.page, sys; assert not any(m.startswith('fastai') for m in sys.modules), 'fastai imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr


def test_a_failure_in_a_real_kernel_reaches_the_server_log_and_not_the_browser(tmp_path):
    """In a Voila kernel anything on stderr (fd 2 included) travels to the browser; the app's log must not."""
    from jupyter_client.manager import start_new_kernel

    server_log = tmp_path / "kernel-stderr.log"
    code = f"""
import warnings
from picsort.app.page import ClassifierApp
from picsort.inference.classify import load_model
from picsort.photos.labels import LabelStore
classifier = load_model()
app = ClassifierApp(classifier, LabelStore({str(tmp_path / 'labels')!r}, classifier.classes))
def broken(*args, **kwargs):
    raise RuntimeError("out of cheese")
classifier.classify = broken
(card,) = app.handle_upload([{{"name": "bear.jpg", "content": open({str(EXAMPLES[0])!r}, "rb").read()}}])
warnings.warn("a warning from deep inside")
print(card.problem)
"""
    # ipykernel forwards fd 2 only outside pytest (it checks this variable): be the kernel Voila runs.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    with server_log.open("w") as log_file:
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(REPO), env=env, stderr=log_file,
                                           startup_timeout=120)
    messages = []
    try:
        reply = client.execute_interactive(code, timeout=180, output_hook=messages.append)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    streams = [(m["content"]["name"], m["content"]["text"]) for m in messages if m["msg_type"] == "stream"]
    assert streams == [("stdout", "Something went wrong with 'bear.jpg'. Please try again, or try another picture.\n")]
    assert not [m for m in messages if m["msg_type"] == "error"]
    logged = server_log.read_text()
    assert "out of cheese" in logged and "Traceback" in logged and "a warning from deep inside" in logged


def test_the_app_the_cli_and_the_api_give_the_same_answers(app, classifier, tmp_path):
    """Shipped model, no stand-ins: example bears and a picture of no bear, through all three ways in."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for example in sorted((REPO / "examples").glob("*.jpg")):
        shutil.copyfile(example, folder / example.name)
    bands = (np.arange(240) // 12 % 2)[:, None, None]  # blue and yellow stripes: no bear at all
    stripes = np.where(bands == 0, [30, 90, 200], [250, 240, 20]).astype(np.uint8)
    Image.fromarray(np.broadcast_to(stripes, (240, 320, 3)).copy()).save(folder / "stripes.png")
    files = sorted(folder.iterdir())

    api = {file.name: classifier.predict(file) for file in files}
    cards = {card.name: card for card in app.handle_upload(
        [{"name": file.name, "content": memoryview(file.read_bytes())} for file in files])}
    out = tmp_path / "results.csv"
    subprocess.run([sys.executable, "-m", "picsort", "classify", str(folder), "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}

    # All three answer "none of these" for the stripes, each naming the same closest class beside it.
    assert cards["stripes.png"].answer == rows["stripes.png"]["class"] == api["stripes.png"].label == NONE_LABEL
    assert not any(prediction.none_of_these for name, prediction in api.items() if name != "stripes.png")
    for name, prediction in api.items():
        card, row = cards[name], rows[name]
        assert card.answer == row["class"] == prediction.label, name
        assert card.closest == row["closest"] == prediction.closest in classifier.classes, name
        assert card.none_of_these == prediction.none_of_these == (row["none_of_these"] == "true"), name
        for index, class_name in enumerate(classifier.classes):
            assert float(row[f"p_{class_name}"]) == pytest.approx(prediction.probabilities[class_name], abs=1e-3)
            assert card.probabilities[index] == pytest.approx(prediction.probabilities[class_name], abs=1e-6)
