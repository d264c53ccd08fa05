"""A class's photos in Teach mode: one widget for all of them, each a small JPEG with a remove button.

A widget per photo (an Image, a Button and a Box, each with its layout) cost the kernel far more than the photo
itself, and every new one resent the whole list of children. Here the kernel keeps each photo's thumbnail bytes
once and sends each change alone (one photo added, one removed); a view that starts later (a section shown
again) asks for all of them in one message. The remove button reports through `on_remove(photo_id)`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import anywidget

from picsort.app.widget_scripts import static_text, widget_script

__all__ = ["ThumbnailGrid"]

log = logging.getLogger(__name__)


class ThumbnailGrid(anywidget.AnyWidget):
    """Thumbnails (JPEG bytes) by photo id, in the order added; `on_remove(photo_id)` when one's ✕ is pressed."""

    _esm = widget_script("dom.js", "thumbnail_widget.js")
    _css = static_text("thumbnail_widget.css")

    def __init__(self, *, on_remove: Callable[[int], None], **kwargs):
        super().__init__(**kwargs)
        self._on_remove = on_remove
        self._tiles: dict[int, tuple[str, bytes]] = {}  # photo id -> (its button's tooltip, JPEG)
        self.add_class("picsort-teach-thumbnails")
        self.on_msg(self._message)

    def __len__(self) -> int:
        return len(self._tiles)

    @property
    def ids(self) -> list[int]:
        return list(self._tiles)

    def add(self, photo_id: int, title: str, jpeg: bytes) -> None:
        """Show one more photo; `title` is its remove button's tooltip (text, never markup)."""
        self._tiles[photo_id] = (title, jpeg)
        self.send({"type": "add", "id": photo_id, "title": title}, [jpeg])

    def remove(self, photo_id: int) -> None:
        if self._tiles.pop(photo_id, None) is not None:
            self.send({"type": "remove", "id": photo_id})

    def _message(self, _widget, content: Any, _buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "hello":  # a view starting: everything it should show, in one message
            self.send({"type": "reset", "tiles": [{"id": photo_id, "title": title}
                                                  for photo_id, (title, _) in self._tiles.items()]},
                      [jpeg for _, jpeg in self._tiles.values()])
        elif kind == "remove" and content.get("id") in self._tiles and type(content.get("id")) is int:
            self._on_remove(content["id"])
        else:
            log.warning("picsort app: ignored a thumbnails message from the page: %.200r", content)
