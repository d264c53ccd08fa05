"""The "none of these" check: photos unlike the training photos are flagged, photos of the classes are not."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from picsort.inference.classify import Classifier, load_model
from picsort.inference.none_of_these import REFERENCE_NAME, NoneOfTheseCheck, pooled
from picsort.foundation.folders import MODEL_DIR
from picsort.inference.model import ModelFolderError, read_card
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
    from picsort.inference.none_of_these import choose_threshold

    own = torch.linspace(0.6, 0.9, 101)  # 1st percentile 0.603, median 0.75: spread 0.147
    low, spread = float(torch.quantile(own, 0.01)), 0.75 - float(torch.quantile(own, 0.01))
    # No photos of other things: a whole spread below the 1st percentile, room for photos from other sources.
    assert choose_threshold(own) == pytest.approx(low - spread, abs=1e-4)
    # Other things far below: the lean stands; close below: it rises to flag 99 % of them ...
    assert choose_threshold(own, torch.linspace(0.1, 0.3, 100)) == pytest.approx(low - spread, abs=1e-4)
    assert choose_threshold(own, torch.linspace(0.3, 0.5, 100)) == pytest.approx(0.498, abs=1e-3)
    # ... but never above the 1st percentile less a quarter of the spread: the classes' own photos come first.
    assert choose_threshold(own, torch.linspace(0.5, 0.7, 100)) == pytest.approx(low - spread / 4, abs=1e-4)


def imagenet_world(seed: int = 0):
    """A small stand-in for ImageNet: 20 classes of 64-feature photos (pooled features are all positive, so every
    photo shares a common part and lies near every other in cosine terms), and a linear head that reads them."""
    from picsort.inference.none_of_these import ImageNetHead

    generator = torch.Generator().manual_seed(seed)
    common = 3 * torch.ones(64)
    centres = torch.randn(20, 64, generator=generator)
    weight = 4 * torch.nn.functional.normalize(centres, dim=1)
    head = ImageNetHead(weight, -weight @ common)  # reads what sets a photo apart, not what all share

    def photos(centre: int, count: int) -> torch.Tensor:
        return common + centres[centre] + 0.3 * torch.randn(count, 64, generator=generator)

    return head, photos


def test_with_your_own_photos_alone_a_photo_of_another_thing_is_none_of_these():
    """Three classes, no photos of other things: a photo that ImageNet reads as a class none of the training photos
    was read as is "none of these"; the classes' own new photos are not flagged."""
    from picsort.inference.none_of_these import calibration, resemblance_threshold

    head, photos = imagenet_world()
    reference = torch.cat([photos(c, 32) for c in range(3)])
    held_out = torch.cat([photos(c, 8) for c in range(3)])
    unseen, other_thing = torch.cat([photos(c, 100) for c in range(3)]), photos(7, 100)
    settings = calibration(reference, held_out, torch.empty(0, 64), imagenet=head)

    covered = settings["imagenet"]["covered"]
    assert {0, 1, 2} <= set(covered) and 7 not in covered
    assert settings["imagenet"]["threshold"] == resemblance_threshold(len(covered), 20)
    check = NoneOfTheseCheck(torch.nn.functional.normalize(reference, dim=1), settings["k"], settings["threshold"],
                             imagenet=head, covered=covered, resemblance_threshold=settings["imagenet"]["threshold"])

    def flagged(features):
        similarity = check.similarity_of_pooled(torch.nn.functional.normalize(features, dim=1))
        resemblance = check.resemblance_of_pooled(features)
        return sum(check.is_none_of_these(float(s), float(r)) for s, r in zip(similarity, resemblance)) / len(features)

    assert flagged(other_thing) >= 0.95
    assert flagged(unseen) <= 0.02
    assert float((check.resemblance_of_pooled(other_thing) < settings["imagenet"]["threshold"]).float().mean()) >= 0.95
    assert settings["calibration"]["validation_flagged"] <= 0.05


def test_the_resemblance_threshold_is_a_chance_share_of_the_covered_classes_within_bounds():
    from picsort.inference.none_of_these import CHANCE_FACTOR, RESEMBLANCE_BOUNDS, resemblance_threshold

    assert resemblance_threshold(40, 1000) == pytest.approx(CHANCE_FACTOR * 0.04)
    assert resemblance_threshold(1, 1000) == RESEMBLANCE_BOUNDS[0]    # few photos: not below the floor
    assert resemblance_threshold(900, 1000) == RESEMBLANCE_BOUNDS[1]  # photos of everything: not above the ceiling


