"""The app's cards: one widget per uploaded file, holding only what it shows and reporting through callbacks.

A :class:`ResultCard` shows what the model thinks of one photo (picture, verdict, a bar per class, "Why?") and
offers the labels. It is made from plain data (the name, the picture, the probabilities, the answer) and knows
nothing of the photo's bytes, the label store or the page: it calls `on_label(label)` (which saves and returns
the line to show), `on_undo()` and `explain(class_name)` (which returns a JPEG), all given by whoever makes the
card. A :class:`ProblemCard` says why a file could not be used. Each card is a single widget (plus its layout),
so a page of hundreds of cards stays light in the browser; both bring their stylesheet (cards.css).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import anywidget
import traitlets

from picsort.app.widget_scripts import static_text, widget_script
from picsort.foundation.shown_text import shown_name
from picsort.foundation.vocabulary import ACTION_KEYS, CLASS_KEYS, NONE_LABEL, NONE_TEXT

__all__ = ["LabelNotSaved", "ProblemCard", "ResultCard", "percent"]

log = logging.getLogger(__name__)

GENERIC_PROBLEM = "Something went wrong with {name}. Please try again, or try another picture."
FORGOTTEN = "This photo is no longer held (too many photos on the page): upload it again to label it."
# The keys on a card in focus, written here only: cards.js acts on them (sent as the traits class_keys and
# action_keys) and the page lists them (keys_help). The first nine classes have the keys 1-9.
_STYLE = static_text("cards.css")
_SCRIPT = widget_script("dom.js", "cards.js")


class LabelNotSaved(Exception):
    """Raised by an `on_label` callback to show its message on the card (nothing was saved)."""


def percent(probability: float) -> str:
    """A probability as a whole percentage; never shows 0% or 100% for something that isn't exactly that."""
    value = probability * 100
    if 0 < value < 1:
        return "<1%"
    if 99 < value < 100:
        return ">99%"
    return f"{value:.0f}%"


def verdict_note(answer: str, unsure: bool, classes: list[str]) -> str:
    """The sentence a card shows above its bars when the answer should not be taken at face value."""
    if answer == NONE_LABEL:
        return f"This photo does not look like any of: {', '.join(classes)}."
    if unsure:
        return f"The model is not sure which of {', '.join(classes)} this is: it may be none of them."
    return ""


class _Card(anywidget.AnyWidget):
    """What both cards share: the script that draws them (cards.js) and their stylesheet."""

    _esm = _SCRIPT
    _css = _STYLE

    name = traitlets.Unicode("").tag(sync=True)  # the file's name as shown (shown_name)

    def close(self) -> None:
        layout = self.layout
        super().close()
        layout.close()


