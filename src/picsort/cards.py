"""The app's cards: one widget per uploaded file, reporting through callbacks.

A :class:`ResultCard` shows what the model thinks of one photo (picture, verdict, a bar per class, "Why?") and
offers the labels; it knows nothing of the label store or the page: it calls `on_label(card, label)` (which
saves and returns the line to show), `on_undo()` and `explain(class_name)` (which returns a JPEG), all given by
whoever makes the card. A :class:`ProblemCard` says why a file could not be used. Each card is a single widget
(plus its layout), so a page of hundreds of cards stays light in the browser.
"""

from __future__ import annotations

import hashlib
import html
import logging
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import anywidget
import ipywidgets as widgets
import traitlets

from picsort.labels import NONE_LABEL, NONE_TEXT, shown_label

if TYPE_CHECKING:  # only for the hints: picsort.classify imports torch, which a card never needs (~6 s cold)
    from picsort.classify import Prediction

__all__ = ["LabelNotSaved", "ProblemCard", "ResultCard", "percent", "shown_name"]

log = logging.getLogger(__name__)

GENERIC_PROBLEM = "Something went wrong with {name}. Please try again, or try another picture."
FORGOTTEN = "This photo is no longer held (too many photos on the page): upload it again to label it."
# Bidi controls would let a name like "gpj.exe" display as "exe.jpg"; other control characters show as boxes.
_HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn")
_MAX_SHOWN = 120


class LabelNotSaved(Exception):
    """Raised by an `on_label` callback to show its message on the card (nothing was saved)."""


def shown_name(name: str) -> str:
    """A user's file name made safe to show: no control or bidi characters, bounded length."""
    text = "".join(ch for ch in str(name) if unicodedata.category(ch) not in _HIDDEN_CATEGORIES)
    text = text.strip() or "unnamed file"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


def percent(probability: float) -> str:
    """A probability as a whole percentage; never shows 0% or 100% for something that isn't exactly that."""
    value = probability * 100
    if 0 < value < 1:
        return "<1%"
    if 99 < value < 100:
        return ">99%"
    return f"{value:.0f}%"


def verdict_note(prediction: Prediction, classes: list[str]) -> str:
    """The sentence a card shows above its bars when the guess should not be taken at face value."""
    if prediction.none_of_these:
        return f"This photo does not look like any of: {', '.join(classes)}."
    if prediction.unsure:
        return f"The model is not sure which of {', '.join(classes)} this is: it may be none of them."
    return ""


class ResultCard(anywidget.AnyWidget):
    """A classified photo, ready to be labelled with one of `classes`, "none of these", or skipped."""

    _esm = (Path(__file__).with_name("cards.js")).read_text()

    name = traitlets.Unicode("").tag(sync=True)
    picture = traitlets.Bytes(b"").tag(sync=True)
    picture_width = traitlets.Int(0).tag(sync=True)
    picture_height = traitlets.Int(0).tag(sync=True)
    classes = traitlets.List(traitlets.Unicode()).tag(sync=True)
    probabilities = traitlets.List(traitlets.Float()).tag(sync=True)
    percents = traitlets.List(traitlets.Unicode()).tag(sync=True)
    guess = traitlets.Unicode("").tag(sync=True)  # the answer, Prediction.label: a class or NONE_LABEL
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
    # Sent to cards.js so that the label and its words are written in Python only.
    none_label = traitlets.Unicode(NONE_LABEL).tag(sync=True)
    none_text = traitlets.Unicode(NONE_TEXT).tag(sync=True)

    def __init__(self, file_name: str, prediction: Prediction, classes: list[str], picture: bytes,
                 picture_size: tuple[int, int], *, data: bytes,
                 on_label: Callable[["ResultCard", str], str],
                 on_undo: Callable[[], None] | None = None,
                 explain: Callable[[str], bytes] | None = None):
        classes = list(classes)
        super().__init__(
            name=shown_name(file_name), picture=picture, picture_width=picture_size[0],
            picture_height=picture_size[1], classes=classes,
            probabilities=[float(prediction.probabilities[c]) for c in classes],
            percents=[percent(prediction.probabilities[c]) for c in classes], guess=prediction.label,
            closest=prediction.closest, unsure=bool(prediction.unsure), none_of_these=bool(prediction.none_of_these),
            status="Is this right? Choose the correct label to save the photo.",
            note=verdict_note(prediction, classes), can_explain=explain is not None)
        self.file_name = file_name
        self.prediction = prediction
        self.data: bytes | None = data
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._on_label = on_label
        self._on_undo = on_undo
        self._explain = explain
        self.add_class("picsort-card-widget")
        self.on_msg(self._message)

    # -- what the page asks of a card -------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return True

    @property
    def sort_key(self) -> tuple[int, float]:
        """Problems first, then the least sure results: those need a person's eye most."""
        return (1, self.prediction.probability)

    def forget_data(self) -> None:
        """Drop the photo's bytes (memory cap): the card stays, but can no longer be labelled."""
        self.data = None
        self.can_label = False
        if not self.saved_as:
            self.status, self.status_kind = FORGOTTEN, ""

    def show_label(self, label: str | None, note: str) -> None:
        """Show `label` as this photo's saved label (None: not saved), e.g. after an undo."""
        self.saved_as = label or ""
        self.status, self.status_kind = note, ("saved" if label else "")

    def close(self) -> None:
        """Close the widget and let go of the bytes and the callbacks (which hold the app)."""
        self._on_label = self._on_undo = self._explain = None
        self.data = None
        self.picture = self.heatmap = b""
        layout = self.layout
        super().close()
        layout.close()

    # -- actions ----------------------------------------------------------------------------------------

    def choose(self, label: str) -> None:
        """Save the photo as `label` (a class or NONE_LABEL) through `on_label`, and show the outcome."""
        if self.data is None or self._on_label is None:
            return
        try:
            note = self._on_label(self, label)
        except LabelNotSaved as problem:
            self.status, self.status_kind = str(problem), "error"
            return
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: saving %r as %r failed", self.file_name, label)
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
            self.heatmap = self._explain(self.prediction.closest)
        except Exception:  # noqa: BLE001
            log.exception("picsort app: explaining %r failed", self.file_name)
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


class ProblemCard(widgets.HTML):
    """A file that could not be used, and why, in plain words. Nothing to label."""

    def __init__(self, file_name: str, message: str):
        self.file_name = file_name
        self.problem = message
        shown = html.escape(shown_name(file_name))
        super().__init__(
            f'<div class="picsort-card picsort-card-problem">'
            f'<div class="picsort-card-title"><span class="picsort-filename">{shown}</span></div>'
            f'<div class="picsort-error">⚠ {html.escape(message)}</div>'
            f'<div class="picsort-problem-hint">Nothing was saved for this file.</div></div>')
        self.add_class("picsort-card-widget")

    ok = False
    data = None
    sort_key = (0, 0.0)

    @property
    def name(self) -> str:
        return shown_name(self.file_name)

    def forget_data(self) -> None:
        pass

    def close(self) -> None:
        layout, style = self.layout, self.style
        super().close()
        layout.close()
        style.close()
