"""Labels in the shared store (picsort.app.shared_labels): saving, undo, counts, another visitor's labels, the
download."""

from __future__ import annotations

import hashlib
import html
import io
import zipfile
from pathlib import Path

import pytest

from picsort.app.cards import ResultCard
from picsort.app.download_widget import NothingToDownload
from picsort.app.page import ClassifierApp
from picsort.app.shared_labels import ELSEWHERE, SharedLabels
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.labels import DiskFullError, LabelStore
from tests.unit.app.conftest import (
    EXAMPLES,
    REPO,
    manifest,
    page_text,
    stored_images,
    visitor_page,
)


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


@pytest.fixture
def other(classifier, labels) -> ClassifierApp:
    """Another visitor's page on the same server: a kernel and store object of its own, the same labels folder."""
    yield from visitor_page(classifier, labels)


def upload(page: ClassifierApp, example: Path, name: str = "bear.jpg") -> ResultCard:
    (card,) = page.handle_upload([{"name": name, "content": example.read_bytes()}])
    return card


def test_a_card_another_page_s_shared_labels_relabelled_names_no_one(app, classifier, labels):
    """SharedLabels on its own: this page's store object saved the photo; another one (another kernel) relabels it."""
    card = upload(app, EXAMPLES[0])
    card.choose(classifier.classes[0])
    theirs = SharedLabels(LabelStore(labels, classifier.classes), {})
    theirs.store.save(EXAMPLES[0].read_bytes(), classifier.classes[1])
    assert app.shared.refresh_counts()[classifier.classes[1]] == 1
    assert card.saved_as == classifier.classes[1] and ELSEWHERE in card.status


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
