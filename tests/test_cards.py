"""The app's cards (picsort.cards): what a card shows, and what it reports through its callbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from picsort.cards import FORGOTTEN, LabelNotSaved, ProblemCard, ResultCard, percent, shown_name
from picsort.labels import NONE_LABEL

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["black", "grizzly", "teddy"]


@pytest.fixture
def new_card(make_prediction):
    """`new_card(on_label=..., **prediction_changes)`: a ResultCard for x.jpg, closed after the test."""
    made = []

    def new(on_label=lambda card, label: f"saved {label}", on_undo=None, explain=None, **changes):
        card = ResultCard("x.jpg", make_prediction(CLASSES, **changes), CLASSES, b"jpeg", (2, 1), data=b"photo",
                          on_label=on_label, on_undo=on_undo, explain=explain)
        made.append(card)
        return card

    yield new
    for card in made:
        card.close()


def test_importing_the_cards_loads_no_torch():
    # A card shows numbers the classifier already computed; torch takes seconds to load on a cold start.
    done = subprocess.run([sys.executable, "-c", "import picsort.cards, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_result_card_reports_through_its_callbacks_only(new_card):
    """Labels go to on_label, undo to on_undo, Why? to explain; a label no button offers is ignored."""
    calls = []
    card = new_card(on_label=lambda c, label: calls.append(("label", label)) or f"saved {label}",
                    on_undo=lambda: calls.append(("undo",)), explain=lambda label: b"overlay-" + label.encode())
    for message in ({"type": "label", "label": CLASSES[1]}, {"type": "label", "label": "nope"},
                    {"type": "label", "label": NONE_LABEL}, {"type": "undo"}, {"type": "why"}):
        card._message(card, message, [])
    assert calls == [("label", CLASSES[1]), ("label", NONE_LABEL), ("undo",)]
    assert card.saved_as == NONE_LABEL and card.status == f"saved {NONE_LABEL}" and card.status_kind == "saved"
    assert card.heatmap == b"overlay-" + CLASSES[0].encode()
    card._message(card, {"type": "why"}, [])
    assert card.heatmap == b""


@pytest.mark.parametrize("message", [None, 5, [], {"type": "label"}, {"type": "label", "label": 3},
                                     {"type": "rm -rf"}], ids=repr)
def test_a_message_no_card_sends_changes_nothing(new_card, message):
    calls = []
    card = new_card(on_label=lambda c, label: calls.append(label) or "saved")
    card._message(card, message, [])
    assert calls == [] and card.saved_as == "" and not card.skipped and card.heatmap == b""


def test_a_label_the_callback_refuses_shows_its_message(new_card):
    def refuse(card, label):
        raise LabelNotSaved("Not saved: the disk is full.")

    card = new_card(on_label=refuse)
    card.choose(CLASSES[0])
    assert card.saved_as == "" and card.status == "Not saved: the disk is full." and card.status_kind == "error"


def test_an_unexpected_failure_to_save_or_explain_shows_a_plain_message(new_card):
    def broken(*args):
        raise RuntimeError("/srv/secret/path exploded")

    card = new_card(on_label=broken, explain=broken)
    card.choose(CLASSES[0])
    assert card.saved_as == "" and card.status_kind == "error"
    assert card.status == "Something went wrong with 'x.jpg'. Please try again, or try another picture."
    card.status = ""
    card.toggle_explanation()
    assert "Something went wrong" in card.status and "secret" not in card.status and not card.explaining


def test_skip_says_nothing_was_saved_and_a_saved_photo_cannot_be_skipped(new_card):
    card = new_card()
    card._message(card, {"type": "skip"}, [])
    assert card.skipped and card.status == "Skipped: not saved."
    card.choose(CLASSES[2])
    assert not card.skipped and card.saved_as == CLASSES[2]
    card.skip()
    assert not card.skipped and card.status == f"saved {CLASSES[2]}"


def test_a_card_whose_bytes_are_forgotten_says_so_and_saves_nothing(new_card):
    calls = []
    card = new_card(on_label=lambda c, label: calls.append(label) or "saved")
    card.forget_data()
    assert not card.can_label and card.status == FORGOTTEN
    card.choose(CLASSES[0])
    assert calls == [] and card.saved_as == ""
    saved = new_card()
    saved.choose(CLASSES[0])
    saved.forget_data()
    assert saved.status == f"saved {CLASSES[0]}"  # a saved photo keeps saying where it went


def test_a_closed_card_lets_go_of_its_bytes_and_callbacks(new_card):
    card = new_card(explain=lambda label: b"overlay")
    card.toggle_explanation()
    card.close()
    assert card.data is None and card.picture == b"" and card.heatmap == b""
    assert card._on_label is None and card._explain is None and card.comm is None


@pytest.mark.parametrize("changes, note", [
    ({}, ""),
    ({"unsure": True}, "The model is not sure which of black, grizzly, teddy this is: it may be none of them."),
    ({"none_of_these": True, "similarity": 0.1}, "This photo does not look like any of: black, grizzly, teddy."),
], ids=["sure", "unsure", "none of these"])
def test_the_note_says_when_an_answer_should_not_be_taken_at_face_value(new_card, changes, note):
    card = new_card(**changes)
    assert card.note == note
    assert card.guess == (NONE_LABEL if changes.get("none_of_these") else CLASSES[0]) and card.closest == CLASSES[0]


def test_a_percentage_never_rounds_to_0_or_100_for_what_is_not_exactly_that():
    assert [percent(p) for p in (0, 0.004, 0.5, 0.98, 0.994, 1)] == ["0%", "<1%", "50%", "98%", ">99%", "100%"]


def test_bidi_and_control_characters_are_stripped_from_names_shown():
    assert shown_name("photo\u202egpj.exe") == "photogpj.exe"
    assert shown_name("a\x00b\nc.jpg") == "abc.jpg"
    assert shown_name("\u200f") == "unnamed file"
    assert len(shown_name("x" * 1000)) <= 120


def test_a_problem_card_shows_its_name_and_message_as_text_and_offers_no_label():
    card = ProblemCard('<img src=x onerror="alert(1)">.jpg', "is <b>empty</b>")
    try:
        assert not card.ok and card.data is None and card.sort_key < (1, 0.0)  # problems sort first
        assert "<img" not in card.value and "&lt;img" in card.value and "is &lt;b&gt;empty&lt;/b&gt;" in card.value
        assert "Nothing was saved" in card.value
    finally:
        card.close()
