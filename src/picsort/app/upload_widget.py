"""The upload drop zone: choose, drop or paste photos; they reach the kernel one file per message.

ipywidgets' FileUpload sends every selected file in one websocket message, so a large selection exceeds the
server's message cap and the page loses its connection. This widget sends one file at a time and waits for
the kernel's answer before the next, so neither side holds more than one file in flight. Files over
`max_bytes` are reported by name and size without being sent. The page learns of each through callbacks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import anywidget
import traitlets

from picsort.app.widget_scripts import static_text, widget_script
from picsort.photos.images import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES

__all__ = ["BadMessage", "REFUSED", "UploadMessage", "UploadZone", "acknowledge", "read_message"]

log = logging.getLogger(__name__)
KINDS = ("file", "too_large", "unreadable", "done")
# The largest count or size a browser can state exactly (Number.MAX_SAFE_INTEGER): anything above is not a file's.
LARGEST_NUMBER = 2**53 - 1
# All a page is told of a message it should never have sent; the details go to the server's log only.
REFUSED = "refused: the page sent a message the app does not take"


class BadMessage(ValueError):
    """A message from the page that this widget's own page never sends (a bug, or someone else's client)."""


@dataclass(frozen=True)
class UploadMessage:
    """One message of the upload conversation, checked: what the page says about one file, or a selection's end."""

    kind: str  # one of KINDS
    name: str
    index: int  # 1..total for a file; 0 for "done"
    total: int
    size: int  # bytes, as the browser measured them (over the limit for "too_large"); 0 when not stated
    data: bytes  # the file, for "file"


def read_message(content: Any, buffers: list, max_bytes: int) -> UploadMessage:
    """`content` and `buffers` as an UploadMessage, or BadMessage saying what is wrong with them.

    Every field is checked for its type and range, so nothing the page shows (a file's place in the selection,
    the size of one not sent) can be a forged count like "7 of 3" or "(-5 bytes)".
    """
    if not isinstance(content, dict):
        raise BadMessage(f"a message is an object, not {type(content).__name__}")
    kind = content.get("type")
    if kind not in KINDS:
        raise BadMessage(f"unknown message type {kind!r}"[:200])
    name = content.get("name", "")
    if not isinstance(name, str):
        raise BadMessage(f"a file name is text, not {type(name).__name__}")
    name = name or "unnamed file"
    total = _count(content, "total")
    if kind == "done":
        if len(buffers):
            raise BadMessage("a selection's end carries no file")
        return UploadMessage(kind, name, 0, total, 0, b"")
    index = _count(content, "index", 1)
    if index > total:
        raise BadMessage(f"file {index} of a selection of {total}")
    size = _count(content, "size") if "size" in content else 0
    if kind == "too_large" and size <= max_bytes:
        raise BadMessage(f"a file of {size} bytes is not over the {max_bytes}-byte limit")
    if kind != "file":
        if len(buffers):
            raise BadMessage(f"a {kind} message carries no file")
        return UploadMessage(kind, name, index, total, size, b"")
    if len(buffers) != 1:
        raise BadMessage(f"a file message carries one file, not {len(buffers)}")
    if memoryview(buffers[0]).nbytes > max_bytes:  # the page reports such a file without sending it
        raise BadMessage(f"a file of {memoryview(buffers[0]).nbytes} bytes is over the {max_bytes}-byte limit")
    data = bytes(buffers[0])
    if "size" in content and size != len(data):
        raise BadMessage(f"a file said to be {size} bytes has {len(data)}")
    return UploadMessage(kind, name, index, total, len(data), data)


def acknowledge(widget: anywidget.AnyWidget, content: Any, error: str | None = None) -> None:
    """Answer one message of the page with an ack carrying its id (and `error`, when it was not handled), so the
    page sends its next one: the page waits for each answer, here and in picsort.app.camera_widget (the page's side
    is acknowledged_messages.js)."""
    message_id = content.get("id") if isinstance(content, dict) else None
    if not isinstance(message_id, int) or isinstance(message_id, bool):
        message_id = None  # the page numbers its messages; anything else is not worth echoing
    ack = {"type": "ack", "id": message_id}
    widget.send(ack if error is None else {**ack, "error": error})


def _count(content: dict, key: str, least: int = 0) -> int:
    value = content.get(key)
    # bool is an int to Python, never to the page.
    if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= LARGEST_NUMBER:
        raise BadMessage(f"{key} must be a whole number from {least} to {LARGEST_NUMBER}, not {value!r}"[:200])
    return value


class UploadZone(anywidget.AnyWidget):
    """A drop zone that reports each file through `on_file(name, data, index, total)`.

    `on_refused(name, reason, size, index, total)` gets files that were not sent ("too_large", with the size
    the browser measured, or "unreadable"), `on_done(total)` the end of a selection. Every message is
    answered with an ack carrying its id, and an `error` when the message was refused (the details go to
    the server's log only, never to the pages).
    """

    _esm = widget_script("dom.js", "acknowledged_messages.js", "upload_widget.js")
    _css = static_text("upload_widget.css")

    # What the page is told: it reports larger files without sending them. The kernel keeps its own copy of the
    # limit (`limit`), since a client can send any value of a synced trait.
    max_bytes = traitlets.Int(MAX_UPLOAD_BYTES).tag(sync=True)
    # Browsers do not all count HEIC or AVIF as image/*: the suffixes name every format the decoder takes.
    accept = traitlets.Unicode(",".join(["image/*", *sorted(IMAGE_SUFFIXES)])).tag(sync=True)
    limits_text = traitlets.Unicode("").tag(sync=True)
    # Whether a picture pasted anywhere on the page comes here: with Teach open, its zone takes pastes instead.
    paste = traitlets.Bool(True).tag(sync=True)

    def __init__(self, *, on_file: Callable[[str, bytes, int, int], None],
                 on_refused: Callable[[str, str, int, int, int], None],
                 on_done: Callable[[int], None], **kwargs):
        super().__init__(**kwargs)
        # Never above the decoder's limit, whatever the page says afterwards.
        self.limit = min(self.max_bytes, MAX_UPLOAD_BYTES)
        self._on_file, self._on_refused, self._on_done = on_file, on_refused, on_done
        self.add_class("picsort-upload")
        self.on_msg(self._message)

    def set_state(self, sync_data: dict) -> None:
        """An update from the page: every trait of this widget is the kernel's to set (its limit, what it
        accepts, where pastes go), so the page's are dropped, and logged."""
        if sync_data:
            log.warning("picsort app: ignored an update of %s from the page",
                        ", ".join(sorted(map(str, sync_data)))[:200])

    def _message(self, _widget, content: Any, buffers: list) -> None:
        """Hand one file (or the end of a selection) to the page, then let the browser send the next.

        Nothing may escape from here: ipywidgets shows an exception from a message handler, traceback and
        server paths included, on every page of this kernel.
        """
        error = None
        try:
            message = read_message(content, buffers, self.limit)
        except BadMessage as problem:
            log.warning("picsort app: refused an upload message: %s", problem)
            error = REFUSED
        else:
            try:
                if message.kind == "file":
                    self._on_file(message.name, message.data, message.index, message.total)
                elif message.kind == "done":
                    self._on_done(message.total)
                else:
                    self._on_refused(message.name, message.kind, message.size, message.index, message.total)
            except Exception:  # noqa: BLE001 - the callbacks report their own problems; never leave the browser waiting
                log.exception("picsort app: handling an upload message failed")
                error = "the app could not handle this file"
        acknowledge(self, content, error)