class ResultCard(_Card):
    """A classified photo, ready to be labelled with one of its classes, "none of these", or skipped.

    `probabilities`: each class's probability, in the order the bars and buttons show them; `answer`: the class
    the model answers, or NONE_LABEL when the photo looks like none of them; `unsure`: the model's top probability
    is low. `on_label(label)` saves the photo as `label` and returns the line the card then shows, or raises
    LabelNotSaved with the line saying why not.
    """

    picture = traitlets.Bytes(b"").tag(sync=True)
    picture_width = traitlets.Int(0).tag(sync=True)
    picture_height = traitlets.Int(0).tag(sync=True)
    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    probabilities = traitlets.List(traitlets.Float()).tag(sync=True)
    percents = traitlets.List(traitlets.Unicode()).tag(sync=True)
    answer = traitlets.Unicode("").tag(sync=True)  # a class or NONE_LABEL
    closest = traitlets.Unicode("").tag(sync=True)  # the top class, the one "Why?" explains
    unsure = traitlets.Bool(False).tag(sync=True)
    none_of_these = traitlets.Bool(False).tag(sync=True)
    note = traitlets.Unicode("").tag(sync=True)  # what to know before trusting the verdict, in plain words
    saved_as = traitlets.Unicode("").tag(sync=True)  # "" until saved; NONE_LABEL for "none of these"
    skipped = traitlets.Bool(False).tag(sync=True)
    status = traitlets.Unicode("").tag(sync=True)
    status_kind = traitlets.Unicode("").tag(sync=True)  # "", "saved" or "error": a CSS class on the line
    heatmap = traitlets.Bytes(b"").tag(sync=True)  # the "Why?" overlay as JPEG; empty when hidden
    explaining = traitlets.Bool(False).tag(sync=True)
    can_label = traitlets.Bool(True).tag(sync=True)
    can_explain = traitlets.Bool(True).tag(sync=True)
    # Sent to cards.js so that the label, its words and the keys are written in Python only.
    none_label = traitlets.Unicode(NONE_LABEL).tag(sync=True)
    none_text = traitlets.Unicode(NONE_TEXT).tag(sync=True)
    class_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)  # each class's key ("" past the ninth)
    action_keys = traitlets.Dict({action: key for action, (key, _) in ACTION_KEYS.items()}).tag(sync=True)

    def __init__(self, name: str, picture: bytes, picture_size: tuple[int, int], probabilities: Mapping[str, float],
                 answer: str, *, unsure: bool = False, on_label: Callable[[str], str],
                 on_undo: Callable[[], None] | None = None, explain: Callable[[str], bytes] | None = None):
        classes = list(probabilities)
        if not classes:
            raise ValueError("a result card needs the probability of at least one class")
        if answer != NONE_LABEL and answer not in classes:
            raise ValueError(f"the answer {answer!r} is none of the card's classes ({', '.join(classes)}) "
                             f"nor {NONE_LABEL!r}")
        closest = max(classes, key=lambda name: probabilities[name])  # the first of equals, as argmax
        super().__init__(
            name=shown_name(name), picture=picture, picture_width=picture_size[0], picture_height=picture_size[1],
            classes=classes, probabilities=[float(probabilities[c]) for c in classes],
            percents=[percent(probabilities[c]) for c in classes], answer=answer,
            closest=answer if answer != NONE_LABEL else closest, unsure=bool(unsure),
            none_of_these=answer == NONE_LABEL,
            status="Is this right? Choose the correct label to save the photo.",
            note=verdict_note(answer, unsure, classes), can_explain=explain is not None,
            class_keys=[CLASS_KEYS[i] if i < len(CLASS_KEYS) else "" for i in range(len(classes))])
        self._on_label = on_label
        self._on_undo = on_undo
        self._explain = explain
        self.add_class("picsort-card-widget")
        self.on_msg(self._message)

    # -- what the page asks of a card -------------------------------------------------------------------

    ok = True

    @property
    def sort_key(self) -> tuple[int, float]:
        """Problems first, then the least sure results: those need a person's eye most."""
        return (1, max(self.probabilities))

    def cannot_label(self) -> None:
        """The page let go of the photo's bytes (memory cap): the card stays, but offers no label any more."""
        self.can_label = False
        if not self.saved_as:
            self.status, self.status_kind = FORGOTTEN, ""

    def show_label(self, label: str | None, note: str) -> None:
        """Show `label` as this photo's saved label (None: not saved), e.g. after an undo."""
        self.saved_as = label or ""
        self.status, self.status_kind = note, ("saved" if label else "")

    def close(self) -> None:
        """Close the widget and let go of the pictures and the callbacks (which hold the app)."""
        self._on_label = self._on_undo = self._explain = None
        self.picture = self.heatmap = b""
        super().close()

    # -- actions ----------------------------------------------------------------------------------------

    def choose(self, label: str) -> None:
        """Save the photo as `label` (a class or NONE_LABEL) through `on_label`, and show the outcome."""
        if not self.can_label or self._on_label is None:
            return
        try:
            note = self._on_label(label)
        except LabelNotSaved as problem:
            self.status, self.status_kind = str(problem), "error"
            return
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: saving %r as %r failed", self.name, label)
            self.status, self.status_kind = GENERIC_PROBLEM.format(name=f"'{self.name}'"), "error"
            return
        self.skipped = False
        self.show_label(label, note)

    def skip(self) -> None:
        """Leave the photo unlabelled (nothing saved) and say so."""
        if not self.saved_as:
            self.skipped = True
            self.status, self.status_kind = "Skipped: not saved.", ""

    def undo(self) -> None:
        if self._on_undo is not None:
            self._on_undo()

    def toggle_explanation(self) -> None:
        """Show (or hide again) the Grad-CAM overlay for the closest class (the answer, unless none of these)."""
        if self.heatmap:
            self.heatmap = b""
            return
        if self._explain is None:
            return
        self.explaining = True
        try:
            self.heatmap = self._explain(self.closest)
        except Exception:  # noqa: BLE001
            log.exception("picsort app: explaining %r failed", self.name)
            self.status, self.status_kind = GENERIC_PROBLEM.format(name=f"'{self.name}'"), "error"
        finally:
            self.explaining = False

    def _message(self, _widget, content: dict, _buffers) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "label" and isinstance(content.get("label"), str):
            label = content["label"]
            if label in self.classes or label == NONE_LABEL:
                self.choose(label)
        elif kind == "skip":
            self.skip()
        elif kind == "undo":
            self.undo()
        elif kind == "why":
            self.toggle_explanation()


class ProblemCard(_Card):
    """A file that could not be used, and why, in plain words. Nothing to label."""

    problem = traitlets.Unicode("").tag(sync=True)  # the message, shown as text

    def __init__(self, name: str, message: str):
        super().__init__(name=shown_name(name), problem=message)
        self.add_class("picsort-card-widget")

    ok = False
    sort_key = (0, 0.0)
