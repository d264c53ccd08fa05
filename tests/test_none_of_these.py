"""The "none of these" check: photos unlike the training photos are flagged, photos of the classes are not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from picsort.classify import Classifier, load_model
from picsort.none_of_these import REFERENCE_NAME, NoneOfTheseCheck, pooled
from picsort.folders import MODEL_DIR
from picsort.model import ModelFolderError, read_card
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


def test_export_keeps_the_training_photos_features_and_a_calibrated_threshold(small_model):
    card = json.loads((small_model / "model.json").read_text())
    settings = card["none_of_these"]
    assert (small_model / REFERENCE_NAME).exists()
    classifier = Classifier(small_model)
    assert classifier.none_of_these.reference.shape[0] == settings["reference_images"] > 0
    calibration = settings["calibration"]
    # The threshold keeps `keep` of the validation photos: at most one photo more may fall below it.
    assert calibration["validation_flagged"] <= 1 - calibration["keep"] + 1 / calibration["validation_images"]
    assert (small_model / REFERENCE_NAME).stat().st_mode & 0o777 == 0o644


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


def test_the_threshold_leans_below_the_validation_photos_and_rises_to_photos_of_other_things():
    from picsort.none_of_these import choose_threshold

    own = torch.linspace(0.6, 0.9, 101)  # 1st percentile 0.603, median 0.75: spread 0.147
    low, spread = float(torch.quantile(own, 0.01)), 0.75 - float(torch.quantile(own, 0.01))
    # No photos of other things: a whole spread below the 1st percentile, room for photos from other sources.
    assert choose_threshold(own) == pytest.approx(low - spread, abs=1e-4)
    # Other things far below: the lean stands; close below: it rises to flag 99 % of them ...
    assert choose_threshold(own, torch.linspace(0.1, 0.3, 100)) == pytest.approx(low - spread, abs=1e-4)
    assert choose_threshold(own, torch.linspace(0.3, 0.5, 100)) == pytest.approx(0.498, abs=1e-3)
    # ... but never above the 1st percentile less a quarter of the spread: the classes' own photos come first.
    assert choose_threshold(own, torch.linspace(0.5, 0.7, 100)) == pytest.approx(low - spread / 4, abs=1e-4)


def test_without_photos_of_other_things_the_taught_classes_stand_in_for_them():
    """Three classes of photos, each a cluster; a fourth cluster as far from them as they are from each other is
    "none of these" once the classes score against each other, and not by the lean rule alone."""
    from picsort.none_of_these import calibration

    generator = torch.Generator().manual_seed(0)
    common = torch.randn(64, generator=generator)  # what photos share (pooled features are all positive)
    centres = torch.nn.functional.normalize(0.5 * common + torch.randn(4, 64, generator=generator), dim=1)

    def photos(centre: int, count: int) -> torch.Tensor:
        # some photos far off their class's centre (a long tail, as real ones): the lean rule goes far below
        spread = 0.08 + 0.17 * torch.rand(count, 1, generator=generator) ** 2
        return torch.nn.functional.normalize(centres[centre] + spread * torch.randn(count, 64, generator=generator),
                                             dim=1)

    reference = torch.cat([photos(c, 32) for c in range(3)])
    labels = [c for c in range(3) for _ in range(32)]
    held_out = torch.cat([photos(c, 8) for c in range(3)])
    held_out_labels = [c for c in range(3) for _ in range(8)]
    unseen, other_thing = torch.cat([photos(c, 100) for c in range(3)]), photos(3, 100)
    no_others = torch.empty(0, 64)

    lean = calibration(reference, held_out, no_others)
    stand_in = calibration(reference, held_out, no_others, labels=labels, held_out_labels=held_out_labels)
    index = NoneOfTheseCheck(reference, stand_in["k"])
    flagged = lambda scores, settings: float((scores < settings["threshold"]).float().mean())  # noqa: E731
    assert flagged(index.similarity_of_pooled(other_thing), lean) < 0.5
    assert flagged(index.similarity_of_pooled(other_thing), stand_in) >= 0.9
    assert flagged(index.similarity_of_pooled(unseen), stand_in) <= 0.05
    assert stand_in["calibration"]["other_classes_scores"] == 96 + 24
    # Photos of other things, when given, are the evidence: the classes do not stand in for them.
    given = calibration(reference, held_out, photos(3, 20), labels=labels, held_out_labels=held_out_labels)
    assert given["calibration"]["other_images"] == 20 and given["calibration"]["other_classes_scores"] == 0
