"""The download button (picsort.download_widget): what it sends the page when clicked."""

from __future__ import annotations

import logging

import pytest

from picsort.download_widget import DownloadButton, NothingToDownload


def button(make, monkeypatch, **options):
    widget = DownloadButton(make, **options)
    widget.sent = []
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: widget.sent.append((content, buffers)))
    return widget


def click(widget):
    widget._message(widget, {"type": "download"}, [])


def test_a_click_sends_the_file_made_then_with_its_name_type_and_note(monkeypatch):
    made = []
    widget = button(lambda: made.append(1) or ("labels.zip", b"PK-bytes", "2 labelled photos"), monkeypatch,
                    mime="application/zip")
    assert made == []  # nothing is made before a click
    click(widget)
    assert widget.sent == [({"type": "file", "name": "labels.zip", "mime": "application/zip",
                             "text": "2 labelled photos"}, [b"PK-bytes"])]
    widget.close()


def test_nothing_to_download_is_said_beside_the_button(monkeypatch):
    def nothing():
        raise NothingToDownload("Nothing labelled yet.")

    widget = button(nothing, monkeypatch)
    click(widget)
    assert widget.sent == [({"type": "message", "text": "Nothing labelled yet."}, None)]
    widget.close()


def test_a_failure_making_the_file_shows_a_plain_message_and_logs_the_details(monkeypatch, caplog):
    def broken():
        raise OSError("/srv/labels: permission denied")

    widget = button(broken, monkeypatch)
    with caplog.at_level(logging.ERROR):
        click(widget)
    assert widget.sent == [({"type": "message", "text": "Something went wrong making the file. Please try again."},
                            None)]
    assert "permission denied" in caplog.text  # for the server's log, never the page
    widget.close()


@pytest.mark.parametrize("message", [None, "download", {"type": "upload"}], ids=repr)
def test_other_messages_make_nothing(monkeypatch, message):
    made = []
    widget = button(lambda: made.append(1) or ("a", b"", ""), monkeypatch)
    widget._message(widget, message, [])
    assert made == [] and widget.sent == []
    widget.close()
