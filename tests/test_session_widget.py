"""The session watch (picsort.session_widget): the kernel's side of the page's "is anyone there?" pings."""

from __future__ import annotations

import pytest

from picsort.session_widget import SessionWatch


@pytest.fixture
def watch(sent_by):
    widget = SessionWatch()
    widget.sent = sent_by(widget)
    yield widget
    widget.close()


def test_the_session_watch_answers_pings(watch):
    watch._answer(watch, {"type": "ping", "n": 3}, [])
    assert watch.sent == [{"type": "pong", "n": 3}]


@pytest.mark.parametrize("message", [None, "ping", {"type": "pong", "n": 1}, {"n": 2}], ids=repr)
def test_anything_but_a_ping_gets_no_answer(watch, message):
    watch._answer(watch, message, [])
    assert watch.sent == []

