"""The page's Teach section, driven the way its widgets drive it (no browser): classes named, photos added
through its upload zone, one removed, Train, and the page answering with the new model."""

from __future__ import annotations

import io
import zipfile

import ipywidgets as widgets
import pytest

import picsort.app.teach_session as teach_session
from picsort.app.cards import ResultCard
from picsort.app.download_widget import NothingToDownload
from picsort.app.page import ClassifierApp
from picsort.app.teach_panel import TeachPanel
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference.classify import load_model
from picsort.photos.labels import LabelStore
from picsort.training import teaching
from tests.conftest import make_synthetic_photos

CLASSES = ("dark", "light")
VISITOR = "0123456789abcdef" * 2  # a browser's visitor id (picsort.app.session_widget)
OTHER_VISITOR = "fedcba9876543210" * 2


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


def visited(page: ClassifierApp, visitor: str = VISITOR) -> ClassifierApp:
    """The page once its browser has sent its visitor id, as the session watch's view does on loading."""
    page.session._answer(page.session, {"type": "visitor", "id": visitor}, [])
    return page


def new_page(tmp_path, visitor: str | None = VISITOR) -> ClassifierApp:
    """A page of the app serving the labels in tmp_path/labels (a new kernel), for the browser `visitor`."""
    classifier = load_model()
    page = ClassifierApp(classifier, LabelStore(tmp_path / "labels", classifier.classes))
    return visited(page, visitor) if visitor else page


@pytest.fixture
def app(tmp_path):
    page = new_page(tmp_path)
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
    assert isinstance(panel, TeachPanel)
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
    thumbnails = panel.classes_box.children[0].children[1]
    assert len(thumbnails) == 5

    thumbnails._message(thumbnails, {"type": "remove", "id": thumbnails.ids[2]}, [])  # a wrong one's ✕ pressed
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
    assert "Saved as light" in app.shared.save_label(app.cards[0], "light")
    assert "light: <b>6</b>" in app.counts.value and "your Teach folder" in app.counts.value
    assert not (tmp_path / "labels" / "light").exists()
    # One labelled "none of these" is a photo of another thing: the next Train sets the threshold on it too.
    assert "Saved as none of these" in app.shared.save_label(app.cards[1], NONE_LABEL)
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
    assert "Train a model first" in str(pytest.raises(NothingToDownload, panel.model_zip).value)
    assert "Traceback" not in text(app.widget)


def test_without_the_packages_teaching_needs_the_section_says_what_to_install(app, monkeypatch):
    monkeypatch.setattr(teaching, "missing_packages", lambda backbone: ["scikit-learn"])
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
    first = new_page(tmp_path)
    first.toggle_teach()
    panel = first.teach_panel
    kept = tmp_path / "taught" / "visitors" / VISITOR
    assert "kept on the server for this browser only" in text(panel.widget)
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

    second = new_page(tmp_path)  # a new kernel, the same browser
    second.toggle_teach()
    again = second.teach_panel
    assert again.session.counts() == {"dark": 4, "light": 5}
    assert "Added 9 photos you taught before" in again.message.value
    assert len(again.classes_box.children[0].children[1]) == 4  # their thumbnails are shown
    assert str(tmp_path) not in text(second.widget)  # the page never shows where on the server
    name, data, note = again.photos_zip()
    archive = zipfile.ZipFile(io.BytesIO(data))
    assert name.endswith(".zip") and "9 photos" in note
    assert sorted(n.split("/")[0] for n in archive.namelist() if "/" in n) == ["dark"] * 4 + ["light"] * 5
    again.add_photo("dark-6.jpg", photos["dark"][5])
    assert "Trained on 10 photos (dark 5, light 5)" in (again.train() and again.status.value)


def test_teach_waits_for_the_pages_visitor_id(tmp_path):
    page = new_page(tmp_path, visitor=None)
    assert page.teach_button.disabled
    page.toggle_teach()
    assert page.teach_panel is None and "Teach opens once this page has told the server" in text(page.teach_box)
    visited(page)
    assert not page.teach_button.disabled
    page.toggle_teach()
    assert page.teach_panel is not None and page.teach_panel.session.store.root.name == VISITOR


