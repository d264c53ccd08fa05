"""Files into cards (picsort.app.intake): each file decoded once, classified and shown as it arrives; bad files,
the upload zone's messages, "Why?"."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image

import picsort.app.intake as intake_module
from picsort.app.cards import ProblemCard, ResultCard, percent
from picsort.app.intake import EXPLAIN_SIZE
from picsort.app.page import ClassifierApp
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference import classify
from picsort.photos.images import MAX_UPLOAD_BYTES
from picsort.photos.labels import LabelStore
from tests.unit.app.conftest import (
    EXAMPLES,
    REPO,
    encode,
    manifest,
    phone_photo,
    shown,
    stored_images,
)


def test_one_photo_gets_a_card_with_the_answer_and_a_bar_per_class(app, classifier, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": memoryview(photo)}])

    assert isinstance(card, ResultCard) and card.ok
    assert card.classes == classifier.classes
    assert card.answer == card.closest == card.classes[int(np.argmax(card.probabilities))]
    assert sum(card.probabilities) == pytest.approx(1, abs=1e-5)
    assert card.percents == [percent(p) for p in card.probabilities]
    assert card.name == "bear.jpg"
    thumbnail = Image.open(io.BytesIO(card.picture))
    assert thumbnail.format == "JPEG" and max(thumbnail.size) <= intake_module.THUMBNAIL_SIZE
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
    original = classifier.classify

    def recording(item, name=None, threshold=None):
        classified = original(item, name, threshold)
        seen.append(classified.image.size)
        return classified

    monkeypatch.setattr(classifier, "classify", recording)
    (card,) = app.handle_upload([{"name": "phone.jpg", "content": phone_photo(EXAMPLES[0])}])
    assert card.ok
    (size,) = seen
    needed = classifier.size + classifier.extra
    assert needed <= min(size) and max(size) < 4032 / 2  # drafted, far below the 12-megapixel original


def test_the_examples_button_classifies_the_example_photos(app):
    assert len(app.examples) == len(EXAMPLES) == 6
    app.examples_button.click()
    assert sorted(card.name for card in app.cards) == sorted(p.name for p in EXAMPLES)
    assert all(card.ok for card in app.cards)
    assert f"{len(EXAMPLES)} photos classified" in app.progress.value


def test_no_examples_button_without_an_examples_folder(classifier, labels, tmp_path):
    page = ClassifierApp(classifier, LabelStore(labels, classifier.classes), examples_folder=tmp_path / "none")
    assert page.examples == [] and page.examples_button.layout.display == "none"


def test_freed_memory_is_handed_back_after_each_selection(app, photo, monkeypatch):
    calls = []
    monkeypatch.setattr(intake_module, "return_freed_memory", lambda: calls.append(1))
    app.handle_upload([{"name": "a.jpg", "content": photo}, {"name": "b.jpg", "content": photo}])
    assert calls == [1]


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

    monkeypatch.setattr(classifier, "classify", broken)
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    assert not card.ok
    assert card.problem == "Something went wrong with 'bear.jpg'. Please try again, or try another picture."


def test_file_names_are_shown_as_text_never_as_markup(app, photo):
    name = '<img src=x onerror="alert(1)">.jpg'
    (bad,) = app.handle_upload([{"name": name, "content": b""}])
    (card,) = app.handle_upload([{"name": name, "content": photo}])
    assert bad.name == card.name == name  # the cards' view sets it as text, never as HTML


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
    assert 1 <= min(shown_picture.size) and max(shown_picture.size) <= intake_module.THUMBNAIL_SIZE


def test_a_photo_like_none_of_the_classes_answers_none_of_these_and_shows_the_closest_class(
        app, classifier, labels, photo, monkeypatch, make_prediction):
    monkeypatch.setattr(classifier, "classify", lambda item, name=None, threshold=None: classify.Classified(
        make_prediction(classifier.classes, none_of_these=True, similarity=0.1), Image.new("RGB", (8, 8)), False))
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


def test_why_shows_a_heatmap_and_hides_it_again(app, photo):
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    assert card.heatmap == b""
    card._message(card, {"type": "why"}, [])
    overlay = Image.open(io.BytesIO(card.heatmap))
    assert overlay.format == "JPEG" and max(overlay.size) <= EXPLAIN_SIZE
    assert not card.explaining
    card._message(card, {"type": "why"}, [])
    assert card.heatmap == b""


def test_the_upload_zone_hands_over_each_file_and_acknowledges_it(app, monkeypatch, sent_by):
    acks = sent_by(app.upload)
    data = EXAMPLES[0].read_bytes()
    app.upload._message(app.upload, {"type": "file", "name": "a.jpg", "index": 1, "total": 2, "id": 7},
                        [memoryview(data)])
    assert acks == [{"type": "ack", "id": 7}] and shown(app) == ["a.jpg"]
    assert "1 of 2" in app.progress.value

    monkeypatch.setattr(app.intake, "add_file", lambda *a, **k: 1 / 0)
    app.upload._message(app.upload, {"type": "file", "name": "b.jpg", "index": 2, "total": 2, "id": 8}, [b"x"])
    assert acks[-1]["id"] == 8 and "error" in acks[-1]  # never leaves the browser waiting
    app.upload._message(app.upload, {"type": "done", "total": 2, "id": 9}, [])
    assert acks[-1] == {"type": "ack", "id": 9} and "1 photo classified" in app.progress.value


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


def test_the_upload_zone_states_the_real_limits(app):
    assert app.upload.max_bytes == MAX_UPLOAD_BYTES
    assert "20 MB each" in app.upload.limits_text and "JPEG" in app.upload.limits_text


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


def test_one_photo_is_decoded_once_for_its_card_its_label_and_why(app, labels, monkeypatch):
    """Classify, label and "Why?" of one uploaded photo: every decoder call of picsort.photos.images counted."""
    from picsort.photos import images

    decodes = []
    for name in ("_decode_bytes", "_decode_path", "_decode_pil", "_decode_array"):
        real = getattr(images, name)
        monkeypatch.setattr(images, name, lambda *args, _real=real, _name=name, **kwargs: (
            decodes.append(_name), _real(*args, **kwargs))[1])
    photo = (REPO / "examples" / "grizzly-1.jpg").read_bytes()  # small enough to be decoded whole
    (card,) = app.handle_upload([{"name": "bear.jpg", "content": photo}])
    assert decodes == ["_decode_bytes"]
    card.choose(card.answer)
    assert card.saved_as == card.answer and len(stored_images(labels)) == 1
    card.toggle_explanation()
    assert card.heatmap
    assert decodes == ["_decode_bytes"]  # labelling and "Why?" used what classifying decoded


def test_a_photo_decoded_reduced_is_decoded_whole_when_labelled(app, labels, monkeypatch):
    """A phone photo was decoded reduced (a thumbnail may stand in): the store checks it whole before keeping it."""
    from picsort.photos import images

    data = phone_photo(EXAMPLES[0])
    (card,) = app.handle_upload([{"name": "phone.jpg", "content": data}])
    whole = []
    real = images._decode_bytes
    monkeypatch.setattr(images, "_decode_bytes", lambda data, name, min_side: whole.append(min_side) or real(
        data, name, min_side))
    card.choose(card.answer)
    card.toggle_explanation()
    assert whole == [None] and card.saved_as == card.answer and card.heatmap
