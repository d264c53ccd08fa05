"""The upload zone (picsort.app.upload_widget): each message checked, handed to the page's callbacks, and acknowledged."""

from __future__ import annotations

import logging

import pytest

from picsort.app.upload_widget import LARGEST_NUMBER, BadMessage, UploadZone, read_message

LIMIT = 1000


@pytest.fixture
def zone(sent_by):
    """An UploadZone whose callbacks and acks are recorded in `zone.calls` and `zone.acks`."""
    calls = []
    widget = UploadZone(on_file=lambda *args: calls.append(("file", *args)),
                        on_refused=lambda *args: calls.append(("refused", *args)),
                        on_done=lambda *args: calls.append(("done", *args)), max_bytes=LIMIT)
    widget.calls, widget.acks = calls, sent_by(widget)
    yield widget
    widget.close()


def test_a_selection_reaches_the_callbacks_in_order_and_each_message_is_acknowledged(zone):
    zone._message(zone, {"type": "file", "name": "a.jpg", "index": 1, "total": 3, "id": 1}, [memoryview(b"abc")])
    zone._message(zone, {"type": "too_large", "name": "b.jpg", "size": LIMIT + 1, "index": 2, "total": 3, "id": 2}, [])
    zone._message(zone, {"type": "unreadable", "name": "", "index": 3, "total": 3, "id": 3}, [])
    zone._message(zone, {"type": "done", "total": 3, "id": 4}, [])
    assert zone.calls == [("file", "a.jpg", b"abc", 1, 3), ("refused", "b.jpg", "too_large", LIMIT + 1, 2, 3),
                          ("refused", "unnamed file", "unreadable", 0, 3, 3), ("done", 3)]
    assert zone.acks == [{"type": "ack", "id": n} for n in (1, 2, 3, 4)]


def test_a_callback_that_fails_still_gets_the_browser_an_ack_and_the_details_stay_in_the_log(zone, caplog):
    def broken(*args):
        raise RuntimeError("/srv/secret exploded")

    zone._on_file = broken
    with caplog.at_level(logging.ERROR):
        zone._message(zone, {"type": "file", "name": "a.jpg", "index": 1, "total": 1, "id": 5}, [b"abc"])
    assert zone.acks == [{"type": "ack", "id": 5, "error": "the app could not handle this file"}]
    assert "secret" in caplog.text


@pytest.mark.parametrize("message_id", ["7", True, 1.5, None])
def test_an_id_the_page_never_sends_is_not_echoed(zone, message_id):
    zone._message(zone, {"type": "done", "total": 0, "id": message_id}, [])
    assert zone.acks == [{"type": "ack", "id": None}] and zone.calls == [("done", 0)]


@pytest.mark.parametrize("content, buffers, problem", [
    ({"type": "done", "total": 1}, [b"x"], "carries no file"),
    ({"type": "file", "name": "a.jpg", "index": 1, "total": 1}, [b"x", b"y"], "one file, not 2"),
    ({"type": "unreadable", "name": "a.jpg", "index": 1, "total": LARGEST_NUMBER + 1}, [], "whole number"),
    ({"type": "too_large", "name": "a.jpg", "size": LIMIT, "index": 1, "total": 1}, [], "not over the"),
], ids=["done with a file", "two files", "a total past any count", "a size at the limit"])
def test_read_message_says_what_is_wrong_with_a_message(content, buffers, problem):
    with pytest.raises(BadMessage, match=problem):
        read_message(content, buffers, LIMIT)


def test_a_file_message_gives_its_bytes_and_size_measured_here():
    message = read_message({"type": "file", "name": "a.jpg", "index": 2, "total": 2, "size": 3}, [memoryview(b"abc")],
                           LIMIT)
    assert (message.kind, message.name, message.index, message.total, message.size, message.data) == (
        "file", "a.jpg", 2, 2, 3, b"abc")


def forged_update(widget, state: dict) -> None:
    """What a client sends to change a synced trait (ipywidgets' `update`), handled as the kernel handles it."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state}}, "buffers": []})


def test_a_page_cannot_raise_the_size_limit(zone):
    forged_update(zone, {"max_bytes": 10**9, "paste": False})
    assert zone.max_bytes == LIMIT and zone.paste  # nothing the page sends changes the kernel's traits
    zone._message(zone, {"type": "file", "name": "big.jpg", "index": 1, "total": 1, "id": 1}, [bytes(LIMIT + 1)])
    assert zone.calls == [] and zone.acks[-1]["error"]


def test_the_decoders_limit_holds_whatever_the_zone_was_told(sent_by):
    from picsort.photos.images import MAX_UPLOAD_BYTES

    calls = []
    widget = UploadZone(on_file=lambda *args: calls.append(args), on_refused=lambda *args: None,
                        on_done=lambda *args: None, max_bytes=10**9)
    acks = sent_by(widget)
    widget.max_bytes = 10**9  # even set afterwards in Python
    data = bytes(30 * 2**20)  # 30 MB, over the 20 MB limit
    assert len(data) > MAX_UPLOAD_BYTES
    widget._message(widget, {"type": "file", "name": "big.jpg", "index": 1, "total": 1, "id": 1}, [data])
    assert calls == [] and acks[-1]["error"]
    widget.close()
