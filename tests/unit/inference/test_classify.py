"""The one classify path (picsort.inference.classify): images in, an answer and every class's probability out.

Served with the shipped model on the example photos; the answers' agreement with fastai is test_model's. The rule
for an answer near an edge (a photo decoded reduced is decoded whole again) is tested here, on every route.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from picsort.foundation.folders import EXAMPLES_DIR, MODEL_DIR
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference import classify
from picsort.inference.batches import classify_files
from picsort.inference.classify import FORWARD_CHUNK, load_model
from picsort.photos.images import DecodedImage, UnusableImageError, image_from_path
from rehearsal.phone_sized import phone_sized

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


# ---- an answer near an edge: from the photo decoded whole ------------------------------------------------------


def answer_to(classifier, picture: Image.Image):
    """The network's answer to exactly this picture (no decoding, no second look)."""
    return classifier.predictions(classifier.to_batch([classifier.to_tensor(picture)]))[0]


@pytest.fixture(scope="module")
def phone_photo(classifier, tmp_path_factory):
    """A sure grizzly as a phone saves it (12 MP, quality 90), and the answers to it decoded reduced and whole."""
    path = tmp_path_factory.mktemp("phone") / "grizzly.jpg"
    phone_sized(Image.open(EXAMPLES_DIR / "grizzly-1.jpg").convert("RGB")).save(path, quality=90)
    decoded = classifier.decode(path)
    assert decoded.reduced
    answers = {"reduced": answer_to(classifier, decoded.image), "whole": answer_to(classifier, image_from_path(path))}
    whole, reduced = answers["whole"].probabilities, answers["reduced"].probabilities
    apart = max(abs(whole[c] - reduced[c]) for c in classifier.classes)
    assert apart > 1e-5  # else these tests could not tell the two answers apart
    assert not classifier.near_an_edge(answers["reduced"])  # sure: only a moved edge makes it near one
    return path, answers


def every_route(classifier, photo):
    """The photo's answers through each way into the classify path: the API with every kind of input, the app's
    call, the CLI's files on decoding threads."""
    with open(photo, "rb") as file:
        api = classifier.predict_batch([photo, str(photo), photo.read_bytes(), file])
    data = photo.read_bytes()
    return {
        "predict": [classifier.predict(photo)],
        "predict_batch": api,
        "predict, a PIL image": [classifier.predict(Image.open(photo))],
        "classify (the app's call)": [classifier.classify(data, name="phone.jpg").prediction],
        "classify_files": [answer for _, answer in classify_files([photo, photo, photo], classifier, batch_size=2)],
    }


@pytest.mark.parametrize("edge, expected", [
    ({}, "reduced"),
    ({"DECODE_WHOLE_BELOW": 1.01}, "whole"),
    ({"DECODE_WHOLE_BELOW": 0.0, "DECODE_WHOLE_WITHIN": 2.0}, "whole"),
], ids=["a sure answer stands", "a top probability under DECODE_WHOLE_BELOW",
        "a similarity within DECODE_WHOLE_WITHIN of the 'none of these' threshold"])
def test_a_reduced_photo_s_answer_near_an_edge_is_the_whole_photo_s_on_every_route(
        classifier, phone_photo, monkeypatch, edge, expected):
    photo, answers = phone_photo
    assert classifier.none_of_these.threshold is not None  # else the last case would test nothing
    for name, value in edge.items():
        monkeypatch.setattr(classify, name, value)
    for route, predictions in every_route(classifier, photo).items():
        assert predictions, route
        wanted = answers[expected]
        if route == "predict, a PIL image" and expected == "reduced":  # reduced from the pixels, not drafted
            wanted = answer_to(classifier, classifier.to_image(Image.open(photo)))
        for prediction in predictions:
            assert prediction.probabilities == pytest.approx(wanted.probabilities, abs=1e-6), route


