"""The words picsort's answers are made of, and the rules for them, each written once.

A photo's answer is one of the model's classes, or "none of these" (NONE_LABEL, read by people as NONE_TEXT),
and a class answer may be unsure (its top probability below the card's threshold). Class names become folder
names, CSS hooks and CSV cells, so one rule (`check_class_name`) says which are usable, for the label store, the
model card, the app, `picsort teach` and `picsort classify`. Where answers are counted or copied into folders,
one order (`answer_kind`) decides: none of these first, then unsure, then the class.

Nothing here imports the rest of picsort: every floor above reads its words from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["ACTION_KEYS", "CLASS", "CLASS_KEYS", "MANIFEST_NAME", "NONE", "NONE_LABEL", "NONE_TEXT", "UNSURE",
           "UNSURE_FOLDER", "answer_folder", "answer_kind", "check_class_name", "check_class_names", "check_label",
           "choose_unsure_folder", "keys_help", "label_order", "shown_label"]

NONE_LABEL = "none"  # the label, folder and CSV answer of a photo that looks like none of the classes
NONE_TEXT = "none of these"  # how NONE_LABEL reads to people: the page's buttons, headlines, counts; the review grid
# Where `picsort classify --copy-to` puts the files whose answer is unsure (unless a class takes the name:
# `choose_unsure_folder`).
UNSURE_FOLDER = "unsure"
# The label store's record of decisions (picsort.photos.labels) sits beside its class folders: no class takes its name.
MANIFEST_NAME = "manifest.jsonl"
# The keys that label a photo, the same on the app's cards and on the exported web page.
CLASS_KEYS = "123456789"
ACTION_KEYS = {"none": ("0", NONE_TEXT), "skip": ("S", "skip"), "undo": ("U", "undo")}  # action: (key, words)

# The kinds of answer, in the order `answer_kind` decides them.
NONE, UNSURE, CLASS = "none", "unsure", "class"

# Longest file/folder name most filesystems allow, in bytes.
_MAX_NAME_BYTES = 255


def check_class_name(name: str) -> str:
    """`name` if it is a usable class name, else ValueError naming the problem.

    The one rule for class names (the store, the app and the command line use it): a class name becomes a
    folder name, a CSS hook and a CSV cell, so it must be one printable, visible folder name, and must not be
    the name kept for "none of these" photos.
    """
    if not isinstance(name, str):
        raise ValueError(f"a class name must be text, not {type(name).__name__} ({name!r})")
    problem = None
    hidden = next((ch for ch in name if not ch.isprintable() and ch != " "), None)
    if name == "":
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is not a valid folder name"
    elif "/" in name or "\\" in name:
        problem = "must not contain '/' or '\\'"
    elif hidden is not None:
        problem = f"must contain only printable characters (it has U+{ord(hidden):04X})"
    elif name.startswith("."):
        problem = "must not start with '.'"
    elif name != name.strip():
        problem = "must not start or end with spaces"
    elif name.casefold() == NONE_LABEL:
        problem = "is kept for photos that are none of the classes"
    elif name == MANIFEST_NAME:
        problem = "is reserved for the label store's manifest"
    elif len(name.encode("utf-8", errors="surrogatepass")) > _MAX_NAME_BYTES:
        problem = "is too long"
    if problem:
        raise ValueError(f"class name {name!r} {problem}")
    return name


def check_class_names(names: Sequence[str]) -> tuple[str, ...]:
    """`names` (a model's or a store's classes) as a tuple if each is a usable class name (`check_class_name`)
    and none comes twice; else ValueError naming the problem (TypeError for one string instead of a list)."""
    if isinstance(names, str):
        raise TypeError("classes must be a sequence of names, not one string")
    names = tuple(names)
    for name in names:
        check_class_name(name)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"classes are listed more than once: {', '.join(duplicates)}")
    return names


def shown_label(label: str) -> str:
    """A label (a class or NONE_LABEL) as people read it."""
    return NONE_TEXT if label == NONE_LABEL else label


def check_label(label: str) -> str:
    """`label` if a photo can be stored under it (a usable class name, or NONE_LABEL), else ValueError."""
    return label if label == NONE_LABEL else check_class_name(label)


def label_order(label: str) -> tuple[bool, str]:
    """Sort key of labels as people are shown them: the classes by name, "none of these" last."""
    return label == NONE_LABEL, label


def answer_kind(*, none_of_these: bool, unsure: bool) -> str:
    """NONE, UNSURE or CLASS: the one order in which an answer is read. "None of these" comes first (a photo of
    something else is not a doubtful one of the classes, whatever its top probability), then unsure, then the
    class."""
    if none_of_these:
        return NONE
    return UNSURE if unsure else CLASS


def choose_unsure_folder(classes: Iterable[str]) -> str:
    """The folder unsure answers are copied into beside the class folders: UNSURE_FOLDER, with a leading '_' for
    each class that takes the name (compared as a case-insensitive filesystem would)."""
    taken = {name.casefold() for name in classes}
    folder = UNSURE_FOLDER
    while folder.casefold() in taken:
        folder = f"_{folder}"
    return folder


def answer_folder(label: str, *, none_of_these: bool, unsure: bool, unsure_in: str = UNSURE_FOLDER) -> str:
    """The folder a photo with this answer is copied into: NONE_LABEL, `unsure_in` (`choose_unsure_folder`'s) or
    its class (`label`), in `answer_kind`'s order."""
    kind = answer_kind(none_of_these=none_of_these, unsure=unsure)
    return NONE_LABEL if kind == NONE else unsure_in if kind == UNSURE else label


def keys_help(classes: list[str]) -> str:
    """The keys of a card with these classes, in words: '1–3 the classes, 0 none of these, S skip, U undo'."""
    keys = CLASS_KEYS[: len(classes)]
    first = keys if len(keys) == 1 else f"{keys[0]}–{keys[-1]}"
    return ", ".join([f"{first} the classes", *(f"{key} {words}" for key, words in ACTION_KEYS.values())])
