"""The one classify path (picsort.classify): images in, an answer and every class's probability out.

Served with the shipped model on the example photos; the answers' agreement with fastai is test_model's, and the
answer near an edge (a reduced photo decoded whole again) is test_model's test_an_answer_near_an_edge_is_the_whole_photo_s.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from picsort.classify import FORWARD_CHUNK, load_model
from picsort.folders import EXAMPLES_DIR, MODEL_DIR
from picsort.images import UnusableImageError
from picsort.labels import NONE_LABEL

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.jpg"))


@pytest.fixture(scope="module")
def classifier():
    return load_model(MODEL_DIR)


def test_every_kind_of_input_gets_the_same_answer(classifier):
    photo = EXAMPLES_DIR / "teddy-1.jpg"
    expected = classifier.predict(photo)
    assert expected.label == "teddy"
    with open(photo, "rb") as file:
        items = [str(photo), photo.read_bytes(), memoryview(photo.read_bytes()), file, Image.open(photo),
                 np.asarray(Image.open(photo).convert("RGB"))]
        for item in items:
            assert classifier.predict(item).probabilities == pytest.approx(expected.probabilities, abs=1e-6), type(item)


def test_an_image_gets_the_same_answer_alone_or_in_a_large_drop(classifier):
    """Batches run FORWARD_CHUNK images per pass; where an image lands in the drop must not change its answer."""
    files = (EXAMPLES * (2 * FORWARD_CHUNK + 3))[:2 * FORWARD_CHUNK + 3]  # a last pass that is not full
    together = classifier.predict_batch(files)
    assert len(together) == len(files)
    alone = {file: classifier.predict(file) for file in EXAMPLES}
    for file, prediction in zip(files, together):
        assert prediction.label == alone[file].label
        assert prediction.probabilities == pytest.approx(alone[file].probabilities, abs=1e-5)


def test_the_api_answers_none_for_a_picture_of_no_bear_and_names_the_closest_class_beside_it(classifier):
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8))
    nothing = classifier.predict(noise)
    assert nothing.none_of_these and nothing.label == NONE_LABEL
    assert nothing.closest == max(nothing.probabilities, key=nothing.probabilities.get)
    assert nothing.probability == nothing.probabilities[nothing.closest]
    with pytest.raises(KeyError):  # never quietly the probability of a class that is not the answer
        nothing.probabilities[nothing.label]
    assert repr(nothing).startswith(f"Prediction(label='{NONE_LABEL}', closest='{nothing.closest}'")
    bear = classifier.predict(EXAMPLES_DIR / "grizzly-1.jpg")
    assert bear.label == bear.closest == "grizzly" and bear.probabilities[bear.label] == bear.probability


def test_the_threshold_decides_unsure_and_nothing_else(classifier):
    photo = EXAMPLES_DIR / "black-1.jpg"
    batch = classifier.to_batch([classifier.to_tensor(classifier.to_image(photo))])
    (never,) = classifier.predictions(batch, threshold=0.0)
    (always,) = classifier.predictions(batch, threshold=1.01)
    assert not never.unsure and always.unsure
    assert never.probabilities == always.probabilities and never.label == always.label
    assert classifier.predict(photo).unsure == (never.probability < classifier.threshold)  # the card's by default


@pytest.mark.parametrize("item, words", [
    (b"not a picture at all", "is not an image"),
    (EXAMPLES_DIR / "no-such-photo.jpg", "'no-such-photo.jpg' was not found"),
], ids=["bytes that are no image", "a missing file"])
def test_an_unusable_image_raises_a_message_for_the_user(classifier, item, words):
    with pytest.raises(UnusableImageError, match=words):
        classifier.predict_batch([EXAMPLES[0], item])


def test_a_model_folder_is_loaded_once_per_process(classifier):
    assert load_model(MODEL_DIR) is classifier and load_model(str(MODEL_DIR) + "/") is classifier


def test_why_gives_a_heatmap_the_size_of_the_picture_over_the_picture(classifier):
    image = classifier.to_image(EXAMPLES_DIR / "grizzly-1.jpg")
    heatmap = classifier.heatmap(image)
    assert heatmap.shape == (image.height, image.width)
    assert 0 <= heatmap.min() and heatmap.max() <= 1 and heatmap.max() > 0
    overlay = classifier.explain(image)
    assert overlay.size == image.size and overlay.tobytes() != image.tobytes()
    assert not np.allclose(classifier.heatmap(image, "teddy"), heatmap)  # each class has its own reasons
