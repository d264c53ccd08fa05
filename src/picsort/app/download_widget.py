"""A download button: the file is made in the kernel when clicked and handed to the browser as a Blob."""

from __future__ import annotations

import logging
from typing import Callable

import anywidget
import traitlets

from picsort.app.widget_scripts import static_text

__all__ = ["DownloadButton", "NothingToDownload"]

log = logging.getLogger(__name__)


class NothingToDownload(Exception):
    """Raised by `make` to show its message beside the button instead of downloading."""


class DownloadButton(anywidget.AnyWidget):
    """`make()` returns (file name, bytes, note) when the button is clicked."""

    _esm = static_text("download_widget.js")

    description = traitlets.Unicode("Download").tag(sync=True)

    def __init__(self, make: Callable[[], tuple[str, bytes, str]], mime: str = "application/octet-stream", **kwargs):
        super().__init__(**kwargs)
        self._make, self.mime = make, mime
        self.on_msg(self._message)

    def _message(self, _widget, content: dict, _buffers) -> None:
        if not (isinstance(content, dict) and content.get("type") == "download"):
            return
        try:
            name, data, note = self._make()
        except NothingToDownload as reason:
            self.send({"type": "message", "text": str(reason)})
            return
        except Exception:  # noqa: BLE001 - say so beside the button; the details go to the server log
            log.exception("picsort app: making the download failed")
            self.send({"type": "message", "text": "Something went wrong making the file. Please try again."})
            return
        self.send({"type": "file", "name": name, "mime": self.mime, "text": note}, [data])
