"""Teach mode's camera (picsort.app.camera_widget): each photo handed to `on_photo` and acknowledged, or refused."""

from __future__ import annotations

import logging

import pytest

from picsort.app.camera_widget import Camera
from picsort.photos.images import MAX_UPLOAD_BYTES


@pytest.fixture
def camera(sent_by):
    """A Camera whose photos and acks are recorded in `camera.photos` and `camera.acks`."""
    photos = []
    widget = Camera(on_photo=lambda name, data: photos.append((name, data)))
    widget.photos, widget.acks = photos, sent_by(widget)
    yield widget
    widget.close()


def test_a_photo_reaches_on_photo_as_bytes_and_is_acknowledged(camera):
    camera._message(camera, {"type": "photo", "name": "camera-1.jpg", "id": 4}, [memoryview(b"jpeg")])
    assert camera.photos == [("camera-1.jpg", b"jpeg")] and camera.acks == [{"type": "ack", "id": 4}]


def test_a_long_name_is_cut_to_200_characters(camera):
    camera._message(camera, {"type": "photo", "name": "x" * 1000, "id": 1}, [b"jpeg"])
    assert len(camera.photos[0][0]) == 200


@pytest.mark.parametrize("content, buffers", [
    ({"type": "photo", "name": "a.jpg", "id": 3}, []),
    ({"type": "photo", "name": "a.jpg", "id": 3}, [b""]),
    ({"type": "photo", "name": "a.jpg", "id": 3}, [b"x", b"y"]),
    ({"type": "photo", "name": "a.jpg", "id": 3}, [bytes(MAX_UPLOAD_BYTES + 1)]),
    ({"type": "photo", "name": ["a.jpg"], "id": 3}, [b"x"]),
    ({"type": "file", "name": "a.jpg", "id": 3}, [b"x"]),
    ("photo", [b"x"]),
], ids=["no bytes", "empty", "two photos", "over the upload limit", "a name that is not text", "not a photo",
        "not an object"])
def test_a_message_the_camera_never_sends_is_refused_with_an_ack(camera, caplog, content, buffers):
    camera._message(camera, content, buffers)
    assert camera.photos == []
    (ack,) = camera.acks
    assert ack["error"].startswith("refused") and ack["id"] == (3 if isinstance(content, dict) else None)
    assert "refused a camera message" in caplog.text


def test_a_failing_callback_still_gets_the_browser_an_ack(camera, caplog):
    def broken(name, data):
        raise RuntimeError("/srv/secret exploded")

    camera._on_photo = broken
    with caplog.at_level(logging.ERROR):
        camera._message(camera, {"type": "photo", "name": "a.jpg", "id": 9}, [b"jpeg"])
    assert camera.acks == [{"type": "ack", "id": 9, "error": "the app could not handle this photo"}]
    assert "secret" in caplog.text
