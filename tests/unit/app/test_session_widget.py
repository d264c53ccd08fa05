"""The session watch (picsort.app.session_widget): the kernel's side of the page's "is anyone there?" pings."""

from __future__ import annotations

import pytest

from picsort.app.session_widget import SessionWatch


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



VISITOR = "0123456789abcdef" * 2


def test_the_pages_visitor_id_is_taken_once_and_reported(sent_by):
    arrived = []
    widget = SessionWatch(on_visitor=arrived.append)
    sent = sent_by(widget)
    assert widget.visitor is None
    widget._answer(widget, {"type": "visitor", "id": VISITOR}, [])
    assert widget.visitor == VISITOR and arrived == [VISITOR] and sent == [{"type": "visitor", "id": VISITOR}]
    widget._answer(widget, {"type": "visitor", "id": "f" * 32}, [])  # a later id cannot switch visitors
    assert widget.visitor == VISITOR and arrived == [VISITOR] and sent[-1] == {"type": "visitor", "id": VISITOR}
    widget.close()


@pytest.mark.parametrize("forged", ["../../etc", "F" * 32, "0" * 31, None, 12, ["0" * 32]], ids=repr)
def test_a_forged_visitor_id_gets_a_fresh_one_which_the_page_is_told(sent_by, forged):
    arrived = []
    widget = SessionWatch(on_visitor=arrived.append)
    sent = sent_by(widget)
    widget._answer(widget, {"type": "visitor", "id": forged}, [])
    fresh = widget.visitor
    assert fresh != forged and len(fresh) == 32 and int(fresh, 16) >= 0 and arrived == [fresh]
    assert sent == [{"type": "visitor", "id": fresh}]
    widget.close()
