"""Choosing the "none of these" settings when a model is made (picsort.training.calibration): the thresholds
flag photos of other things and keep the classes' own, and a model folder loads back with the check they chose."""

from __future__ import annotations

import json

import pytest
import torch

from picsort.inference.backbones import ImageNetHead
from picsort.inference.classify import Classifier
from picsort.inference.model import ModelFolderError
from picsort.inference.none_of_these import REFERENCE_NAME, NoneOfTheseCheck
from picsort.training.calibration import (
    CHANCE_FACTOR,
    RESEMBLANCE_BOUNDS,
    calibration,
    choose_threshold,
    plot_scores,
    resemblance_threshold,
)


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

def test_the_threshold_leans_below_the_validation_photos_and_rises_to_photos_of_other_things():
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
    assert resemblance_threshold(40, 1000) == pytest.approx(CHANCE_FACTOR * 0.04)
    assert resemblance_threshold(1, 1000) == RESEMBLANCE_BOUNDS[0]    # few photos: not below the floor
    assert resemblance_threshold(900, 1000) == RESEMBLANCE_BOUNDS[1]  # photos of everything: not above the ceiling

def test_photos_of_other_things_only_ever_flag_more():
    """Given photos of other things near the classes, the similarity threshold rises: whatever was flagged without
    them is still flagged, and more of the other things are."""
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
