"""Cards a page at a time and the memory cap (picsort.app.card_pages), driven through the page."""

from __future__ import annotations

import io

import psutil
import pytest
from PIL import Image

import picsort.app.card_pages as pages_module
from picsort.app.card_pages import CardPages, Upload
from picsort.inference import classify
from tests.unit.app.conftest import EXAMPLES, encode, live_widgets, phone_photo, shown


def test_a_new_selection_goes_on_top_of_the_earlier_cards(app):
    first = app.handle_upload([{"name": "first.jpg", "content": EXAMPLES[0].read_bytes()}])
    second = app.handle_upload([{"name": "second.jpg", "content": EXAMPLES[1].read_bytes()}])
    assert app.cards == second + first
    assert shown(app) == ["second.jpg", "first.jpg"]


def test_cards_are_shown_a_page_at_a_time(app, photo, monkeypatch):
    monkeypatch.setattr(pages_module, "CARDS_PER_PAGE", 3)
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
    monkeypatch.setattr(classifier, "classify", lambda item, name=None, threshold=None: classify.Classified(
        make_prediction(classifier.classes), Image.new("RGB", (8, 8)), False))
    tiny = encode(Image.new("RGB", (8, 8), (90, 60, 30)))
    app.handle_upload([{"name": f"{n}.png", "content": tiny} for n in range(60)])
    assert len(app.cards_box.children) == 60 and app.pager.layout.display == "none"
    app.handle_upload([{"name": "61.png", "content": tiny}])
    assert len(app.cards_box.children) == 60 and app.pager.layout.display == "" and "Page 1 of 2" in app.page_note.value


def test_cards_past_the_limit_are_closed_and_widgets_stay_flat(app, photo, monkeypatch):
    monkeypatch.setattr(pages_module, "MAX_CARDS", 5)
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
    (first,) = app.handle_upload([{"name": "0.jpg", "content": photo}])
    held = app.uploads[first].kept_bytes  # the bytes and the picture "Why?" explains
    assert held > len(photo)
    monkeypatch.setattr(pages_module, "MAX_KEPT_BYTES", held * 2)
    app.handle_upload([{"name": f"{n}.jpg", "content": photo} for n in range(1, 4)])
    holding = [card.name for card in app.cards if card.can_label]
    assert sorted(holding) == ["2.jpg", "3.jpg"]  # the newest ones
    forgotten = [card for card in app.cards if not card.can_label]
    assert len(forgotten) == 2 and all(app.uploads[card].data is None for card in forgotten)
    assert all("upload it again" in card.status for card in forgotten)
    # A card that let go of its photo still explains it, from a small JPEG of the picture it kept.
    assert all(isinstance(app.uploads[card].picture, bytes) for card in forgotten)
    forgotten[0].toggle_explanation()
    assert forgotten[0].heatmap


def test_an_upload_lets_go_of_its_bytes_and_keeps_a_jpeg_of_its_picture(make_prediction):
    picture = Image.new("RGB", (40, 30), (200, 120, 40))
    upload = Upload("a.jpg", b"x" * 100, make_prediction(["a", "b"]), picture=picture, decoded_whole=True)
    assert upload.kept_bytes == 100 + 40 * 30 * 3 and upload.explain_picture() is picture
    upload.let_go()
    assert upload.data is None and upload.kept_bytes == 0
    again = upload.explain_picture()
    assert again.size == (40, 30) and Image.open(io.BytesIO(upload.picture)).format == "JPEG"


def test_card_pages_close_the_oldest_past_max_cards_but_never_the_selection_arriving(monkeypatch):
    from picsort.app.cards import ProblemCard

    monkeypatch.setattr(pages_module, "MAX_CARDS", 2)
    pages = CardPages()
    cards = [ProblemCard(f"{n}.jpg", "no") for n in range(4)]
    for n, card in enumerate(cards[:3], start=1):
        pages.add(card, keep=n)  # one selection of three: none closed while it arrives
    assert pages.cards == cards[2::-1] and all(card.comm is not None for card in cards[:3])
    pages.add(cards[3], keep=1)  # the next selection: the oldest two go
    assert pages.cards == [cards[3], cards[2]] and cards[0].comm is None and cards[1].comm is None
    pages.clear()
    assert pages.cards == [] and cards[3].comm is None and pages.cards_box.children == ()


@pytest.mark.parametrize("near_an_edge", [False, True], ids=["sure answers", "every answer decoded whole again"])
def test_memory_stays_flat_over_many_phone_photos(app, monkeypatch, near_an_edge):
    """RSS growth over 30 more 12-MP uploads is small against the bytes that went through."""
    from picsort.inference import classify

    if near_an_edge:
        monkeypatch.setattr(classify, "DECODE_WHOLE_BELOW", 1.01)
    monkeypatch.setattr(pages_module, "MAX_KEPT_BYTES", 8 * 1024 * 1024)
    monkeypatch.setattr(pages_module, "MAX_CARDS", 10)
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
