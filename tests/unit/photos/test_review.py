"""train.ipynb shows the app's labels, grouped by label with the model's answer, before they are trained on."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

from PIL import Image  # noqa: E402

from picsort.foundation.vocabulary import NONE_LABEL  # noqa: E402
from picsort.photos.labels import LabelStore  # noqa: E402
from picsort.photos.review import show_labelled  # noqa: E402
from picsort.photos.sources import LabelledPhoto, labels_to_review  # noqa: E402
from tests.conftest import EXAMPLES  # noqa: E402


def test_labelled_photos_are_shown_by_label_with_the_models_answer(tmp_path):
    store = LabelStore(tmp_path / "labels", classes=["black", "grizzly", "teddy"])
    store.save((EXAMPLES / "black-1.jpg").read_bytes(), "black", predicted="grizzly",
               probabilities={"black": 0.3, "grizzly": 0.6, "teddy": 0.1})
    store.save((EXAMPLES / "teddy-1.jpg").read_bytes(), NONE_LABEL)
    review = labels_to_review(tmp_path / "labels", tmp_path / "data")
    figure = show_labelled(review)
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert len(titles) == 2
    assert any("model: grizzly 60%" in title for title in titles)
    assert any("no answer recorded" in title for title in titles)
    row_labels = [text.get_text() for axis in figure.axes for text in axis.texts]
    assert row_labels == ["black\n(1)", "none of these\n(1)"]  # none of these comes last


def test_nothing_to_review_says_so(capsys):
    assert show_labelled([]) is None
    assert "No new photos" in capsys.readouterr().out


def test_a_photo_the_model_called_none_of_these_says_so_in_words(tmp_path):
    store = LabelStore(tmp_path / "labels", classes=["black", "grizzly", "teddy"])
    store.save((EXAMPLES / "grizzly-1.jpg").read_bytes(), "grizzly", predicted=NONE_LABEL,
               probabilities={"black": 0.1, "grizzly": 0.2, "teddy": 0.7})
    (photo,) = labels_to_review(tmp_path / "labels", tmp_path / "data")
    figure = show_labelled([photo])
    titles = [axis.get_title() for axis in figure.axes if axis.get_title()]
    assert titles == [f"{photo.path.name[:14]}\nmodel: none of these"]


def test_a_phone_photo_is_shown_upright_as_its_exif_says(tmp_path):
    # Stored 600 wide and 400 high, red in its top-left corner, with EXIF orientation 6: shown turned a quarter
    # clockwise, so taller than wide with the red at the top right, as the app and training see it.
    stored = Image.new("RGB", (600, 400), "white")
    stored.paste((255, 0, 0), (0, 0, 100, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif)
    figure = show_labelled([LabelledPhoto(path, "black", None, None, "0" * 64)])
    (shown,) = [axis.images[0].get_array() for axis in figure.axes if axis.images]
    height, width, _ = shown.shape
    assert height > width and height == 300 and width == 200  # decoded small: shortest side 200, not 400
    red, green, blue = (int(value) for value in shown[5, width - 5])
    assert red > 200 and green < 60 and blue < 60  # the red corner, at the top right
    assert min(int(value) for value in shown[5, 5]) > 200  # white at the top left
