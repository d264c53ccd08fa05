"""The Teach section's thumbnails (picsort.app.thumbnail_widget): each photo sent once, a late view gets them all,
and a remove from the page reaches the callback only for a photo shown."""

from __future__ import annotations

import pytest

from picsort.app.thumbnail_widget import ThumbnailGrid


@pytest.fixture
def grid(sent_by):
    removed = []
    widget = ThumbnailGrid(on_remove=removed.append)
    widget.removed, widget.sent = removed, sent_by(widget, buffers=True)
    yield widget
    widget.close()


def test_photos_are_sent_one_at_a_time_and_all_at_once_to_a_view_that_starts_later(grid):
    grid.add(1, "Remove a.jpg (8×8 px)", b"jpeg-a")
    grid.add(2, "Remove <b>.jpg", b"jpeg-b")
    grid.remove(1)
    assert grid.sent == [({"type": "add", "id": 1, "title": "Remove a.jpg (8×8 px)"}, [b"jpeg-a"]),
                         ({"type": "add", "id": 2, "title": "Remove <b>.jpg"}, [b"jpeg-b"]),
                         ({"type": "remove", "id": 1}, None)]
    grid._message(grid, {"type": "hello"}, [])
    assert grid.sent[-1] == ({"type": "reset", "tiles": [{"id": 2, "title": "Remove <b>.jpg"}]}, [b"jpeg-b"])
    assert len(grid) == 1 and grid.ids == [2]


@pytest.mark.parametrize("message", [{"type": "remove", "id": 2}, {"type": "remove", "id": "1"},
                                     {"type": "remove", "id": True}, {"type": "remove"}, "remove", None],
                         ids=repr)
def test_a_remove_for_a_photo_not_shown_is_ignored(grid, message):
    grid.add(1, "Remove a.jpg", b"jpeg-a")
    grid._message(grid, message, [])
    assert grid.removed == []


def test_a_remove_from_the_page_reaches_the_callback(grid):
    grid.add(1, "Remove a.jpg", b"jpeg-a")
    grid._message(grid, {"type": "remove", "id": 1}, [])
    assert grid.removed == [1]