def test_a_photo_decoded_whole_the_first_time_is_not_decoded_again(classifier, monkeypatch):
    photo = EXAMPLES_DIR / "grizzly-1.jpg"  # small enough to be decoded whole
    decodes = []
    real = classify.image_from_any
    monkeypatch.setattr(classify, "image_from_any", lambda item, *a, **k: decodes.append(item) or real(item, *a, **k))
    monkeypatch.setattr(classify, "DECODE_WHOLE_BELOW", 1.01)  # every answer near an edge
    own = answer_to(classifier, image_from_path(photo))
    answers = [classifier.predict(photo), *(answer for _, answer in classify_files([photo], classifier))]
    assert all(answer.probabilities == own.probabilities for answer in answers)
    app = classifier.classify(photo.read_bytes())
    assert decodes == [] and app.prediction.probabilities == own.probabilities and not app.reduced


def test_a_photo_gone_before_its_second_look_keeps_its_reduced_answer(classifier, phone_photo, monkeypatch, tmp_path):
    photo, answers = phone_photo
    copy = tmp_path / photo.name
    copy.write_bytes(photo.read_bytes())
    real = classifier.decode

    def decode_then_lose(item, name=None):
        decoded = real(item, name)
        copy.unlink()
        return decoded

    monkeypatch.setattr(classifier, "decode", decode_then_lose)
    monkeypatch.setattr(classify, "DECODE_WHOLE_BELOW", 1.01)
    prediction = classifier.classify(copy).prediction
    assert not copy.exists()
    assert prediction.probabilities == pytest.approx(answers["reduced"].probabilities, abs=1e-6)


@pytest.mark.parametrize("near_an_edge", [False, True], ids=["sure answers", "every answer looked at again"])
def test_one_photo_s_call_and_the_batch_path_give_identical_answers(classifier, phone_photo, monkeypatch,
                                                                      near_an_edge):
    """`classify` (one photo, no stream) and `predict_batch` (the stream) answer by the same rule, to the bit."""
    if near_an_edge:
        monkeypatch.setattr(classify, "DECODE_WHOLE_BELOW", 1.01)
    photo, _ = phone_photo
    for item in [*EXAMPLES, photo]:
        data = item.read_bytes()
        one = classifier.classify(data)
        (batch,) = classifier.predict_batch([data])
        assert one.prediction.probabilities == batch.probabilities, item.name  # exactly: not approx
        assert (one.prediction.similarity, one.prediction.resemblance) == (batch.similarity, batch.resemblance)
        assert one.prediction.label == batch.label and one.prediction.unsure == batch.unsure
        assert classifier.predict(data).probabilities == batch.probabilities


def test_classify_hands_back_the_picture_it_decoded_once(classifier, phone_photo, monkeypatch):
    photo, _ = phone_photo
    decoded = classifier.decode(photo)
    calls = []
    real = classifier.decode
    monkeypatch.setattr(classifier, "decode", lambda item, name=None: calls.append(name) or real(item, name))
    with open(photo, "rb") as file:
        result = classifier.classify(file)
    assert calls == [photo.name]  # one decode, named as the file is
    assert result.reduced and result.image.size == decoded.image.size
    assert np.array_equal(np.asarray(result.image), np.asarray(decoded.image))
    with pytest.raises(UnusableImageError, match="not-a-photo.jpg"):
        classifier.classify(b"no image here", name="not-a-photo.jpg")


def test_the_decoded_reduced_value_comes_from_the_decoder(classifier, phone_photo):
    photo, _ = phone_photo
    assert classifier.decode(photo).reduced and not classifier.decode(EXAMPLES_DIR / "grizzly-1.jpg").reduced
    prepared = classifier.prepare(photo)
    assert prepared.reduced and prepared.source == photo
    taken = classifier.prepare(photo, DecodedImage(classifier.to_image(EXAMPLES[0]), reduced=False))
    assert not taken.reduced  # a decoded image given is used as it says
