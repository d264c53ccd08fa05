"""The download button (picsort.app.download_widget): what it sends the page when clicked."""

from __future__ import annotations

import logging

import pytest

from picsort.app.download_widget import DownloadButton, NothingToDownload


@pytest.fixture
def button(sent_by):
    """`button(make, **options)`: a DownloadButton whose messages to the page are recorded in `.sent`."""
    made = []

    def new(make, **options):
        widget = DownloadButton(make, **options)
        widget.sent = sent_by(widget, buffers=True)
        made.append(widget)
        return widget

    yield new
    for widget in made:
        widget.close()


def click(widget):
    widget._message(widget, {"type": "download"}, [])


def test_a_click_sends_the_file_made_then_with_its_name_type_and_note(button):
    made = []
    widget = button(lambda: made.append(1) or ("labels.zip", b"PK-bytes", "2 labelled photos"), mime="application/zip")
    assert made == []  # nothing is made before a click
    click(widget)
    assert widget.sent == [({"type": "file", "name": "labels.zip", "mime": "application/zip",
                             "text": "2 labelled photos"}, [b"PK-bytes"])]


def test_nothing_to_download_is_said_beside_the_button(button):
    def nothing():
        raise NothingToDownload("Nothing labelled yet.")

    widget = button(nothing)
    click(widget)
    assert widget.sent == [({"type": "message", "text": "Nothing labelled yet."}, None)]


def test_a_failure_making_the_file_shows_a_plain_message_and_logs_the_details(button, caplog):
    def broken():
        raise OSError("/srv/labels: permission denied")

    widget = button(broken)
    with caplog.at_level(logging.ERROR):
        click(widget)
    assert widget.sent == [({"type": "message", "text": "Something went wrong making the file. Please try again."},
                            None)]
    assert "permission denied" in caplog.text  # for the server's log, never the page


@pytest.mark.parametrize("message", [None, "download", {"type": "upload"}], ids=repr)
def test_other_messages_make_nothing(button, message):
    made = []
    widget = button(lambda: made.append(1) or ("a", b"", ""))
    widget._message(widget, message, [])
    assert made == [] and widget.sent == []
