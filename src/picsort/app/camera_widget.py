"""A webcam for Teach mode: each photo taken in the browser reaches the kernel through `on_photo(name, data)`.

The browser draws each photo at the size the model needs (shortest side `side` px), not the camera's, and waits
for the kernel's answer before sending the next, as the upload zone does.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import anywidget
import traitlets

from picsort.app.upload_widget import REFUSED, acknowledge
from picsort.app.widget_scripts import widget_script
from picsort.photos.images import MAX_UPLOAD_BYTES

__all__ = ["Camera"]

log = logging.getLogger(__name__)


class Camera(anywidget.AnyWidget):
    """"Use the camera", then a button that takes a photo per click (a burst while held)."""

    _esm = widget_script("dom.js", "acknowledged_messages.js", "camera_widget.js")

    side = traitlets.Int(300).tag(sync=True)

    def __init__(self, *, on_photo: Callable[[str, bytes], None], **kwargs):
        super().__init__(**kwargs)
        self._on_photo = on_photo
        self.add_class("picsort-camera")
        self.on_msg(self._message)

    def _message(self, _widget, content: Any, buffers: list) -> None:
        """Hand one photo to the page, then let the browser take the next; nothing escapes to the page."""
        error = None
        name = content.get("name") if isinstance(content, dict) else None
        if not (isinstance(content, dict) and content.get("type") == "photo" and isinstance(name, str)
                and len(buffers) == 1 and 0 < len(buffers[0]) <= MAX_UPLOAD_BYTES):
            log.warning("picsort app: refused a camera message")
            error = REFUSED
        else:
            try:
                self._on_photo(name[:200], bytes(buffers[0]))
            except Exception:  # noqa: BLE001 - the callback reports its own problems; never leave the browser waiting
                log.exception("picsort app: handling a camera photo failed")
                error = "the app could not handle this photo"
        acknowledge(self, content, error)
