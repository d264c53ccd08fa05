"""The web app's logic, driven the way its widgets drive it (no browser needed)."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
import os
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import psutil
import pytest
from PIL import Image

import picsort.app.page as app_module
from picsort.app.page import ClassifierApp, build_app
from picsort.app.cards import ProblemCard, ResultCard, percent
from picsort.inference.classify import load_model
from picsort.app.download_widget import NothingToDownload
from picsort.photos.images import MAX_UPLOAD_BYTES
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.labels import DiskFullError, LabelStore
from rehearsal.phone_sized import phone_sized

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((REPO / "examples").glob("*.jpg"))


# ---- helpers ---------------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def live_widgets() -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return len(widgets.Widget.widgets)


def stored_images(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix != ".jsonl"]


def manifest(labels: Path) -> list[dict]:
    return [json.loads(line) for line in (labels / "manifest.jsonl").read_text().splitlines()]


def shown(app: ClassifierApp) -> list[str]:
    """File names of the cards on the page, top to bottom."""
    return [card.name for card in app.cards_box.children]


def phone_photo(source: Path) -> bytes:
    """A phone-size JPEG made by upscaling a small photo."""
    return encode(phone_sized(Image.open(source).convert("RGB")), "JPEG", quality=90)


# ---- fixtures --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return load_model()


@pytest.fixture
def labels(tmp_path) -> Path:
    return tmp_path / "labels"


def visitor_page(classifier, labels: Path):
    """A visitor's page: a ClassifierApp with a store object of its own on the labels folder; its cards closed after."""
    page = ClassifierApp(classifier, LabelStore(labels, classifier.classes))
    yield page
    for card in list(page.cards):
        card.close()


@pytest.fixture
def app(classifier, labels) -> ClassifierApp:
    yield from visitor_page(classifier, labels)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return EXAMPLES[0].read_bytes()


# ---- classifying, one file at a time ---------------------------------------------------------------------


