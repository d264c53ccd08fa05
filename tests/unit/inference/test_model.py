"""Export writes what serving needs, and the fastai-free classify path gives fastai's answers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from picsort.foundation.folders import MODEL_DIR
from picsort.inference.classify import Classifier, load_model
from picsort.inference.model import ModelFolderError, read_card
from picsort.photos.sources import class_folders
from picsort.training.export import load_learner_checked

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_classifier_matches_learn_predict(small_model, photos):
    learn = load_learner_checked(small_model)
    classifier = Classifier(small_model)
    files = [f for fs in class_folders(photos[0]).values() for f in fs[:4]]
    for file in files:
        _, _, fastai_probabilities = learn.predict(file)
        # The resize and normalisation, exact on a photo decoded whole (decoding reduced, as predict does, is held
        # to the bound users need by the shipped-model test below).
        from picsort.photos.images import image_from_path
        tensor = classifier.to_tensor(image_from_path(file))
        (ours,) = classifier.predictions(classifier.to_batch([tensor]))
        for name, expected in zip(learn.dls.vocab, fastai_probabilities.tolist()):
            assert ours.probabilities[name] == pytest.approx(expected, abs=1e-4)


def phone_size(photo: Path, folder: Path) -> Path:
    """The photo upscaled to 12 megapixels, aspect kept, as a quality-90 JPEG (as a phone saves it)."""
    from PIL import Image

    from rehearsal.phone_sized import phone_sized

    path = folder / f"{photo.parent.name}-{photo.name}"
    phone_sized(Image.open(photo).convert("RGB")).save(path, quality=90)
    return path


@pytest.mark.slow  # fastai and ours on 416 photos, and again at 12 MP: ~5 min
def test_shipped_model_gives_fastai_s_answers_on_the_development_photos_and_on_them_at_12_megapixels(
        real_photos, tmp_path):
    """What users need from the serving path: fastai's answers, also on phone photos, which it decodes reduced.

    On all development photos, and on all of them upscaled to 12 MP JPEGs (quality 90, as a phone saves them),
    the top class equals fastai's (`learn.get_preds`, the same transforms as `learn.predict`) on >= 99.5 % of
    the photos, and every probability is within 0.03 of fastai's. Exactness is not asked for large photos:
    the serving path drafts a JPEG to 1/2-1/8 scale where fastai decodes it whole; where that moves an answer
    (near an edge), the serving path decodes the photo whole and answers again.
    """
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    learn = load_learner_checked(MODEL_DIR)
    classifier = load_model(MODEL_DIR)
    vocab = list(learn.dls.vocab)
    files = [f for fs in class_folders(real_photos).values() for f in fs]

    def answers(paths):
        with learn.no_bar():
            theirs, _ = learn.get_preds(dl=learn.dls.test_dl(paths, num_workers=0))
        ours = [p for start in range(0, len(paths), 16) for p in classifier.predict_batch(paths[start:start + 16])]
        return theirs, torch.tensor([[p.probabilities[c] for c in vocab] for p in ours])

    theirs, ours = answers(files)
    phone_theirs, phone_ours = [], []
    with ThreadPoolExecutor(2) as pool:  # Pillow resizes and encodes with the GIL released
        for start in range(0, len(files), 32):  # a chunk at a time: 416 such photos would take 1.5 GB of disk
            folder = tmp_path / f"chunk-{start}"
            folder.mkdir()
            chunk = list(pool.map(lambda photo: phone_size(photo, folder), files[start:start + 32]))  # noqa: B023
            assert Image.open(chunk[0]).width * Image.open(chunk[0]).height >= 11_500_000
            t, o = answers(chunk)
            phone_theirs.append(t)
            phone_ours.append(o)
            shutil.rmtree(folder)
    for kind, reference, served in (("development", theirs, ours),
                                    ("12 MP", torch.cat(phone_theirs), torch.cat(phone_ours))):
        same_class = (reference.argmax(1) == served.argmax(1)).float().mean().item()
        apart = (reference - served).abs().max(1).values
        summary = (f"{kind} photos: same top class on {same_class:.2%}, probabilities at most "
                   f"{apart.max().item():.3f} apart")
        print(summary)
        assert same_class >= 0.995, summary
        assert apart.max().item() <= 0.03, summary
    # and learn.predict itself, the course's call, on a few
    for file in files[::50]:
        assert classifier.predict(file).closest == learn.predict(file)[0]  # fastai knows no "none of these"


def test_shipped_card_describes_the_shipped_weights():
    card = read_card(MODEL_DIR)
    assert card["classes"] == ["black", "grizzly", "teddy"]
    assert (MODEL_DIR / "model.safetensors").exists() and (MODEL_DIR / "export.pkl").exists()
    network = load_model(MODEL_DIR).network
    assert network[1][-1].out_features == len(card["classes"])


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(ModelFolderError, match="train.ipynb"):
        Classifier(tmp_path)


def test_serving_imports_neither_fastai_nor_timm():
    import subprocess
    import sys

    code = ("import sys; from picsort.inference.classify import load_model; load_model(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastai', 'timm', 'torchvision'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- model folders from anyone: checked before anything is built ------------------------------------------


@pytest.fixture(scope="module")
def shipped_files(tmp_path_factory) -> Path:
    """One copy of the shipped model's files, for each test's folder to link to (links on one filesystem)."""
    import shutil

    folder = tmp_path_factory.mktemp("shipped")
    for path in MODEL_DIR.iterdir():
        if path.name != "export.pkl":
            shutil.copyfile(path, folder / path.name)
    return folder


def model_folder(shipped: Path, folder: Path, change=None) -> Path:
    """A model folder of the shipped files (hard links), its card changed by `change(card)`."""
    import json
    import os

    folder.mkdir()
    for path in shipped.iterdir():
        os.link(path, folder / path.name)
    if change is not None:
        card = json.loads((folder / "model.json").read_text())
        change(card)
        (folder / "model.json").unlink()
        (folder / "model.json").write_text(json.dumps(card))
    return folder


def setting(path: str, value):
    """A change to the card: `path` ("head.hidden") set to `value`."""

    def change(card):
        *parents, key = path.split(".")
        for parent in parents:
            card = card[parent]
        card[key] = value

    return change


@pytest.mark.parametrize("path, value, said", [
    ("classes", "abc", "classes is \"abc\": a list of class names"),
    ("classes", ["bears"], "classes lists 1 names: a model has 2 to 1000 classes"),
    ("classes", [f"c{i}" for i in range(1001)], "a model has 2 to 1000 classes"),
    ("classes", ["black", "black", "teddy"], "listed more than once: black"),
    ("classes", ["black", "griz\nzly", "teddy"], "must contain only printable characters"),
    ("classes", ["black", 3, "teddy"], "must be text"),
    ("architecture", {"library": "torchvision", "name": "vit_h_14"}, "picsort builds only timm efficientnet_lite0"),
    ("architecture", "efficientnet_lite2", "architecture is \"efficientnet_lite2\""),
    ("head.hidden", 10**6, "head.hidden is 1000000: null (no hidden layer) or a whole number from 1 to 4096"),
    ("head.pool", "max", "head.pool is \"max\": one of avg, concat"),
    ("head.batchnorm", "no", "head.batchnorm is \"no\": true or false"),
    ("preprocessing.size", 0, "preprocessing.size is 0: a whole number of pixels from 32 to 1024"),
    ("preprocessing.size", 10**9, "preprocessing.size is 1000000000"),
    ("preprocessing.extra", -8, "preprocessing.extra is -8"),
    ("preprocessing.mean", [0.5, 0.5], "preprocessing.mean is [0.5, 0.5]: a list of 3 finite numbers"),
    ("preprocessing.std", [0.5, 0, 0.5], "a list of 3 finite numbers above 0"),
    ("preprocessing.std", [0.5, float("nan"), 0.5], "preprocessing.std is [0.5, NaN, 0.5]"),
    ("preprocessing.resample", "lanczos", "picsort resizes with 'bilinear' only"),
    ("threshold", 1.5, "threshold is 1.5: a probability from 0 to 1"),
    ("none_of_these.k", 0, "none_of_these.k is 0: a whole number from 1 to 1000"),
    ("none_of_these.threshold", float("inf"), "none_of_these.threshold is Infinity: a finite number"),
    ("none_of_these.reference", "../../../../etc/passwd", "is not a file name in the model folder"),
    ("none_of_these.reference", "/etc/passwd", "is not a file name in the model folder"),
])
def test_a_card_picsort_cannot_serve_is_refused_naming_the_problem_before_anything_is_built(
        shipped_files, tmp_path, monkeypatch, path, value, said):
    import torchvision.models

    import picsort.inference.model

    def never(*_args, **_kwargs):
        raise AssertionError("a network was built from a card that cannot be served")

    # Building is where a card's sizes cost memory (10**6 hidden units, vit_h_14: gigabytes): never reached.
    monkeypatch.setattr(picsort.inference.model, "classifier_head", never)
    monkeypatch.setattr(torchvision.models, "vit_h_14", never)
    folder = model_folder(shipped_files, tmp_path / "model", setting(path, value))
    with pytest.raises(ModelFolderError) as refused:
        Classifier(folder)
    assert said in str(refused.value) and "model.json cannot be served" in str(refused.value)


def test_a_card_may_carry_keys_picsort_does_not_know(shipped_files, tmp_path):
    """Cards a newer picsort writes (more in none_of_these, more records) still serve."""

    def change(card):
        card["none_of_these"]["some_future_check"] = {"threshold": 0.3, "anything": [1, 2]}
        card["written_by"] = "someone"

    folder = model_folder(shipped_files, tmp_path / "model", change)
    assert Classifier(folder).classes == ["black", "grizzly", "teddy"]


@pytest.mark.parametrize("make, said", [
    (lambda path: path.write_text("{not json"), "is not a model card (not valid JSON"),
    (lambda path: path.write_text(" " * (2**20 + 1)), "larger than a model card can be"),
    (lambda path: path.write_text("[1, 2]"), "a model card is a JSON object, not list"),
    (lambda path: path.mkdir(), "is a folder, not a file picsort can read"),
])
def test_a_card_file_that_is_no_card_is_refused(shipped_files, tmp_path, make, said):
    folder = model_folder(shipped_files, tmp_path / "model")
    (folder / "model.json").unlink()
    make(folder / "model.json")
    with pytest.raises(ModelFolderError, match=said.replace("(", r"\(")):
        Classifier(folder)


def test_a_fifo_card_is_refused_at_once_rather_than_waited_on(shipped_files, tmp_path):
    import os
    import subprocess
    import sys

    folder = model_folder(shipped_files, tmp_path / "model")
    (folder / "model.json").unlink()
    os.mkfifo(folder / "model.json")  # no writer: opening it for reading blocks for ever
    code = ("from picsort.inference.classify import Classifier\nfrom picsort.inference.model import ModelFolderError\n"
            f"try:\n    Classifier({str(folder)!r})\nexcept ModelFolderError as error:\n    print(error)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "model.json is a FIFO, not a file picsort can read" in result.stdout, result.stderr


def test_model_files_must_be_files_inside_the_folder(shipped_files, tmp_path):
    outside = model_folder(shipped_files, tmp_path / "elsewhere")
    folder = model_folder(shipped_files, tmp_path / "model")
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(outside / "model.safetensors")
    with pytest.raises(ModelFolderError, match="model.safetensors is a link to a file outside its model folder"):
        Classifier(folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("/dev/zero")
    with pytest.raises(ModelFolderError, match="model.safetensors is a device, not a file picsort can read"):
        Classifier(folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to("model.json")  # a link inside the folder is followed
    with pytest.raises(ModelFolderError, match="model.safetensors is not a safetensors file"):
        Classifier(folder)


def test_weights_that_do_not_fit_the_card_name_the_tensor(shipped_files, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = model_folder(shipped_files, tmp_path / "model", setting("classes", ["a", "b"]))
    with pytest.raises(ModelFolderError, match=r"\"1.2.weight\" is 3×1280, the card's network has 2×1280"):
        Classifier(folder)
    folder = model_folder(shipped_files, tmp_path / "missing")
    weights = load_file(folder / "model.safetensors")
    del weights["1.2.bias"]
    (folder / "model.safetensors").unlink()
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelFolderError, match=r"lacks 1 tensors the card's network has \(\"1.2.bias\"\)"):
        Classifier(folder)


@pytest.mark.parametrize("change, said", [
    (lambda card: card["none_of_these"]["imagenet"].update(covered=[5, 1000]), "class numbers 0-999"),
    (lambda card: card["none_of_these"]["imagenet"].update(covered="abc"),
     'none_of_these.imagenet.covered is "abc": a list of ImageNet class numbers'),
    (lambda card: card["none_of_these"]["imagenet"].update(covered=[]), "imagenet.covered is \\[\\]"),
    (lambda card: card["none_of_these"]["imagenet"].update(threshold=2), "number from 0 to 1"),
])
def test_a_card_whose_imagenet_check_does_not_fit_is_refused(shipped_files, tmp_path, change, said):
    folder = model_folder(shipped_files, tmp_path / "model", change)
    with pytest.raises(ModelFolderError, match=said):
        Classifier(folder)
