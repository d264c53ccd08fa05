"""vocabulary.py: the none label, the one class-name rule and the one order of answers."""

from __future__ import annotations

import pytest

from picsort.foundation.vocabulary import (
    CLASS,
    MANIFEST_NAME,
    NONE,
    NONE_LABEL,
    NONE_TEXT,
    UNSURE,
    UNSURE_FOLDER,
    answer_folder,
    answer_kind,
    check_class_name,
    check_class_names,
    check_label,
    choose_unsure_folder,
    label_order,
    shown_label,
)


@pytest.mark.parametrize("name", ["grizzly", "polar bear", "Ursus arctos (brown)", "ours brun", "熊"])
def test_usable_class_names_are_returned(name):
    assert check_class_name(name) == name


@pytest.mark.parametrize(
    ("name", "problem"),
    [("", "is empty"), ("../evil", "'/'"), ("a\\b", "'/'"), (".hidden", "start with '.'"),
     ("gpj.exe\u202e", "U+202E"), ("tab\there", "U+0009"), ("none", "none of the classes"),
     ("None", "none of the classes"), (" teddy", "spaces"), (3, "must be text")],
)
def test_unusable_class_names_are_refused_naming_the_problem(name, problem):
    with pytest.raises(ValueError) as info:
        check_class_name(name)
    assert problem in str(info.value)


def test_a_list_of_classes_is_refused_for_a_bad_name_or_one_listed_twice():
    assert check_class_names(["grizzly", "black"]) == ("grizzly", "black")
    with pytest.raises(ValueError, match="'../evil' must not contain '/'"):
        check_class_names(["grizzly", "../evil"])
    with pytest.raises(ValueError, match="classes are listed more than once: grizzly"):
        check_class_names(["grizzly", "black", "grizzly"])
    with pytest.raises(TypeError, match="not one string"):
        check_class_names("grizzly")


def test_the_none_label_is_no_class_but_a_label_and_reads_as_none_of_these():
    assert check_label(NONE_LABEL) == NONE_LABEL and check_label("grizzly") == "grizzly"
    with pytest.raises(ValueError, match="none of the classes"):
        check_class_name(NONE_LABEL)
    with pytest.raises(ValueError, match="manifest"):
        check_label(MANIFEST_NAME)
    assert shown_label(NONE_LABEL) == NONE_TEXT and shown_label("grizzly") == "grizzly"


def test_labels_are_shown_by_name_with_none_of_these_last():
    assert sorted(["teddy", NONE_LABEL, "black", "zebra"], key=label_order) == ["black", "teddy", "zebra", NONE_LABEL]


@pytest.mark.parametrize(("none_of_these", "unsure", "kind", "folder"), [
    (False, False, CLASS, "grizzly"), (False, True, UNSURE, UNSURE_FOLDER), (True, False, NONE, NONE_LABEL),
    (True, True, NONE, NONE_LABEL),  # none of these comes first, whatever the top probability
])
def test_an_answer_is_none_of_these_then_unsure_then_its_class(none_of_these, unsure, kind, folder):
    assert answer_kind(none_of_these=none_of_these, unsure=unsure) == kind
    assert answer_folder("grizzly", none_of_these=none_of_these, unsure=unsure) == folder
    assert answer_folder("grizzly", none_of_these=none_of_these, unsure=unsure, unsure_in="_unsure") == (
        "_unsure" if kind == UNSURE else folder)


def test_the_unsure_folder_never_takes_a_class_folder():
    assert choose_unsure_folder(["grizzly", "black"]) == UNSURE_FOLDER
    assert choose_unsure_folder(["grizzly", "unsure"]) == "_unsure"
    assert choose_unsure_folder(["Unsure", "_unsure"]) == "__unsure"  # as a case-insensitive disk compares them


def test_the_labelling_keys_read_the_same_on_every_page():
    from picsort.foundation.vocabulary import ACTION_KEYS, CLASS_KEYS, keys_help

    assert keys_help(["black", "grizzly", "teddy"]) == "1–3 the classes, 0 none of these, S skip, U undo"
    assert ACTION_KEYS["none"][0] == "0" and CLASS_KEYS.startswith("123")