def test_one_photo_gets_a_card_with_the_answer_and_a_bar_per_class(app, classifier, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": memoryview(photo)}])

    assert isinstance(card, ResultCard) and card.ok
    assert card.classes == classifier.classes
    assert card.answer == card.closest == card.classes[int(np.argmax(card.probabilities))]
    assert sum(card.probabilities) == pytest.approx(1, abs=1e-5)
    assert card.percents == [percent(p) for p in card.probabilities]
    assert card.name == "bear.jpg"
    thumbnail = Image.open(io.BytesIO(card.picture))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= app_module.THUMBNAIL_SIZE
    assert (card.picture_width, card.picture_height) == thumbnail.size
    assert card.can_label
    assert app.cards_box.children == (card,)
    assert "1 photo classified" in app.progress.value


def test_each_file_is_shown_as_it_arrives_with_a_progress_line(app):
    first = app.add_file(EXAMPLES[0].name, EXAMPLES[0].read_bytes(), index=1, total=3)
    assert shown(app) == [EXAMPLES[0].name] and first.ok
    assert "Looking at 1 of 3" in app.progress.value
    app.add_file(EXAMPLES[1].name, EXAMPLES[1].read_bytes(), index=2, total=3)
    assert "Looking at 2 of 3" in app.progress.value
    assert shown(app) == [EXAMPLES[1].name, EXAMPLES[0].name]  # newest on top while they arrive
    app.add_file(EXAMPLES[2].name, EXAMPLES[2].read_bytes(), index=3, total=3)
    batch = app.finish_batch()
    assert "3 photos classified" in app.progress.value
    probabilities = [max(card.probabilities) for card in batch]
    assert probabilities == sorted(probabilities)  # least sure first once the selection is in
    assert list(app.cards_box.children) == batch


def test_a_phone_photo_is_decoded_only_as_large_as_the_network_needs(app, classifier, monkeypatch):
    seen = []
    original = classifier.predict_images

    def recording(items, images, threshold=None):
        seen.extend(decoded.image.size for decoded in images)
        return original(items, images, threshold)

    monkeypatch.setattr(classifier, "predict_images", recording)
    (card,) = app.handle_upload([{"name": "phone.jpg", "content": phone_photo(EXAMPLES[0])}])
    assert card.ok
    (size,) = seen
    needed = classifier.size + classifier.extra
    assert needed <= min(size) and max(size) < 4032 / 2  # drafted, far below the 12-megapixel original


def test_a_new_selection_goes_on_top_of_the_earlier_cards(app):
    first = app.handle_upload([{"name": "first.jpg", "content": EXAMPLES[0].read_bytes()}])
    second = app.handle_upload([{"name": "second.jpg", "content": EXAMPLES[1].read_bytes()}])
    assert app.cards == second + first
    assert shown(app) == ["second.jpg", "first.jpg"]


def test_the_examples_button_classifies_the_example_photos(app):
    assert len(app.examples) == len(EXAMPLES) == 6
    app.examples_button.click()
    assert sorted(card.name for card in app.cards) == sorted(p.name for p in EXAMPLES)
    assert all(card.ok for card in app.cards)
    assert f"{len(EXAMPLES)} photos classified" in app.progress.value


def test_no_examples_button_without_an_examples_folder(classifier, labels, tmp_path):
    page = ClassifierApp(classifier, LabelStore(labels, classifier.classes), examples_folder=tmp_path / "none")
    assert page.examples == [] and page.examples_button.layout.display == "none"


# ---- many photos on one page -----------------------------------------------------------------------------


def test_cards_are_shown_a_page_at_a_time(app, photo, monkeypatch):
    monkeypatch.setattr(app_module, "CARDS_PER_PAGE", 3)
    app.handle_upload([{"name": f"{n}.jpg", "content": photo} for n in range(7)])
    assert len(app.cards) == 7 and len(app.cards_box.children) == 3
    assert app.pager.layout.display == "" and app.previous_page.disabled and not app.next_page.disabled
    assert "Page 1 of 3" in app.page_note.value
    app.next_page.click()
    app.next_page.click()
    assert list(app.cards_box.children) == app.cards[6:]
    assert "Page 3 of 3" in app.page_note.value and app.next_page.disabled
    app.previous_page.click()
    assert list(app.cards_box.children) == app.cards[3:6]


def test_a_selection_of_sixty_photos_is_shown_whole_without_paging(app, classifier, monkeypatch, make_prediction):
    # Paging only past 60: a person labels a typical selection without leaving the page.
    monkeypatch.setattr(classifier, "predict_images", lambda items, images, threshold=None: [
        make_prediction(classifier.classes) for _ in images])
    tiny = encode(Image.new("RGB", (8, 8), (90, 60, 30)))
    app.handle_upload([{"name": f"{n}.png", "content": tiny} for n in range(60)])
    assert len(app.cards_box.children) == 60 and app.pager.layout.display == "none"
    app.handle_upload([{"name": "61.png", "content": tiny}])
    assert len(app.cards_box.children) == 60 and app.pager.layout.display == "" and "Page 1 of 2" in app.page_note.value


def test_cards_past_the_limit_are_closed_and_widgets_stay_flat(app, photo, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_CARDS", 5)
    app.handle_upload([{"name": f"warm-{n}.jpg", "content": photo} for n in range(5)])
    warm = list(app.cards)
    before = live_widgets()
    for round_ in range(6):
        app.handle_upload([{"name": f"{round_}-{n}.jpg", "content": photo} for n in range(5)])
    assert live_widgets() == before
    assert len(app.cards) == 5 and all(card.comm is None for card in warm)  # closed
    assert not any(card in app.uploads for card in warm) and all(card._on_label is None for card in warm)
    assert len(app.uploads) == 5  # the photos' bytes and the callbacks were let go with their cards


def test_older_cards_let_go_of_their_bytes_past_the_cap(app, photo, monkeypatch):
    monkeypatch.setattr(app_module, "MAX_KEPT_BYTES", len(photo) * 2)
    app.handle_upload([{"name": f"{n}.jpg", "content": photo} for n in range(4)])
    holding = [card.name for card in app.cards if card.can_label]
    assert sorted(holding) == ["2.jpg", "3.jpg"]  # the newest ones
    forgotten = [card for card in app.cards if not card.can_label]
    assert len(forgotten) == 2 and all(app.uploads[card].data is None for card in forgotten)
    assert all("upload it again" in card.status for card in forgotten)


@pytest.mark.parametrize("near_an_edge", [False, True], ids=["sure answers", "every answer decoded whole again"])
def test_memory_stays_flat_over_many_phone_photos(app, monkeypatch, near_an_edge):
    """RSS growth over 30 more 12-MP uploads is small against the bytes that went through."""
    from picsort.inference import classify

    if near_an_edge:
        monkeypatch.setattr(classify, "DECODE_WHOLE_BELOW", 1.01)
    monkeypatch.setattr(app_module, "MAX_KEPT_BYTES", 8 * 1024 * 1024)
    monkeypatch.setattr(app_module, "MAX_CARDS", 10)
    data = phone_photo(EXAMPLES[2])
    process = psutil.Process()
    for n in range(10):
        app.handle_upload([{"name": f"warm-{n}.jpg", "content": data}])
    before = process.memory_info().rss
    for n in range(30):
        app.handle_upload([{"name": f"{n}.jpg", "content": data}])
    growth = process.memory_info().rss - before
    passed = 30 * len(data)
    assert growth < 0.2 * passed, f"RSS grew {growth / 1e6:.0f} MB for {passed / 1e6:.0f} MB uploaded"


def test_freed_memory_is_handed_back_after_each_selection(app, photo, monkeypatch):
    calls = []
    monkeypatch.setattr(app_module, "return_freed_memory", lambda: calls.append(1))
    app.handle_upload([{"name": "a.jpg", "content": photo}, {"name": "b.jpg", "content": photo}])
    assert calls == [1]


# ---- bad uploads -----------------------------------------------------------------------------------------


def bad_files(photo: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, words the message must contain)."""
    return {
        "empty.jpg": (b"", "is empty"),
        "truncated.jpg": (photo[: len(photo) // 3], "damaged or incomplete"),
        "notes.txt": (b"these are my notes, not a picture\n" * 20, "not an image"),
        "huge.jpg": (photo[:2] + bytes(MAX_UPLOAD_BYTES + 1), "larger than"),
    }


def test_each_bad_file_gets_its_own_card_and_the_good_ones_are_still_classified(app, labels):
    bad = bad_files(EXAMPLES[0].read_bytes())
    good = {p.name: p.read_bytes() for p in EXAMPLES[:3]}
    entries = [{"name": name, "content": data} for name, (data, _) in bad.items()]
    entries[2:2] = [{"name": name, "content": data} for name, data in good.items()]

    cards = app.handle_upload(entries)

    by_name = {card.name: card for card in cards}
    assert set(by_name) == set(bad) | set(good)
    for name, (_, words) in bad.items():
        card = by_name[name]
        assert isinstance(card, ProblemCard) and not card.ok and card not in app.uploads
        assert words in card.problem
        assert f"'{name}'" in card.problem  # the message names the file
        assert "Traceback" not in card.problem
    assert all(by_name[name].ok for name in good)
    assert [card.ok for card in cards] == [False] * len(bad) + [True] * len(good)  # problems first
    assert "4 files could not be used" in app.progress.value
    assert stored_images(labels) == []


def test_files_the_browser_did_not_send_get_a_card_saying_why(app):
    app.upload._message(app.upload, {"type": "too_large", "name": "big.jpg", "size": 31 * 1024 * 1024,
                                     "index": 1, "total": 2}, [])
    app.upload._message(app.upload, {"type": "unreadable", "name": "folder", "index": 2, "total": 2}, [])
    app.upload._message(app.upload, {"type": "done", "total": 2}, [])
    big, folder = sorted(app.cards, key=lambda card: card.name)
    assert "'big.jpg' is larger than the 20 MB limit (31 MB)" in big.problem
    assert "could not be read" in folder.problem
    assert "2 files could not be used" in app.progress.value


def test_an_unexpected_failure_shows_a_plain_message_not_a_traceback(app, classifier, photo, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of cheese")

    monkeypatch.setattr(classifier, "predict_images", broken)
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    assert not card.ok
    assert card.problem == "Something went wrong with 'bear.jpg'. Please try again, or try another picture."


def test_file_names_are_shown_as_text_never_as_markup(app, photo):
    name = '<img src=x onerror="alert(1)">.jpg'
    (bad,) = app.handle_upload([{"name": name, "content": b""}])
    (card,) = app.handle_upload([{"name": name, "content": photo}])
    assert bad.name == card.name == name  # the cards' view sets it as text, never as HTML


# ---- unusual but valid pictures --------------------------------------------------------------------------


def _noise(mode: str, size=(64, 48)) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 255, size=(size[1], size[0], 3), dtype=np.uint8)).convert(mode)


UNUSUAL = {
    "cmyk.jpg": lambda: encode(_noise("CMYK"), "JPEG"),
    "sixteen-bit.png": lambda: encode(Image.fromarray(np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64))),
    "gray.png": lambda: encode(_noise("L"), "PNG"),
    "alpha.png": lambda: encode(_noise("RGBA"), "PNG"),
    "large.jpg": lambda: encode(_noise("RGB").resize((5000, 4000)), "JPEG", quality=70),
    "one-pixel.png": lambda: encode(Image.new("RGB", (1, 1), (120, 80, 40)), "PNG"),
    "tall.png": lambda: encode(_noise("RGB", size=(20, 900)), "PNG"),
}


@pytest.mark.parametrize("name", list(UNUSUAL))
def test_unusual_valid_pictures_are_classified(app, classifier, name):
    (card,) = app.handle_upload([{"name": name, "content": UNUSUAL[name]()}])
    assert card.ok, card.problem
    shown_picture = Image.open(io.BytesIO(card.picture))
    assert 1 <= min(shown_picture.size) and max(shown_picture.size) <= app_module.THUMBNAIL_SIZE


# ---- what a card says ------------------------------------------------------------------------------------


def test_a_photo_like_none_of_the_classes_answers_none_of_these_and_shows_the_closest_class(
        app, classifier, labels, photo, monkeypatch, make_prediction):
    monkeypatch.setattr(classifier, "predict_images", lambda items, images, threshold=None: [
        make_prediction(classifier.classes, none_of_these=True, similarity=0.1)])
    explained = []
    monkeypatch.setattr(classifier, "explain", lambda image, class_name: explained.append(class_name) or image)
    (card,) = app.handle_upload([{"name": "truck.jpg", "content": photo}])
    assert card.none_of_these
    assert card.note.startswith("This photo does not look like any of: " + ", ".join(classifier.classes))
    assert card.answer == NONE_LABEL and card.closest == classifier.classes[0]
    assert len(card.percents) == len(classifier.classes)
    card.toggle_explanation()  # "Why?" shows what pointed to the closest class: "none" has no heatmap
    assert explained == [classifier.classes[0]] and card.heatmap
    card.choose(classifier.classes[1])
    assert f"Saved as {classifier.classes[1]} (corrected from none of these;" in card.status
    assert manifest(labels)[-1]["predicted"] == NONE_LABEL


# ---- labelling -------------------------------------------------------------------------------------------


def test_confirming_the_answer_saves_the_photo_with_its_label(app, labels, photo):
    (card,) = app.handle_upload([{"name": "my bear.jpg", "content": photo}])
    answer = card.answer

    card._message(card, {"type": "label", "label": answer}, [])  # what the button (or its key) sends

    digest = hashlib.sha256(photo).hexdigest()
    assert (labels / answer / f"{digest}.jpg").read_bytes() == photo
    (line,) = manifest(labels)
    assert line["label"] == answer and line["predicted"] == answer and line["original_name"] == "my bear.jpg"
    assert line["probabilities"] == pytest.approx(dict(zip(card.classes, card.probabilities)))
    assert card.saved_as == answer and card.status_kind == "saved"
    assert card.status.startswith(f"Saved as {answer} (confirmed; 1 {answer} picture labelled so far")
    assert f"{answer}: <b>1</b>" in app.counts.value


def test_correcting_to_another_class_moves_the_photo(app, classifier, labels, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    answer = card.answer
    other = next(name for name in classifier.classes if name != answer)
    digest = hashlib.sha256(photo).hexdigest()

    card.choose(answer)
    card.choose(other)

    assert not (labels / answer / f"{digest}.jpg").exists()
    assert (labels / other / f"{digest}.jpg").read_bytes() == photo
    assert LabelStore(labels).label_of(digest) == other
    assert f"Saved as {other} (corrected from {answer}" in card.status
    assert f"{other}: <b>1</b>" in app.counts.value and f"{answer}: <b>0</b>" in app.counts.value


def test_none_of_these_is_saved_apart_from_the_classes(app, labels, photo):
    (card,) = app.handle_upload([{"name": "truck.jpg", "content": photo}])
    card._message(card, {"type": "label", "label": NONE_LABEL}, [])
    digest = hashlib.sha256(photo).hexdigest()
    assert (labels / NONE_LABEL / f"{digest}.jpg").exists()
    assert card.saved_as == NONE_LABEL and "none of these" in card.status
    assert "none of these: <b>1</b>" in app.counts.value


def test_skip_saves_nothing_and_says_so(app, labels, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    card._message(card, {"type": "skip"}, [])
    assert card.skipped and "not saved" in card.status
    assert stored_images(labels) == []


def test_undo_takes_back_the_last_label_and_the_card_shows_it(app, classifier, labels):
    first, second = app.handle_upload([{"name": p.name, "content": p.read_bytes()} for p in EXAMPLES[:2]])
    first.choose(classifier.classes[0])
    second.choose(classifier.classes[1])
    second.choose(classifier.classes[2])

    second._message(second, {"type": "undo"}, [])  # the U key on a card
    assert second.saved_as == classifier.classes[1]
    assert f"{classifier.classes[1]}: <b>1</b>" in app.counts.value

    app.undo_button.click()
    assert second.saved_as == "" and "no longer saved" in second.status
    assert f"no longer saved as {classifier.classes[1]}" in app.undo_note.value
    app.undo_button.click()
    assert first.saved_as == "" and stored_images(labels) == []
    app.undo_button.click()
    assert app.undo_note.value == "Nothing to undo."


def test_counts_include_photos_labelled_before_the_page_opened(classifier, labels, photo):
    LabelStore(labels, classifier.classes).save(photo, classifier.classes[-1])
    page = ClassifierApp(classifier, LabelStore(labels, classifier.classes))
    assert f"{classifier.classes[-1]}: <b>1</b>" in page.counts.value


def test_a_full_disk_says_so_on_the_card(app, photo, monkeypatch):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])

    def disk_full(*args, **kwargs):
        raise DiskFullError("the disk holding the labels is full")

    monkeypatch.setattr(app.store, "save", disk_full)
    card.choose(card.answer)
    assert card.status.startswith("Not saved:") and "full" in card.status
    assert card.saved_as == "" and card.status_kind == "error"


def test_an_unexpected_save_failure_shows_a_plain_message(app, photo, monkeypatch):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    monkeypatch.setattr(app.store, "save", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("cheese")))
    card.choose(card.answer)
    assert "Something went wrong with 'bear.jpg'" in card.status and "cheese" not in card.status


def test_the_store_must_know_the_models_classes(classifier, labels):
    with pytest.raises(ValueError, match="classes"):
        ClassifierApp(classifier, LabelStore(labels))
    with pytest.raises(ValueError, match="classes"):
        ClassifierApp(classifier, LabelStore(labels, ["cat", "dog"]))


# ---- one label store, several visitors -------------------------------------------------------------------


@pytest.fixture
def other(classifier, labels) -> ClassifierApp:
    """Another visitor's page on the same server: a kernel and store object of its own, the same labels folder."""
    yield from visitor_page(classifier, labels)


def upload(page: ClassifierApp, example: Path, name: str = "bear.jpg") -> ResultCard:
    (card,) = page.handle_upload([{"name": name, "content": example.read_bytes()}])
    return card


def test_the_page_says_labels_are_shared_by_everyone_using_the_app(app):
    assert "Labels are shared: everyone using this app on this server saves into the same labels" in page_text(
        app.widget)
    assert "Labelled so far, by everyone here:" in app.counts.value


def test_counts_are_everyone_s_read_again_when_a_page_acts(app, other, classifier):
    teddy = classifier.classes[2]
    for example in EXAMPLES[:2]:
        upload(other, example).choose(teddy)
    mine = upload(app, EXAMPLES[2])
    assert f"{teddy}: <b>2</b>" in app.counts.value  # the other visitor's two, read when this page's photo came
    mine.choose(teddy)
    assert f"3 {teddy} pictures labelled so far by everyone here" in mine.status
    assert f"{teddy}: <b>2</b>" in other.counts.value  # nothing reaches a page that does nothing
    other.labels_zip()  # the download button
    assert f"{teddy}: <b>3</b>" in other.counts.value


def test_a_card_another_visitor_relabelled_says_so_when_its_page_next_acts(app, other, classifier, labels):
    black, grizzly, teddy = classifier.classes
    mine = upload(app, EXAMPLES[0])
    mine.choose(teddy)
    theirs = upload(other, EXAMPLES[0], name="same photo.jpg")
    theirs.choose(grizzly)
    assert f"It was labelled {teddy} by someone else using this app: yours replaces that." in theirs.status

    upload(app, EXAMPLES[1], name="next.jpg")  # this visitor's next action
    assert mine.saved_as == grizzly and mine.status == f"Relabelled {grizzly} by someone else using this app."
    assert f"{teddy}: <b>0</b>" in app.counts.value and f"{grizzly}: <b>1</b>" in app.counts.value

    mine.choose(black)  # the other page hears of it on its next action
    other.refresh_counts()
    assert theirs.status == f"Relabelled {black} by someone else using this app." and theirs.saved_as == black
    assert LabelStore(labels).label_of(hashlib.sha256(EXAMPLES[0].read_bytes()).hexdigest()) == black


def test_relabelling_a_photo_another_visitor_labelled_says_whose_label_it_replaces(app, other, classifier):
    black, grizzly, teddy = classifier.classes
    mine = upload(app, EXAMPLES[0])
    mine.choose(teddy)
    upload(other, EXAMPLES[0]).choose(grizzly)
    mine.choose(black)  # the card still showed teddy: nothing had told this page yet
    assert mine.status.endswith(f"It was labelled {grizzly} by someone else using this app: yours replaces that.")
    assert mine.saved_as == black


def test_undo_after_another_visitor_relabelled_keeps_their_label_and_says_so(app, other, classifier, labels):
    grizzly, teddy = classifier.classes[1:]
    mine = upload(app, EXAMPLES[0])
    mine.choose(teddy)
    theirs = upload(other, EXAMPLES[0])
    theirs.choose(grizzly)

    app.undo_button.click()
    assert html.unescape(app.undo_note.value) == (
        f"Undone: your label {teddy} for 'bear.jpg'; it stays {grizzly}, as someone else using this app labelled it.")
    assert mine.saved_as == grizzly
    assert mine.status == f"Labelled {grizzly} by someone else using this app; your label {teddy} was undone."
    digest = hashlib.sha256(EXAMPLES[0].read_bytes()).hexdigest()
    assert LabelStore(labels).label_of(digest) == grizzly
    status = theirs.status
    other.refresh_counts()
    assert theirs.saved_as == grizzly and theirs.status == status  # their label stood: nothing to tell them

    other.undo_button.click()  # now nobody's label is left
    assert "no longer saved as" in other.undo_note.value and LabelStore(labels).label_of(digest) is None
    app.refresh_counts()
    assert mine.saved_as == "" and mine.status.startswith("No longer labelled")


def test_another_visitor_s_undo_gives_the_photo_back_the_label_this_page_shows(app, other, classifier):
    grizzly, teddy = classifier.classes[1:]
    mine = upload(app, EXAMPLES[0])
    mine.choose(teddy)
    status = mine.status
    upload(other, EXAMPLES[0]).choose(grizzly)
    other.undo_button.click()
    assert f"(back to {teddy})" in other.undo_note.value
    app.refresh_counts()
    assert mine.saved_as == teddy and mine.status == status  # the label it shows is the store's again


def test_one_photo_on_two_cards_of_a_page_has_one_label_and_no_one_else_is_blamed(app, classifier):
    grizzly, teddy = classifier.classes[1:]
    first, second = app.handle_upload([{"name": name, "content": EXAMPLES[0].read_bytes()} for name in "ab"])
    first.choose(teddy)
    assert second.saved_as == teddy and "the same photo as another card here" in second.status
    second.choose(grizzly)
    app.refresh_counts()
    assert first.saved_as == second.saved_as == grizzly
    assert "someone else" not in first.status + second.status


# ---- download, explain -----------------------------------------------------------------------------------


def test_download_labels_is_a_zip_of_the_store(app, labels, classifier):
    with pytest.raises(NothingToDownload):
        app.labels_zip()
    cards = app.handle_upload([{"name": p.name, "content": p.read_bytes()} for p in EXAMPLES[:2]])
    cards[0].choose(classifier.classes[0])
    cards[1].choose(NONE_LABEL)
    name, data, note = app.labels_zip()
    assert name.endswith(".zip") and "2 labelled photos" in note
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = set(archive.namelist())
        assert "manifest.jsonl" in names
        for card, label in ((cards[0], classifier.classes[0]), (cards[1], NONE_LABEL)):
            photo = (REPO / "examples" / card.name).read_bytes()
            assert archive.read(f"{label}/{hashlib.sha256(photo).hexdigest()}.jpg") == photo


def test_the_download_button_sends_the_file_or_says_why_not(app, classifier, sent_by):
    sent = sent_by(app.download, buffers=True)
    app.download._message(app.download, {"type": "download"}, [])
    assert sent[-1] == ({"type": "message", "text": "Nothing labelled yet."}, None)
    (card,) = app.handle_upload([{"name": "a.jpg", "content": EXAMPLES[0].read_bytes()}])
    card.choose(card.answer)
    app.download._message(app.download, {"type": "download"}, [])
    content, (data,) = sent[-1]
    assert content["type"] == "file" and content["name"].endswith(".zip")
    assert zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_why_shows_a_heatmap_and_hides_it_again(app, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    assert card.heatmap == b""
    card._message(card, {"type": "why"}, [])
    overlay = Image.open(io.BytesIO(card.heatmap))
    assert overlay.format == "JPEG" and max(overlay.size) <= app_module.EXPLAIN_SIZE
    assert not card.explaining
    card._message(card, {"type": "why"}, [])
    assert card.heatmap == b""


# ---- the widgets' messages -------------------------------------------------------------------------------


def test_the_upload_zone_hands_over_each_file_and_acknowledges_it(app, monkeypatch, sent_by):
    acks = sent_by(app.upload)
    data = EXAMPLES[0].read_bytes()
    app.upload._message(app.upload, {"type": "file", "name": "a.jpg", "index": 1, "total": 2, "id": 7},
                        [memoryview(data)])
    assert acks == [{"type": "ack", "id": 7}] and shown(app) == ["a.jpg"]
    assert "1 of 2" in app.progress.value

    monkeypatch.setattr(app, "add_file", lambda *a, **k: 1 / 0)
    app.upload._message(app.upload, {"type": "file", "name": "b.jpg", "index": 2, "total": 2, "id": 8}, [b"x"])
    assert acks[-1]["id"] == 8 and "error" in acks[-1]  # never leaves the browser waiting
    app.upload._message(app.upload, {"type": "done", "total": 2, "id": 9}, [])
    assert acks[-1] == {"type": "ack", "id": 9} and "1 photo classified" in app.progress.value


# What no page of this app sends: the wrong types, and counts and sizes that cannot be.
FORGED = {
    "not an object": 5,
    "null": None,
    "a list": [{"type": "file"}],
    "no type": {"name": "a.jpg", "index": 1, "total": 1, "id": 3},
    "an unknown type": {"type": "rm -rf", "id": 3},
    "a name that is not text": {"type": "unreadable", "name": ["a"], "index": 1, "total": 1, "id": 3},
    "index past the total": {"type": "unreadable", "name": "a.jpg", "index": 7, "total": 3, "id": 3},
    "index zero": {"type": "unreadable", "name": "a.jpg", "index": 0, "total": 3, "id": 3},
    "a count that is text": {"type": "unreadable", "name": "a.jpg", "index": "1", "total": 3, "id": 3},
    "a count that is a fraction": {"type": "unreadable", "name": "a.jpg", "index": 1.5, "total": 3, "id": 3},
    "a count that is true": {"type": "unreadable", "name": "a.jpg", "index": True, "total": 3, "id": 3},
    "a negative size": {"type": "too_large", "name": "a.jpg", "size": -5, "index": 1, "total": 1, "id": 3},
    "a size under the limit": {"type": "too_large", "name": "a.jpg", "size": 10, "index": 1, "total": 1, "id": 3},
    "a size past any file": {"type": "too_large", "name": "a.jpg", "size": 10**30, "index": 1, "total": 1, "id": 3},
    "a negative total": {"type": "done", "total": -1, "id": 3},
    "a file without bytes": {"type": "file", "name": "a.jpg", "index": 1, "total": 1, "id": 3},
    "a size that is not the bytes'": {"type": "file", "name": "a.jpg", "size": 2, "index": 1, "total": 1, "id": 3},
}


@pytest.mark.parametrize("forged", FORGED, ids=list(FORGED))
def test_a_message_no_page_sends_is_refused_with_an_ack_and_shows_nothing(app, sent_by, caplog, forged):
    sent = sent_by(app.upload)
    progress = app.progress.value
    app.upload._handle_custom_msg(FORGED[forged], [b"xyz"] if "bytes'" in forged else [])  # as ipywidgets calls it
    (ack,) = sent
    assert ack["type"] == "ack" and ack["error"].startswith("refused")
    assert ack["id"] == (3 if isinstance(FORGED[forged], dict) else None)
    assert app.cards == [] and app.progress.value == progress  # nothing on the page: no card, no "7 of 3"
    assert "refused an upload message" in caplog.text and "Traceback" not in caplog.text
    assert "Exception in callback" not in caplog.text  # nothing escaped to ipywidgets (it shows tracebacks)


def test_a_message_in_a_real_kernel_reaches_no_page_as_a_traceback(tmp_path):
    """ipywidgets sends a handler's exception, traceback and server paths, to every page of the kernel."""
    from jupyter_client.manager import start_new_kernel

    code = f"""
from picsort.app.page import ClassifierApp
from picsort.inference.classify import load_model
from picsort.photos.labels import LabelStore
classifier = load_model()
app = ClassifierApp(classifier, LabelStore({str(tmp_path / 'labels')!r}, classifier.classes))
print(app.upload.model_id)
"""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}  # ipykernel as Voila runs it
    server_log = tmp_path / "kernel-stderr.log"
    with server_log.open("w") as log_file:
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(REPO), env=env, stderr=log_file,
                                           startup_timeout=120)
    pages = []  # everything the kernel broadcasts to the pages
    try:
        reply = client.execute_interactive(code, timeout=180, output_hook=pages.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        model_id = next(m["content"]["text"].strip() for m in pages if m["msg_type"] == "stream")
        for content in (5, None, FORGED["index past the total"], FORGED["a negative size"]):
            client.shell_channel.send(client.session.msg(
                "comm_msg", {"comm_id": model_id, "data": {"method": "custom", "content": content}}))
        # The kernel handles these in order, so all they make it say is out before this cell's end.
        last = client.execute("print(len(app.cards), repr(app.progress.value))")
        while True:
            message = client.get_iopub_msg(timeout=60)
            pages.append(message)
            if message["parent_header"].get("msg_id") == last and message["msg_type"] == "status" \
                    and message["content"]["execution_state"] == "idle":
                break
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    acks = [m["content"]["data"]["content"] for m in pages if m["msg_type"] == "comm_msg"
            and m["content"]["data"].get("method") == "custom"]
    assert [(ack["id"], "error" in ack) for ack in acks] == [(None, True), (None, True), (3, True), (3, True)]
    assert not [m for m in pages if m["msg_type"] == "error"]
    said = "".join(m["content"].get("text", "") for m in pages if m["msg_type"] == "stream")
    assert "Traceback" not in said and str(REPO) not in said
    assert said.splitlines()[-1] == "0 ''"  # no card, no progress line
    assert server_log.read_text().count("refused an upload message") == 4


def test_the_upload_zone_states_the_real_limits(app):
    assert app.upload.max_bytes == MAX_UPLOAD_BYTES
    assert "20 MB each" in app.upload.limits_text and "JPEG" in app.upload.limits_text


# ---- the page --------------------------------------------------------------------------------------------


def model_with_classes(folder: Path, classes: list[str], **card_changes) -> Path:
    """A copy of the shipped model folder whose card names other classes (same number, same weights)."""
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "reference.safetensors"):
        shutil.copyfile(REPO / "model" / name, folder / name)
    card = json.loads((REPO / "model" / "model.json").read_text())
    card.update(classes=classes, images_per_class={name: 10 for name in classes}, **card_changes)
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def page_text(page: widgets.Widget) -> str:
    parts = []

    def walk(widget):
        if isinstance(widget, widgets.HTML) and "picsort-style" not in widget._dom_classes:
            parts.append(widget.value)
        for child in getattr(widget, "children", ()):
            walk(child)

    walk(page)
    return "\n".join(parts)


def test_the_page_says_what_it_serves_from_the_model_card(tmp_path):
    folder = model_with_classes(tmp_path / "model", ["polar bear", "cat", "dog"],
                                trained="2026-03-05T10:00:00+00:00",
                                validation={"error_rate": 0.125, "images": 40})
    text = page_text(build_app(folder, tmp_path / "labels"))
    assert "Is it <b>polar bear</b>, <b>cat</b> or <b>dog</b>?" in text
    assert "trained on 5 March 2026" in text and "from 30 photos" in text
    assert "wrong on 12.5% of 40 validation photos" in text
    assert "bear" not in text.replace("polar bear", "")  # nothing about bears but the class name


def test_a_model_with_an_unsafe_class_name_gets_a_page_that_says_so(tmp_path):
    folder = model_with_classes(tmp_path / "model", ["../evil", "cat", "dog"])
    page = build_app(folder, tmp_path / "labels")
    assert "This app cannot start" in page.value and "evil" in page.value
    assert not (tmp_path / "labels").exists()


@pytest.mark.parametrize("card_changes, said", [
    ({"preprocessing": {"size": 0, "extra": 0, "mean": [0.5] * 3, "std": [0.5] * 3}},
     "preprocessing.size is 0: a whole number of pixels from 32 to 1024"),
    ({"head": {"hidden": 10**6, "pool": "avg", "batchnorm": True}}, "head.hidden is 1000000"),
    ({"architecture": {"library": "torchvision", "name": "resnet18"}},
     "reference.safetensors does not fit its model: it holds features of 333×1280, the network's features are N×512"),
])
def test_a_model_folder_that_cannot_be_served_gets_the_app_s_own_page_naming_the_problem(tmp_path, card_changes, said):
    """What app.ipynb's one call gives Voila to show: the app's message, never an exception (Voila's "error
    executing cell")."""
    folder = model_with_classes(tmp_path / "model", ["black", "grizzly", "teddy"], **card_changes)
    page = build_app(folder, tmp_path / "labels")
    assert "This app cannot start" in page.value and html.escape(said, quote=True) in page.value
    assert not (tmp_path / "labels").exists()


def test_build_app_uses_the_labels_folder_from_the_environment(tmp_path, monkeypatch, photo):
    monkeypatch.setenv("PICSORT_LABELS_DIR", str(tmp_path / "from-env"))
    page = build_app()
    assert "picsort-app" in page._dom_classes
    assert not (tmp_path / "from-env").exists()  # nothing written until someone labels a photo


def test_importing_the_app_does_not_import_fastai():
    code = "import picsort.app.page, sys; assert not any(m.startswith('fastai') for m in sys.modules), 'fastai imported'"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr


# ---- nothing for the visitor's browser on a failure ------------------------------------------------------


def test_a_failure_in_a_real_kernel_reaches_the_server_log_and_not_the_browser(tmp_path):
    """In a Voila kernel anything on stderr (fd 2 included) travels to the browser; the app's log must not."""
    from jupyter_client.manager import start_new_kernel

    server_log = tmp_path / "kernel-stderr.log"
    code = f"""
import warnings
from picsort.app.page import ClassifierApp
from picsort.inference.classify import load_model
from picsort.photos.labels import LabelStore
classifier = load_model()
app = ClassifierApp(classifier, LabelStore({str(tmp_path / 'labels')!r}, classifier.classes))
def broken(*args):
    raise RuntimeError("out of cheese")
classifier.predict_images = broken
(card,) = app.handle_upload([{{"name": "bear.jpg", "content": open({str(EXAMPLES[0])!r}, "rb").read()}}])
warnings.warn("a warning from deep inside")
print(card.problem)
"""
    # ipykernel forwards fd 2 only outside pytest (it checks this variable): be the kernel Voila runs.
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    with server_log.open("w") as log_file:
        manager, client = start_new_kernel(kernel_name="python3", cwd=str(REPO), env=env, stderr=log_file,
                                           startup_timeout=120)
    messages = []
    try:
        reply = client.execute_interactive(code, timeout=180, output_hook=messages.append)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    streams = [(m["content"]["name"], m["content"]["text"]) for m in messages if m["msg_type"] == "stream"]
    assert streams == [("stdout", "Something went wrong with 'bear.jpg'. Please try again, or try another picture.\n")]
    assert not [m for m in messages if m["msg_type"] == "error"]
    logged = server_log.read_text()
    assert "out of cheese" in logged and "Traceback" in logged and "a warning from deep inside" in logged


def test_the_app_the_cli_and_the_api_give_the_same_answers(app, classifier, tmp_path):
    """Shipped model, no stand-ins: example bears and a picture of no bear, through all three ways in."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for example in sorted((REPO / "examples").glob("*.jpg")):
        shutil.copyfile(example, folder / example.name)
    bands = (np.arange(240) // 12 % 2)[:, None, None]  # blue and yellow stripes: no bear at all
    stripes = np.where(bands == 0, [30, 90, 200], [250, 240, 20]).astype(np.uint8)
    Image.fromarray(np.broadcast_to(stripes, (240, 320, 3)).copy()).save(folder / "stripes.png")
    files = sorted(folder.iterdir())

    api = {file.name: classifier.predict(file) for file in files}
    cards = {card.name: card for card in app.handle_upload(
        [{"name": file.name, "content": memoryview(file.read_bytes())} for file in files])}
    out = tmp_path / "results.csv"
    subprocess.run([sys.executable, "-m", "picsort", "classify", str(folder), "--out", str(out)], cwd=REPO,
                   check=True, capture_output=True)
    with out.open(newline="", encoding="utf-8") as handle:
        rows = {Path(row["path"]).name: row for row in csv.DictReader(handle)}

    # All three answer "none of these" for the stripes, each naming the same closest class beside it.
    assert cards["stripes.png"].answer == rows["stripes.png"]["class"] == api["stripes.png"].label == NONE_LABEL
    assert not any(prediction.none_of_these for name, prediction in api.items() if name != "stripes.png")
    for name, prediction in api.items():
        card, row = cards[name], rows[name]
        assert card.answer == row["class"] == prediction.label, name
        assert card.closest == row["closest"] == prediction.closest in classifier.classes, name
        assert card.none_of_these == prediction.none_of_these == (row["none_of_these"] == "true"), name
        for index, class_name in enumerate(classifier.classes):
            assert float(row[f"p_{class_name}"]) == pytest.approx(prediction.probabilities[class_name], abs=1e-3)
            assert card.probabilities[index] == pytest.approx(prediction.probabilities[class_name], abs=1e-6)
