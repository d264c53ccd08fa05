"""The web app's logic, driven the way the upload widget drives it (no browser needed)."""

from __future__ import annotations

import datetime
import hashlib
import html
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pytest
from PIL import Image

import picsort.app as app_module
from picsort.app import ClassifierApp, build_app, labels_dir
from picsort.classify import load_model
from picsort.images import MAX_UPLOAD_BYTES
from picsort.labels import LabelStore

REPO = Path(__file__).resolve().parent.parent


# ---- helpers ---------------------------------------------------------------------------------------------


def entry(name: str, data: bytes, kind: str = "image/jpeg") -> dict:
    """An upload entry shaped like ipywidgets 8's (`content` is a memoryview)."""
    return {"name": name, "type": kind, "size": len(data), "content": memoryview(data),
            "last_modified": datetime.datetime(2024, 5, 1, tzinfo=datetime.timezone.utc)}


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def walk(widget: widgets.Widget):
    """Every widget inside `widget`, itself included."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


def texts(widget: widgets.Widget) -> str:
    """What a person reads in a widget: HTML and label text and button captions, tags removed."""
    parts = []
    for item in walk(widget):
        if isinstance(item, (widgets.HTML, widgets.Label)):
            parts.append(html.unescape(re.sub(r"<style>.*?</style>|<[^>]+>", "", item.value, flags=re.S)))
        elif isinstance(item, widgets.Button):
            parts.append(item.description)
    return "\n".join(parts)


def with_class(widget: widgets.Widget, css_class: str) -> list[widgets.Widget]:
    return [item for item in walk(widget) if css_class in item._dom_classes]


def stored_images(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix != ".jsonl"]


# ---- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return load_model()


@pytest.fixture
def labels(tmp_path) -> Path:
    return tmp_path / "labels"


@pytest.fixture
def app(classifier, labels) -> ClassifierApp:
    return ClassifierApp(classifier, LabelStore(labels, classifier.classes))


@pytest.fixture(scope="module")
def photo_files(photos) -> list[Path]:
    """A few photos of each class (real ones where there are some)."""
    folder, _ = photos
    chosen = []
    for class_folder in sorted(p for p in folder.iterdir() if p.is_dir()):
        chosen += sorted(class_folder.glob("*.jpg"))[:2]
    assert chosen, f"no photos in {folder}"
    return chosen


@pytest.fixture(scope="module")
def photo(photo_files) -> bytes:
    return photo_files[0].read_bytes()


# ---- classifying -----------------------------------------------------------------------------------------


def test_one_photo_gets_a_card_with_the_class_and_a_bar_per_class(app, classifier, photo):
    cards = app.handle_upload([entry("bear.jpg", photo)])

    assert len(cards) == 1 and app.cards == cards
    card = cards[0]
    assert card.ok and card.problem is None
    prediction = card.prediction
    assert prediction.label in classifier.classes
    text = texts(card.widget)
    assert "bear.jpg" in text
    assert f"{prediction.label} — {app_module.percent(prediction.probability)}" in text
    bars = with_class(card.widget, "picsort-bar")
    assert len(bars) == len(classifier.classes)
    for bar, name in zip(bars, classifier.classes):
        progress = [w for w in walk(bar) if isinstance(w, widgets.FloatProgress)]
        assert len(progress) == 1
        assert progress[0].value == pytest.approx(prediction.probabilities[name])
        assert name in texts(bar)
    # The thumbnail is a small JPEG, the right way up (image_from_bytes already applied EXIF).
    (thumbnail,) = with_class(card.widget, "picsort-thumbnail")
    assert thumbnail.format == "jpeg"
    shown = Image.open(io.BytesIO(thumbnail.value))
    assert max(shown.size) <= app_module.THUMBNAIL_SIZE
    # One label button per class, the model's guess marked.
    assert set(card.label_buttons) == set(classifier.classes)
    assert card.label_buttons[prediction.label].description == f"✓ {prediction.label}"
    # The card is on the page.
    assert app.cards_box.children == (card.widget,)


def test_many_photos_are_classified_in_one_batch_least_sure_first(app, classifier, photo_files, monkeypatch):
    calls = []
    original = classifier.predict_batch

    def counting(items):
        items = list(items)
        calls.append(len(items))
        return original(items)

    monkeypatch.setattr(classifier, "predict_batch", counting)
    cards = app.handle_upload([entry(p.name, p.read_bytes()) for p in photo_files])

    assert calls == [len(photo_files)]  # one forward pass for the whole upload
    assert all(card.ok for card in cards)
    probabilities = [card.prediction.probability for card in cards]
    assert probabilities == sorted(probabilities)
    assert [c.widget for c in cards] == list(app.cards_box.children)
    assert f"{len(photo_files)} photos classified" in app.summary.value


def test_a_new_upload_goes_on_top_of_the_earlier_cards(app, photo_files):
    first = app.handle_upload([entry("first.jpg", photo_files[0].read_bytes())])
    second = app.handle_upload([entry("second.jpg", photo_files[1].read_bytes())])
    assert app.cards == second + first


def test_old_cards_are_dropped_past_the_limit(app, photo, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_CARDS", 3)
    for number in range(5):
        app.handle_upload([entry(f"{number}.jpg", photo)])
    assert [card.name for card in app.cards] == ["4.jpg", "3.jpg", "2.jpg"]
    assert len(app.cards_box.children) == 3


def test_old_cards_are_dropped_when_they_hold_too_many_bytes_but_never_the_newest(app, photo, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_KEPT_BYTES", len(photo) * 2)
    app.handle_upload([entry("old.jpg", photo)])
    app.handle_upload([entry(f"new-{n}.jpg", photo) for n in range(3)])  # over the limit on its own
    assert sorted(card.name for card in app.cards) == ["new-0.jpg", "new-1.jpg", "new-2.jpg"]


def test_an_unsure_answer_says_the_picture_may_be_none_of_the_classes(app, classifier, photo, monkeypatch):
    monkeypatch.setattr(classifier, "threshold", 1.01)  # nothing can be that sure
    (card,) = app.handle_upload([entry("odd.jpg", photo)])
    assert card.prediction.unsure
    assert "not sure" in texts(card.widget)
    assert "may be none of these" in texts(card.widget)
    assert "picsort-card-unsure" in card.widget._dom_classes


def test_a_sure_answer_has_no_unsure_note(app, classifier, photo, monkeypatch):
    monkeypatch.setattr(classifier, "threshold", 0.0)
    (card,) = app.handle_upload([entry("clear.jpg", photo)])
    assert not card.prediction.unsure
    assert "not sure" not in texts(card.widget)


# ---- bad uploads -----------------------------------------------------------------------------------------


def bad_files(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, words the message must contain)."""
    return {
        "empty.jpg": (b"", "is empty"),
        "truncated.jpg": (photo[: len(photo) // 3], "damaged or incomplete"),
        "notes.txt": (b"these are my notes, not a picture\n" * 20, "not an image"),
        "huge.jpg": (photo[:2] + bytes(MAX_UPLOAD_BYTES + 1), "larger than"),
    }


def test_each_bad_file_gets_its_own_card_and_the_good_ones_are_still_classified(app, labels, photo_files):
    bad = bad_files(photo_files[0].read_bytes())
    good = {p.name: p.read_bytes() for p in photo_files[:3]}
    entries = [entry(name, data) for name, (data, _) in bad.items()]
    entries.insert(2, entry(*next(iter(good.items()))))
    entries += [entry(name, data) for name, data in list(good.items())[1:]]

    cards = app.handle_upload(entries)

    by_name = {card.name: card for card in cards}
    assert set(by_name) == set(bad) | set(good)
    for name, (_, words) in bad.items():
        card = by_name[name]
        assert not card.ok and card.data is None
        text = texts(card.widget)
        assert words in card.problem and words in text
        assert f"'{name}'" in text  # the message names the file
        assert "Traceback" not in text
        assert not card.label_buttons  # nothing to save
        assert "picsort-card-problem" in card.widget._dom_classes
    for name in good:
        assert by_name[name].ok
    # Problems first (they need attention), then results least sure first.
    assert [card.ok for card in cards] == [False] * len(bad) + [True] * len(good)
    assert "could not be used" in app.summary.value
    assert stored_images(labels) == []


def test_an_unexpected_failure_shows_a_plain_message_not_a_traceback(app, classifier, photo, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(classifier, "predict_batch", broken)
    monkeypatch.setattr(classifier, "predict", broken)
    (card,) = app.handle_upload([entry("bear.jpg", photo)])
    assert not card.ok
    text = texts(card.widget)
    assert "Something went wrong with 'bear.jpg'" in text
    assert "cheese" not in text and "Traceback" not in text


def test_one_failing_picture_does_not_lose_the_others(app, classifier, photo_files, monkeypatch):
    """If the batch fails, each picture is tried alone so only the culprit gets the generic message."""
    original_batch = classifier.predict_batch
    culprit = photo_files[1].read_bytes()
    culprit_size = Image.open(io.BytesIO(culprit)).size
    if Image.open(photo_files[0]).size == culprit_size:
        pytest.skip("the two photos have the same size")

    def batch_fails(items):
        raise RuntimeError("batch failed")

    def predict(image):
        if image.size == culprit_size:
            raise RuntimeError("this one")
        return original_batch([image])[0]

    monkeypatch.setattr(classifier, "predict_batch", batch_fails)
    monkeypatch.setattr(classifier, "predict", predict)
    cards = app.handle_upload([entry("a.jpg", photo_files[0].read_bytes()), entry("b.jpg", culprit)])
    by_name = {card.name: card for card in cards}
    assert by_name["a.jpg"].ok
    assert not by_name["b.jpg"].ok


def test_file_names_are_shown_as_text_never_as_markup(app, photo):
    name = '<img src=x onerror="alert(1)">.jpg'
    (card,) = app.handle_upload([entry(name, photo)])
    markup = "".join(w.value for w in walk(card.widget) if isinstance(w, widgets.HTML))
    assert "<img" not in markup
    assert "&lt;img" in markup
    (bad,) = app.handle_upload([entry(name, b"")])
    assert "<img" not in "".join(w.value for w in walk(bad.widget) if isinstance(w, widgets.HTML))


# ---- unusual but valid pictures --------------------------------------------------------------------------


def _noise(mode: str, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).convert(mode)


def _sixteen_bit() -> bytes:
    values = np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)
    image = Image.fromarray(values)
    assert image.mode.startswith("I;16")
    return encode(image, "PNG")


def _animated_gif() -> bytes:
    frames = [_noise("RGB").convert("P"), Image.new("P", (64, 48), 3)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


UNUSUAL = {
    "cmyk.jpg": lambda: encode(_noise("CMYK"), "JPEG"),
    "sixteen-bit.png": _sixteen_bit,
    "gray.png": lambda: encode(_noise("L"), "PNG"),
    "alpha.png": lambda: encode(_noise("RGBA"), "PNG"),
    "animated.gif": _animated_gif,
    "large.jpg": lambda: encode(_noise("RGB").resize((5000, 4000)), "JPEG", quality=70),
    "one-pixel.png": lambda: encode(Image.new("RGB", (1, 1), (120, 80, 40)), "PNG"),
    "tall.png": lambda: encode(_noise("RGB", size=(20, 900)), "PNG"),
}


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_valid_pictures_are_classified(app, classifier, name):
    data = UNUSUAL[name]()
    (card,) = app.handle_upload([entry(name, data)])
    assert card.ok, card.problem
    assert card.prediction.label in classifier.classes
    (thumbnail,) = with_class(card.widget, "picsort-thumbnail")
    shown = Image.open(io.BytesIO(thumbnail.value))
    assert max(shown.size) <= app_module.THUMBNAIL_SIZE
    assert min(shown.size) >= 1


def test_unusual_pictures_in_one_upload_share_one_batch(app):
    cards = app.handle_upload([entry(name, make()) for name, make in UNUSUAL.items()])
    assert all(card.ok for card in cards)


# ---- labelling -------------------------------------------------------------------------------------------


def manifest(labels: Path) -> list[dict]:
    return [json.loads(line) for line in (labels / "manifest.jsonl").read_text().splitlines()]


def test_confirming_the_guess_saves_the_picture_with_its_label(app, classifier, labels, photo):
    (card,) = app.handle_upload([entry("my bear.jpg", photo)])
    guess = card.prediction.label

    card.label_buttons[guess].click()

    digest = hashlib.sha256(photo).hexdigest()
    saved = labels / guess / f"{digest}.jpg"
    assert saved.read_bytes() == photo
    (line,) = manifest(labels)
    assert line["label"] == guess and line["predicted"] == guess
    assert line["original_name"] == "my bear.jpg"
    assert line["sha256"] == digest
    assert line["probabilities"] == pytest.approx(card.prediction.probabilities)
    assert card.saved_as == guess
    assert f"Saved as {guess}" in texts(card.widget)
    assert "confirmed" in texts(card.widget)
    assert card.label_buttons[guess].button_style == "success"
    assert f"{guess}: 1" in texts(app.counts)


def test_correcting_to_another_class_moves_the_picture(app, classifier, labels, photo):
    (card,) = app.handle_upload([entry("bear.jpg", photo)])
    guess = card.prediction.label
    other = next(name for name in classifier.classes if name != guess)
    digest = hashlib.sha256(photo).hexdigest()

    card.label_buttons[guess].click()
    card.label_buttons[other].click()

    assert not (labels / guess / f"{digest}.jpg").exists()
    assert (labels / other / f"{digest}.jpg").read_bytes() == photo
    lines = manifest(labels)
    assert [line["label"] for line in lines] == [guess, other]
    assert lines[-1]["predicted"] == guess
    assert LabelStore(labels).label_of(digest) == other
    text = texts(card.widget)
    assert f"Saved as {other}" in text and f"corrected from {guess}" in text
    assert card.label_buttons[other].button_style == "success"
    assert card.label_buttons[guess].button_style == "info"  # still marked as the model's guess
    counts = texts(app.counts)
    assert f"{other}: 1" in counts and f"{guess}: 0" in counts


def test_counts_are_shown_per_class_and_update_after_each_save(app, classifier, labels, photo_files):
    assert all(f"{name}: 0" in texts(app.counts) for name in classifier.classes)
    cards = app.handle_upload([entry(p.name, p.read_bytes()) for p in photo_files[:3]])
    target = classifier.classes[0]
    for number, card in enumerate(cards, start=1):
        card.label_buttons[target].click()
        assert f"{target}: {number}" in texts(app.counts)
        assert f"{number} {target} picture" in texts(card.widget)
    assert len(stored_images(labels)) == len(set(p.read_bytes() for p in photo_files[:3]))


def test_counts_include_pictures_labelled_before_the_page_opened(classifier, labels, photo):
    LabelStore(labels, classifier.classes).save(photo, classifier.classes[-1])
    app = ClassifierApp(classifier, LabelStore(labels, classifier.classes))
    assert f"{classifier.classes[-1]}: 1" in texts(app.counts)


def test_a_failed_save_says_so_on_the_card(app, photo, monkeypatch):
    (card,) = app.handle_upload([entry("bear.jpg", photo)])

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app.store, "save", disk_full)
    card.label_buttons[card.prediction.label].click()
    text = texts(card.widget)
    assert "Something went wrong with 'bear.jpg'" in text
    assert "Saved as" not in text and card.saved_as is None


# ---- explaining ------------------------------------------------------------------------------------------


def test_why_shows_a_heatmap_and_hides_it_again(app, photo):
    (card,) = app.handle_upload([entry("bear.jpg", photo)])
    assert not with_class(card.widget, "picsort-heatmap")

    card.why_button.click()

    (heatmap,) = with_class(card.widget, "picsort-heatmap")
    assert isinstance(heatmap, widgets.Image) and heatmap.format == "jpeg"
    picture = Image.open(io.BytesIO(heatmap.value))
    assert max(picture.size) <= app_module.HEATMAP_SIZE
    assert card.prediction.label in texts(card.widget)
    assert card.why_button.description == "Hide why"

    card.why_button.click()
    assert not with_class(card.widget, "picsort-heatmap")
    assert card.why_button.description == "Why?"


# ---- the upload widget and the page ----------------------------------------------------------------------


def test_uploading_through_the_widget_classifies_and_resets_it(app, photo):
    app.upload.value = (entry("bear.jpg", photo), entry("empty.jpg", b""))
    assert {card.name for card in app.cards} == {"bear.jpg", "empty.jpg"}
    assert app.upload.value == ()  # so the same file can be uploaded again
    app.upload.value = (entry("bear.jpg", photo),)
    assert [card.name for card in app.cards].count("bear.jpg") == 2


def test_the_upload_accepts_many_images(app):
    assert app.upload.accept == "image/*"
    assert app.upload.multiple


def test_the_page_says_what_it_recognises_and_what_it_does_not(app, classifier):
    intro = texts(app.widget)
    for name in classifier.classes:
        assert name in intro
    assert "any picture gets one of them" in intro


def test_build_app_uses_the_labels_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PICSORT_LABELS_DIR", str(tmp_path / "from-env"))
    assert labels_dir() == tmp_path / "from-env"
    assert labels_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.delenv("PICSORT_LABELS_DIR")
    assert labels_dir() == REPO / "labels"
    page = build_app(labels_folder=tmp_path / "given")
    assert isinstance(page, widgets.VBox) and "picsort-app" in page._dom_classes
    assert not (tmp_path / "given").exists()  # nothing written until someone labels a picture


def test_importing_the_app_does_not_import_fastai():
    code = "import picsort.app, sys; assert not any(m.startswith('fastai') for m in sys.modules), 'fastai imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr
