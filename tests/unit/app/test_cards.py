"""The app's cards (picsort.app.cards): what a card shows, and what it reports through its callbacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from picsort.app.cards import FORGOTTEN, LabelNotSaved, ProblemCard, ResultCard, percent
from picsort.foundation.shown_text import shown_name
from picsort.foundation.vocabulary import NONE_LABEL, keys_help

REPO = Path(__file__).resolve().parents[3]
CLASSES = ["black", "grizzly", "teddy"]
SURE = {"black": 0.8, "grizzly": 0.15, "teddy": 0.05}


@pytest.fixture
def new_card():
    """`new_card(on_label=..., answer=..., unsure=..., probabilities=...)`: a ResultCard for x.jpg, made from
    plain data as the page makes one, closed after the test."""
    made = []

    def new(on_label=lambda label: f"saved {label}", on_undo=None, explain=None, *, answer=CLASSES[0],
            unsure=False, probabilities=SURE):
        card = ResultCard("x.jpg", b"jpeg", (2, 1), probabilities, answer, unsure=unsure, on_label=on_label,
                          on_undo=on_undo, explain=explain)
        made.append(card)
        return card

    yield new
    for card in made:
        card.close()


def test_importing_the_cards_loads_no_torch():
    # A card shows numbers the classifier already computed; torch takes seconds to load on a cold start.
    done = subprocess.run([sys.executable, "-c", "import picsort.app.cards, sys; print('torch' in sys.modules)"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_result_card_reports_through_its_callbacks_only(new_card):
    """Labels go to on_label, undo to on_undo, Why? to explain; a label no button offers is ignored."""
    calls = []
    card = new_card(on_label=lambda label: calls.append(("label", label)) or f"saved {label}",
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
    card = new_card(on_label=lambda label: calls.append(label) or "saved")
    card._message(card, message, [])
    assert calls == [] and card.saved_as == "" and not card.skipped and card.heatmap == b""


def test_a_label_the_callback_refuses_shows_its_message(new_card):
    def refuse(label):
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


def test_a_card_whose_photo_the_page_let_go_says_so_and_saves_nothing(new_card):
    calls = []
    card = new_card(on_label=lambda label: calls.append(label) or "saved")
    card.cannot_label()
    assert not card.can_label and card.status == FORGOTTEN
    card.choose(CLASSES[0])
    assert calls == [] and card.saved_as == ""
    saved = new_card()
    saved.choose(CLASSES[0])
    saved.cannot_label()
    assert saved.status == f"saved {CLASSES[0]}"  # a saved photo keeps saying where it went


def test_a_closed_card_lets_go_of_its_pictures_and_callbacks(new_card):
    card = new_card(explain=lambda label: b"overlay")
    card.toggle_explanation()
    card.close()
    assert card.picture == b"" and card.heatmap == b""
    assert card._on_label is None and card._explain is None and card.comm is None


@pytest.mark.parametrize("changes, note", [
    ({}, ""),
    ({"unsure": True}, "The model is not sure which of black, grizzly, teddy this is: it may be none of them."),
    ({"answer": NONE_LABEL}, "This photo does not look like any of: black, grizzly, teddy."),
], ids=["sure", "unsure", "none of these"])
def test_the_note_says_when_an_answer_should_not_be_taken_at_face_value(new_card, changes, note):
    card = new_card(**changes)
    assert card.note == note
    assert card.answer == changes.get("answer", CLASSES[0]) and card.closest == CLASSES[0]
    assert card.none_of_these == (card.answer == NONE_LABEL)


def test_a_card_shows_the_bars_in_the_order_given_and_explains_the_closest_class(new_card):
    probabilities = {"black": 0.2, "grizzly": 0.7, "teddy": 0.1}
    explained = []
    card = new_card(answer=NONE_LABEL, probabilities=probabilities, explain=lambda label: explained.append(label) or b"x")
    assert card.classes == CLASSES and card.percents == ["20%", "70%", "10%"]
    assert card.closest == "grizzly" and card.sort_key == (1, 0.7)
    card.toggle_explanation()
    assert explained == ["grizzly"]


def test_an_answer_that_is_none_of_the_classes_is_refused():
    with pytest.raises(ValueError, match="'panda' is none of the card's classes"):
        ResultCard("x.jpg", b"jpeg", (2, 1), SURE, "panda", on_label=lambda label: "")


def test_the_keys_the_card_acts_on_are_the_keys_the_page_lists(new_card):
    card = new_card()
    assert card.class_keys == ["1", "2", "3"]
    assert card.action_keys == {"none": "0", "skip": "S", "undo": "U"}
    assert keys_help(CLASSES) == "1–3 the classes, 0 none of these, S skip, U undo"
    assert keys_help(["cat"]) == "1 the classes, 0 none of these, S skip, U undo"
    eleven = new_card(probabilities={f"class {n}": 1 / 11 for n in range(11)}, answer="class 0")
    assert eleven.class_keys == [*"123456789", "", ""]  # no key past the ninth class: its button still works
    assert keys_help(eleven.classes).startswith("1–9 the classes")


def test_a_percentage_never_rounds_to_0_or_100_for_what_is_not_exactly_that():
    assert [percent(p) for p in (0, 0.004, 0.5, 0.98, 0.994, 1)] == ["0%", "<1%", "50%", "98%", ">99%", "100%"]


def test_bidi_and_control_characters_are_stripped_from_names_shown():
    assert shown_name("photo\u202egpj.exe") == "photogpj.exe"
    assert shown_name("a\x00b\nc.jpg") == "abc.jpg"
    assert shown_name("\u200f") == "unnamed file"
    assert len(shown_name("x" * 1000)) <= 120


def test_a_problem_card_shows_its_name_and_message_and_offers_no_label():
    card = ProblemCard("notes\u202etxt.jpg", "'notes.txt' is not an image")
    try:
        assert not card.ok and card.sort_key < (1, 0.0)  # problems sort first
        assert card.name == "notestxt.jpg" and card.problem == "'notes.txt' is not an image"
    finally:
        card.close()


def test_each_kind_of_card_brings_the_stylesheet_of_its_parts(new_card):
    # A page of problem cards only has no result card to bring it: the page itself injects none.
    problem = ProblemCard("x.jpg", "is empty")
    try:
        for card in (problem, new_card()):
            assert ".picsort-card {" in card._css and ".picsort-filename" in card._css
            assert ".picsort-label-button" in card._css and ".picsort-card .picsort-error" in card._css
    finally:
        problem.close()


def test_names_and_messages_are_set_as_text_never_as_markup():
    script = ResultCard._esm  # cards.js with dom.js's h() before it
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "outerHTML" not in script
