"""The page's Teach section, driven the way its widgets drive it (no browser): classes named, photos added
through its upload zone, one removed, Train, and the page answering with the new model."""

from __future__ import annotations

import io
import zipfile

import ipywidgets as widgets
import pytest

import picsort.teach_session as teach_session
from picsort.app import ClassifierApp
from picsort.cards import ResultCard
from picsort.classify import load_model
from picsort.labels import NONE_LABEL, LabelStore
from picsort.teaching import TeachError
from tests.conftest import make_synthetic_photos

CLASSES = ("dark", "light")


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """The converted Lite weights under a temp folder, never ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PICSORT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = make_synthetic_photos(tmp_path_factory.mktemp("photos"), classes=("dark", "mid", "light"), per_class=7)
    return {name: [file.read_bytes() for file in sorted((root / name).iterdir())] for name in CLASSES}


@pytest.fixture
def app(tmp_path):
    classifier = load_model()
    page = ClassifierApp(classifier, LabelStore(tmp_path / "labels", classifier.classes))
    yield page
    for card in list(page.cards):
        card.close()


def text(widget: widgets.Widget) -> str:
    """Everything the widget shows as text (HTML values and button labels), its hidden children included."""
    parts = []

    def walk(item):
        if isinstance(item, widgets.HTML) and "picsort-style" not in item._dom_classes:
            parts.append(item.value)
        if isinstance(item, widgets.Button):
            parts.append(item.description)
        for child in getattr(item, "children", ()):
            walk(child)

    walk(widget)
    return "\n".join(parts)


def send(zone, name: str, data: bytes, index: int = 1, total: int = 1) -> None:
    """One file through an upload zone as its page sends it, then the end of the selection."""
    zone._message(zone, {"type": "file", "name": name, "index": index, "total": total, "id": 1}, [memoryview(data)])
    if index == total:
        zone._message(zone, {"type": "done", "total": total, "id": 2}, [])


def test_teach_two_classes_train_and_the_page_answers_with_the_new_model(app, photos, monkeypatch, tmp_path):
    assert app.teach_box.children == ()  # nothing loaded until someone opens it
    app.teach_button.click()
    panel = app.teach_panel
    assert "Teach it your own classes" in text(app.widget) and app.teach_button.description == "Hide Teach"
    assert panel.upload.paste and not app.upload.paste  # a pasted picture goes to the open Teach section
    for name in CLASSES:
        panel.name_input.value = name
        panel.add_button.click()
        for number, data in enumerate(photos[name][:5], 1):
            send(panel.upload, f"{name}-{number}.jpg", data, number, 5)
        assert f"Added 5 photos to {name}" in panel.message.value
    shown = text(panel.widget)
    assert "<b>dark</b>: 5 photos" in shown and "<b>light</b>: 5 photos" in shown
    thumbnails = panel.classes_box.children[0].children[1].children
    assert len(thumbnails) == 5 and isinstance(thumbnails[0].children[0], widgets.Image)

    thumbnails[2].children[1].click()  # a wrong one removed
    assert "Removed dark-3.jpg from dark" in panel.message.value
    assert "<b>dark</b>: 4 photos (add 1 more)" in text(panel.widget)
    panel.train_button.click()
    assert "Not yet: each category needs at least 5 photos" in panel.status.value
    assert "dark has 4, add 1 more" in panel.status.value
    assert app.classifier.classes == ["black", "grizzly", "teddy"]  # still the shipped model

    panel.target.value = "dark"
    send(panel.upload, "dark-6.jpg", photos["dark"][5])
    panel.train_button.click()
    status = panel.status.value
    assert "Trained on 10 photos (dark 5, light 5)" in status and "Held-out accuracy: 100% of 10 photos" in status
    assert "The page now answers with this model" in status

    # The page switched at once: its title, a try-it photo's card and its label buttons are the new classes.
    assert "Is it <b>dark</b> or <b>light</b>?" in app.intro.value
    assert app.examples_button.layout.display == "none"
    for name in CLASSES:
        send(app.upload, f"try-{name}.jpg", photos[name][6])
        (card,) = [card for card in app.cards if card.name == f"try-{name}.jpg"]
        assert isinstance(card, ResultCard) and card.answer == name and card.classes == list(CLASSES)
    # A try-it photo labelled with a taught class joins the taught photos (the Teach folder), not the shared labels.
    assert "Saved as light" in app._save_label(app.cards[0], "light")
    assert "light: <b>6</b>" in app.counts.value and str(tmp_path / "taught") in app.counts.value
    assert not (tmp_path / "labels" / "light").exists()
    # One labelled "none of these" is a photo of another thing: the next Train sets the threshold on it too.
    assert "Saved as none of these" in app._save_label(app.cards[1], NONE_LABEL)
    panel.train_button.click()
    assert "Trained on 11 photos (dark 5, light 6)" in panel.status.value
    assert "set on 1 photo labelled none of these" in panel.status.value
    assert panel.trained.fitted.card["none_of_these"]["calibration"]["other_images"] == 1

    # Download model: a zipped model folder.
    name, data, note = panel.model_zip()
    assert name.endswith(".zip") and "PICSORT_MODEL_DIR=" in note
    assert sorted(n.split("/")[1] for n in zipfile.ZipFile(io.BytesIO(data)).namelist()) == [
        "model.json", "model.safetensors", "reference.safetensors"]

    app.teach_button.click()  # closed again: pastes go back to the try-it zone
    assert app.teach_box.layout.display == "none" and app.upload.paste and not panel.upload.paste


def test_the_teach_section_says_what_is_wrong_in_plain_words(app, photos):
    app.toggle_teach()
    panel = app.teach_panel
    send(panel.upload, "first.jpg", photos["dark"][0])
    assert "Add a class first" in panel.message.value
    panel.add_class("none")
    assert "kept for photos that are none of the classes" in panel.message.value
    panel.start_from_model()
    assert panel.session.classes == ["black", "grizzly", "teddy"] and panel.target.value == "black"
    send(panel.upload, "notes.txt", b"just some words")
    assert "notes.txt" in panel.message.value and "picsort-error" in panel.message.value
    panel.upload._message(panel.upload, {"type": "too_large", "name": "huge.jpg", "size": 10**9, "index": 1,
                                         "total": 1, "id": 3}, [])
    assert "huge.jpg was not added: it is larger than the limit" in panel.message.value
    panel.remove_class("teddy")
    assert panel.session.classes == ["black", "grizzly"] and "teddy" not in text(panel.classes_box)
    panel.train_button.click()
    assert "Not yet: no photos of black, grizzly" in panel.status.value
    assert "Train a model first" in str(pytest.raises(Exception, panel.model_zip).value)
    assert "Traceback" not in text(app.widget)


def test_without_the_packages_teaching_needs_the_section_says_what_to_install(app, monkeypatch):
    def missing(_backbone):
        raise TeachError("picsort teach needs scikit-learn: pip install scikit-learn (requirements.txt pins them)")

    monkeypatch.setattr(teach_session, "_check_packages", missing)
    app.teach_button.click()
    assert "Teaching cannot start here" in text(app.teach_box) and "pip install scikit-learn" in text(app.teach_box)


def test_a_camera_photo_goes_to_the_chosen_class_and_a_forged_one_is_refused(app, photos, monkeypatch):
    app.toggle_teach()
    panel = app.teach_panel
    acks = []
    monkeypatch.setattr(panel.camera, "send", lambda content, buffers=None: acks.append(content))
    assert panel.camera.side == 300  # Lite2 squishes to 300 px and crops 260: no larger photo is kept
    panel.add_class("dark")
    panel.camera._message(panel.camera, {"type": "photo", "name": "camera-1.jpg", "id": 4},
                          [memoryview(photos["dark"][0])])
    assert acks == [{"type": "ack", "id": 4}] and panel.session.counts() == {"dark": 1}
    assert "Took camera-1.jpg for dark" in panel.message.value
    panel.camera._message(panel.camera, {"type": "photo", "name": "camera-2.jpg", "id": 5}, [])
    assert acks[-1]["id"] == 5 and "error" in acks[-1] and panel.session.counts() == {"dark": 1}


def test_photos_taught_are_kept_on_disk_and_come_back_in_a_new_kernel(photos, tmp_path):
    """A reload (a new page, a new kernel) loses none of the photos taught; they download as a labels zip, and a
    photo removed is gone from the disk too."""
    classifier = load_model()
    first = ClassifierApp(classifier, LabelStore(tmp_path / "labels", classifier.classes))
    first.toggle_teach()
    panel = first.teach_panel
    kept = tmp_path / "taught"
    assert str(kept) in text(panel.widget)  # the page says where the photos are kept
    for name in CLASSES:
        panel.add_class(name)
        for number, data in enumerate(photos[name][:5], 1):
            send(panel.upload, f"{name}-{number}.jpg", data, number, 5)
    panel.add_photo("again.jpg", photos["light"][0])  # the same photo twice counts once
    assert "already in light" in panel.message.value and panel.session.counts() == {"dark": 5, "light": 5}
    removed = panel.session.photos["dark"][0]
    panel.remove_photo("dark", removed.id)
    assert sorted(len(list((kept / name).iterdir())) for name in CLASSES) == [4, 5]
    assert not any(removed.sha256 in file.name for file in kept.rglob("*"))
    assert not any((tmp_path / "labels" / name).exists() for name in CLASSES)  # never in the shared labels

    second = ClassifierApp(load_model(), LabelStore(tmp_path / "labels", classifier.classes))  # a new kernel
    second.toggle_teach()
    again = second.teach_panel
    assert again.session.counts() == {"dark": 4, "light": 5}
    assert "Added 9 photos kept in" in again.message.value
    assert len(again.classes_box.children[0].children[1].children) == 4  # their thumbnails are shown
    name, data, note = again.photos_zip()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert name.endswith(".zip") and "9 photos" in note
    assert sorted(n.split("/")[0] for n in archive.namelist() if "/" in n) == ["dark"] * 4 + ["light"] * 5
    again.add_photo("dark-6.jpg", photos["dark"][5])
    assert "Trained on 10 photos (dark 5, light 5)" in (again.train() and again.status.value)
