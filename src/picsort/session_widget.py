"""A page that says when it is dead: the browser pings the kernel, and shows a banner when nobody answers.

Once the kernel is gone (culled when idle, killed for memory, restarted), the page would otherwise ignore
clicks and uploads without a word. The pings also count as activity, so an open tab's kernel is not culled
as idle while a closed tab's kernel is.
"""

from __future__ import annotations

from pathlib import Path

import anywidget
import traitlets

__all__ = ["SessionWatch"]

PING_SECONDS = 5
# Longer than any single thing the kernel does between two messages (one photo, one "Why?", one zip),
# so a busy kernel is not taken for a dead one.
DEAD_AFTER_SECONDS = 30


class SessionWatch(anywidget.AnyWidget):
    """Answers the page's pings; its view puts up the "session has ended" banner when they go unanswered."""

    _esm = (Path(__file__).with_name("session_widget.js")).read_text()

    interval_ms = traitlets.Int(PING_SECONDS * 1000).tag(sync=True)
    timeout_ms = traitlets.Int(DEAD_AFTER_SECONDS * 1000).tag(sync=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.on_msg(self._answer)

    def _answer(self, _widget, content: dict, _buffers) -> None:
        if isinstance(content, dict) and content.get("type") == "ping":
            self.send({"type": "pong", "n": content.get("n")})