def test_photos_of_other_things_only_ever_flag_more():
    """Given photos of other things near the classes, the similarity threshold rises: whatever was flagged without
    them is still flagged, and more of the other things are."""
    from picsort.inference.none_of_these import calibration

    head, photos = imagenet_world(1)
    reference = torch.cat([photos(c, 32) for c in range(3)])
    held_out = torch.cat([photos(c, 8) for c in range(3)])
    near = torch.cat([photos(c, 40) for c in range(3)]) * 0.7 + photos(8, 120) * 0.3  # other things, near them
    without = calibration(reference, held_out, torch.empty(0, 64), imagenet=head)
    given = calibration(reference, held_out, near, imagenet=head)
    assert given["threshold"] >= without["threshold"]
    assert given["imagenet"] == without["imagenet"]
    assert given["calibration"]["other_images"] == 120 and given["calibration"]["others_flagged"] > 0


def test_a_model_folder_keeps_its_imagenet_classifier_and_says_none_of_these_from_it(tmp_path):
    """What `picsort teach` writes (save_weights + the card) loads back with the same check."""
    from picsort.inference.none_of_these import calibration
    from picsort.training.export import save_weights

    head, photos = imagenet_world(2)
    reference = torch.cat([photos(c, 16) for c in range(3)])
    settings = calibration(reference, torch.empty(0, 64), torch.empty(0, 64), imagenet=head)
    save_weights(tmp_path, torch.nn.Linear(2, 2), torch.nn.functional.normalize(reference, dim=1), head)
    loaded = NoneOfTheseCheck.load(tmp_path, {"none_of_these": settings})
    other = photos(min(set(range(20)) - set(settings["imagenet"]["covered"])), 5)[:, :, None, None]
    assert torch.allclose(loaded.imagenet.weight, head.weight, atol=1e-2)
    assert all(loaded.is_none_of_these(1.0, float(r)) for r in loaded.resemblance(other))
    assert not any(loaded.is_none_of_these(1.0, float(r)) for r in loaded.resemblance(photos(0, 5)[:, :, None, None]))
    card = {"none_of_these": {**settings, "imagenet": {**settings["imagenet"]}}}
    (tmp_path / REFERENCE_NAME).write_bytes(__import__("safetensors.torch", fromlist=["save"]).save(
        {"features": torch.zeros(3, 64)}))
    with pytest.raises(ModelFolderError, match="ImageNet"):
        NoneOfTheseCheck.load(tmp_path, card)


def test_the_notebooks_picture_puts_each_score_beside_its_threshold():
    import matplotlib

    matplotlib.use("Agg")
    from picsort.inference.classify import Prediction
    from picsort.inference.none_of_these import plot_scores

    head, _ = imagenet_world()
    check = NoneOfTheseCheck(torch.zeros(1, 64), 5, 0.4, imagenet=head, covered=[0, 1], resemblance_threshold=0.05)
    answer = lambda similarity, resemblance: Prediction("a", 0.9, {"a": 0.9, "b": 0.1}, similarity=similarity,  # noqa: E731
                                                        resemblance=resemblance)
    figure = plot_scores(check, [answer(0.8, 0.9), answer(0.7, 0.6)], [answer(0.2, 0.001)])
    resemblance_axis, similarity_axis = figure.axes
    assert "ImageNet" in resemblance_axis.get_xlabel() and resemblance_axis.get_xscale() == "log"
    assert [line.get_xdata()[0] for line in resemblance_axis.lines] == [0.05]
    assert [line.get_xdata()[0] for line in similarity_axis.lines] == [0.4]
    assert {text.get_text() for text in similarity_axis.get_legend().get_texts()} >= {
        "validation photos (2)", "photos of other things (1)"}
    # A model without the ImageNet classifier: the similarity alone.
    assert len(plot_scores(NoneOfTheseCheck(torch.zeros(1, 64), 5, 0.4), [answer(0.8, 1.0)]).axes) == 1
