"""The upload drop zone: choose, drop or paste photos; they reach the kernel one file per message.

ipywidgets' FileUpload sends every selected file in one websocket message, so a large selection exceeds the
server's message cap and the page loses its connection. This widget sends one file at a time and waits for
the kernel's answer before the next, so neither side holds more than one file in flight. Files over
`max_bytes` are reported by name and size without being sent. The page learns of each through callbacks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import anywidget
import traitlets

from picsort.images import IMAGE_SUFFIXES, MAX_UPLOAD_BYTES

__all__ = ["UploadZone"]

log = logging.getLogger(__name__)
_HERE = Path(__file__).parent


class UploadZone(anywidget.AnyWidget):
    """A drop zone that reports each file through `on_file(name, data, index, total)`.

    `on_refused(name, reason, index, total)` gets files that were not sent ("too_large" with their size in
    the reason's place handled by the caller, or "unreadable"), `on_done(total)` the end of a selection.
    """

    _esm = (_HERE / "upload_widget.js").read_text()
    _css = (_HERE / "upload_widget.css").read_text()

    max_bytes = traitlets.Int(MAX_UPLOAD_BYTES).tag(sync=True)
    # Browsers do not all count HEIC or AVIF as image/*: the suffixes name every format the decoder takes.
    accept = traitlets.Unicode(",".join(["image/*", *sorted(IMAGE_SUFFIXES)])).tag(sync=True)
    limits_text = traitlets.Unicode("").tag(sync=True)

    def __init__(self, *, on_file: Callable[[str, bytes, int, int], None],
                 on_refused: Callable[[str, str, int, int, int], None],
                 on_done: Callable[[int], None], **kwargs):
        super().__init__(**kwargs)
        self._on_file, self._on_refused, self._on_done = on_file, on_refused, on_done
        self.add_class("picsort-upload")
        self.on_msg(self._message)

    def _message(self, _widget, content: dict, buffers: list) -> None:
        """Hand one file (or the end of a selection) to the page, then let the browser send the next."""
        try:
            kind = content.get("type")
            name = str(content.get("name") or "unnamed file")
            index, total = int(content.get("index") or 0), int(content.get("total") or 0)
            if kind == "file":
                data = bytes(buffers[0]) if buffers else b""
                self._on_file(name, data, index, total)
            elif kind in ("too_large", "unreadable"):
                self._on_refused(name, kind, int(content.get("size") or 0), index, total)
            elif kind == "done":
                self._on_done(total)
        except Exception:  # noqa: BLE001 - the callbacks report their own problems; never leave the browser waiting
            log.exception("picsort app: handling an upload message failed")
        finally:
            if "id" in content:
                self.send({"type": "ack", "id": content["id"]})