def test_two_visitors_of_one_server_each_teach_their_own(photos, tmp_path):
    """Two browsers (two visitor ids) on one server: neither sees, downloads, counts or removes the other's."""
    a, b = new_page(tmp_path, VISITOR), new_page(tmp_path, OTHER_VISITOR)
    a.toggle_teach()
    b.toggle_teach()
    a.teach_panel.add_class("cats")
    for number, data in enumerate(photos["dark"][:5], 1):
        send(a.teach_panel.upload, f"a-{number}.jpg", data, number, 5)
    b.teach_panel.add_class("dogs")
    send(b.teach_panel.upload, "same-photo.jpg", photos["dark"][0])  # the same photo A has in cats
    send(b.teach_panel.upload, "b-2.jpg", photos["light"][0])

    assert a.teach_panel.session.counts() == {"cats": 5} and b.teach_panel.session.counts() == {"dogs": 2}
    assert "cats" not in text(b.widget) and "a-1.jpg" not in text(b.widget)
    b.teach_panel.train_button.click()
    assert "cats" not in b.teach_panel.status.value and "at least two classes" in b.teach_panel.status.value
    _, data, _ = b.teach_panel.photos_zip()
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert sorted(name.split("/")[0] for name in names if "/" in name) == ["dogs", "dogs"]

    b.teach_panel.remove_class("dogs")  # B's remove takes nothing of A's, not even the photo they share
    a_folder = tmp_path / "taught" / "visitors" / VISITOR
    assert len(list((a_folder / "cats").iterdir())) == 5
    again = new_page(tmp_path, VISITOR)  # A reloads
    again.toggle_teach()
    assert again.teach_panel.session.counts() == {"cats": 5}


def test_a_class_name_with_markup_is_refused_as_text(app):
    app.toggle_teach()
    panel = app.teach_panel
    panel.add_class("<img src=x onerror=alert(1)>/")
    assert "<img" not in panel.message.value and "&lt;img src=x onerror=alert(1)&gt;" in panel.message.value
    panel.add_class("<img src=x onerror=alert(2)>")  # a usable name (no '/'): text wherever it is shown
    assert "<img" not in text(panel.classes_box) and "&lt;img src=x onerror=alert(2)&gt;" in text(panel.classes_box)
    panel.add_class("<img src=x onerror=alert(2)>")
    assert "<img" not in panel.message.value and "already a class called" in panel.message.value
    send(panel.upload, "<i>x</i>.jpg", b"not a photo")
    assert "<i>" not in panel.message.value and "&lt;i&gt;x&lt;/i&gt;.jpg" in panel.message.value


def test_the_page_states_the_photo_limit_and_refuses_past_it_in_words(app, photos, monkeypatch):
    monkeypatch.setattr(teach_session, "MAX_PHOTOS", 3)
    app.toggle_teach()
    panel = app.teach_panel
    assert "up to 1000 photos in all" in text(panel.widget)  # the limit the page states (monkeypatched after)
    panel.add_class("dark")
    for number, data in enumerate(photos["dark"][:4], 1):
        send(panel.upload, f"dark-{number}.jpg", data, number, 4)
    assert panel.session.counts() == {"dark": 3}
    assert "dark-4.jpg was not added: the Teach section holds at most 3 photos" in panel.message.value


def test_a_class_removed_leaves_no_widget_behind_in_the_kernel(app):
    app.toggle_teach()
    panel = app.teach_panel
    panel.add_class("first")
    before = len(widgets.widget._instances)
    for _ in range(3):
        panel.add_class("again")
        panel.remove_class("again")
    assert len(widgets.widget._instances) == before


def test_a_visitor_s_panel_keeps_its_photos_in_their_own_teach_folder_or_says_why_it_cannot(tmp_path, monkeypatch):
    from picsort.app.teach_panel import TEACH_FOLDER, TeachCannotStart, TeachPanel

    panel = TeachPanel.for_visitor("a" * 32, labels_root=tmp_path / "labels", model_classes=["x", "y"],
                                   on_trained=lambda trained: None)
    store = panel.session.store
    assert store.shown_as == TEACH_FOLDER and store.max_photos == teach_session.MAX_PHOTOS
    assert store.root.is_relative_to(tmp_path) and store.root != tmp_path / "labels"

    from picsort.training import teaching

    monkeypatch.setattr(teaching, "missing_packages", lambda backbone: ["scikit-learn"])
    with pytest.raises(TeachCannotStart, match="Teaching cannot start here: .*pip install scikit-learn"):
        TeachPanel.for_visitor("b" * 32, labels_root=tmp_path / "labels", model_classes=["x", "y"],
                               on_trained=lambda trained: None)
