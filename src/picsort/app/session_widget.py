"""A page that says when it is dead, and says whose it is.

The browser pings the kernel, and shows a banner when nobody answers. Once the kernel is gone (culled when idle,
killed for memory, restarted), the page would otherwise ignore clicks and uploads without a word. The pings also
count as activity, so an open tab's kernel is not culled as idle while a closed tab's kernel is.

The page also sends its visitor id: 128 random bits the browser keeps in its localStorage (a new one each page
where the browser keeps nothing), so Teach mode gives each browser its own photos and finds them again after a
reload or a restart (picsort.foundation.folders.visitor_teach_dir). The kernel takes only a well-formed id, once; anything
else gets a fresh one, which the page keeps instead.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, Callable

import anywidget
import traitlets

from picsort.app.widget_scripts import static_text
from picsort.foundation.folders import is_visitor_id

__all__ = ["SessionWatch"]

log = logging.getLogger(__name__)
PING_SECONDS = 5
# Longer than any single thing the kernel does between two messages (one photo, one "Why?", one zip),
# so a busy kernel is not taken for a dead one.
DEAD_AFTER_SECONDS = 30


class SessionWatch(anywidget.AnyWidget):
    """Answers the page's pings (its view puts up the "session has ended" banner when they go unanswered) and
    learns the page's visitor id: `visitor`, None until it arrives, and `on_visitor(id)` once it has."""

    _esm = static_text("session_widget.js")

    interval_ms = traitlets.Int(PING_SECONDS * 1000).tag(sync=True)
    timeout_ms = traitlets.Int(DEAD_AFTER_SECONDS * 1000).tag(sync=True)

    def __init__(self, *, on_visitor: Callable[[str], None] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.visitor: str | None = None
        self._on_visitor = on_visitor
        self.on_msg(self._answer)

    def _answer(self, _widget, content: Any, _buffers) -> None:
        if not isinstance(content, dict):
            return
        if content.get("type") == "ping":
            self.send({"type": "pong", "n": content.get("n")})
        elif content.get("type") == "visitor":
            self._visitor(content.get("id"))

    def _visitor(self, sent: Any) -> None:
        if self.visitor is not None:
            # One visitor a page: an id sent later cannot switch this page to someone else's photos.
            self.send({"type": "visitor", "id": self.visitor})
            return
        if is_visitor_id(sent):
            self.visitor = sent
        else:
            log.warning("picsort app: refused a visitor id from the page; gave it a fresh one")
            self.visitor = secrets.token_hex(16)
        self.send({"type": "visitor", "id": self.visitor})  # the page keeps this one (and stops sending its own)
        if self._on_visitor is not None:
            self._on_visitor(self.visitor)
