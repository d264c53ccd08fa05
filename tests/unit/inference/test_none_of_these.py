"""The "none of these" check: photos unlike the training photos are flagged, photos of the classes are not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from picsort.foundation.folders import MODEL_DIR
from picsort.inference.classify import Classifier, load_model
from picsort.inference.model import ModelFolderError, read_card
from picsort.inference.none_of_these import REFERENCE_NAME, NoneOfTheseCheck, pooled
from tests.conftest import EXAMPLES, IN_CI, SHARED


def feature_map(vectors) -> torch.Tensor:
    """A 2×2 feature map per row of `vectors`, whose average pool is that row."""
    return torch.tensor(vectors, dtype=torch.float32)[:, :, None, None].expand(-1, -1, 2, 2)


def test_a_photo_like_a_training_photo_is_not_none_of_these_and_one_unlike_all_of_them_is_not():
    reference = pooled(feature_map([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0]]))
    index = NoneOfTheseCheck(reference, k=2, threshold=0.8)
    like, unlike = index.similarity(feature_map([[1, 0.05, 0], [0, 0, 1]])).tolist()
    assert like > 0.9 and not index.is_none_of_these(like)
    assert unlike == pytest.approx(0.0, abs=1e-6) and index.is_none_of_these(unlike)


def test_a_model_exported_without_a_reference_never_says_none_of_these(tmp_path):
    index = NoneOfTheseCheck.load(tmp_path, {"classes": ["a", "b"]})
    similarity = float(index.similarity(feature_map([[0, 0, 1]]))[0])
    assert math.isnan(similarity) and not index.is_none_of_these(similarity)


def test_a_card_naming_a_missing_reference_file_says_to_re_export(tmp_path):
    card = {"none_of_these": {"k": 5, "threshold": 0.5, "reference": REFERENCE_NAME}}
    with pytest.raises(ModelFolderError, match="re-export"):
        NoneOfTheseCheck.load(tmp_path, card)


def shipped_copy(folder):
    """A model folder holding copies of the shipped model's card, weights and reference."""
    import shutil

    folder.mkdir()
    for name in ("model.json", "model.safetensors", REFERENCE_NAME):
        shutil.copyfile(MODEL_DIR / name, folder / name)
    return folder


def test_a_reference_of_the_wrong_width_is_refused_naming_both_widths(tmp_path):
    from safetensors.torch import save_file

    folder = shipped_copy(tmp_path / "model")
    save_file({"features": torch.ones(10, 64, dtype=torch.float16)}, folder / REFERENCE_NAME)
    with pytest.raises(ModelFolderError, match="holds features of 10×64, the network's features are N×1280"):
        Classifier(folder)
    save_file({"other": torch.ones(10, 1280)}, folder / REFERENCE_NAME)
    with pytest.raises(ModelFolderError, match="holds no 'features' tensor"):
        Classifier(folder)


def test_a_reference_outside_the_model_folder_is_never_opened(tmp_path):
    folder = shipped_copy(tmp_path / "model")
    (folder / REFERENCE_NAME).rename(tmp_path / "secret.safetensors")
    card = json.loads((folder / "model.json").read_text())
    card["none_of_these"]["reference"] = "../secret.safetensors"
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelFolderError, match="is not a file name in the model folder"):
        Classifier(folder)
    card["none_of_these"]["reference"] = REFERENCE_NAME
    (folder / "model.json").write_text(json.dumps(card))
    (folder / REFERENCE_NAME).symlink_to(tmp_path / "secret.safetensors")
    with pytest.raises(ModelFolderError, match="is a link to a file outside its model folder"):
        Classifier(folder)


def test_the_shipped_model_knows_the_example_bears():
    classifier = load_model(MODEL_DIR)
    files = sorted(EXAMPLES.glob("*.jpg"))
    assert len(files) == 6
    for file, prediction in zip(files, classifier.predict_batch(files)):
        assert prediction.label == file.name.split("-")[0], file.name
        assert not prediction.none_of_these, (file.name, prediction.similarity)


def test_the_shipped_model_says_none_of_these_to_things_that_are_no_bear():
    classifier = load_model(MODEL_DIR)
    rng = np.random.default_rng(0)
    things = {
        "blank page": Image.new("RGB", (640, 480), "white"),
        "one pixel": Image.new("RGB", (1, 1), (120, 80, 40)),
        "noise": Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)),
        "stripes": Image.fromarray(np.tile(np.repeat([0, 255], 8), 25)[None, :, None].repeat(300, 0).repeat(3, 2)
                                   .astype(np.uint8)),
    }
    for name, image in things.items():
        prediction = classifier.predict(image)
        assert prediction.none_of_these, (name, prediction)


@pytest.fixture(scope="module")
def imagenette():
    folder = SHARED / "imagenette"
    if not folder.is_dir():
        reason = f"needs {folder} (photos of ten things that are no bear)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    return folder


@pytest.mark.slow  # 200 Imagenette photos and the 416 bears through the model: ~2.5 min
def test_the_shipped_model_flags_photos_of_other_things_and_keeps_the_bears(imagenette, real_photos):
    """On 20 photos of each Imagenette class at least 98 % are flagged; of the 416 bears at most 2 % are."""
    classifier = load_model(MODEL_DIR)
    others = [f for folder in sorted(p for p in imagenette.iterdir() if p.is_dir())
              for f in sorted(folder.iterdir())[:20]]
    bears = sorted(real_photos.rglob("*.jpg"))
    flagged_others = sum(p.none_of_these for p in predict_all(classifier, others))
    flagged_bears = sum(p.none_of_these for p in predict_all(classifier, bears))
    assert flagged_others >= 0.98 * len(others), (flagged_others, len(others))
    assert flagged_bears <= 0.02 * len(bears), (flagged_bears, len(bears))


def predict_all(classifier, files):
    return [p for start in range(0, len(files), 32) for p in classifier.predict_batch(files[start:start + 32])]


def test_the_card_records_how_none_of_these_was_calibrated():
    settings = read_card(MODEL_DIR)["none_of_these"]
    assert settings["method"] and settings["k"] >= 1 and 0 < settings["threshold"] < 1
    assert settings["calibration"]["keep"] >= 0.95
