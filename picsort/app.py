"""The web app: upload photos, see what the model thinks and why, and label them for the next training round.

`app.ipynb` calls :func:`build_app`; Voila turns that notebook into the page. Everything the page does lives
in :class:`ClassifierApp`, whose :meth:`ClassifierApp.handle_upload` takes the same entries the upload widget
produces, so the tests drive it without a browser.

This module must not import fastai (directly or through picsort modules): serving uses the plain-torch
network from `picsort.classify`, which starts faster and needs less memory.
"""

from __future__ import annotations

import html
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import ipywidgets as widgets
from PIL import Image

from picsort.classify import Classifier, Prediction, load_model
from picsort.images import MAX_UPLOAD_BYTES, UnusableImageError, image_from_bytes
from picsort.labels import LabelStore

__all__ = ["ClassifierApp", "Card", "build_app", "labels_dir"]

log = logging.getLogger(__name__)

LABELS_VARIABLE = "PICSORT_LABELS_DIR"
DEFAULT_LABELS_DIR = Path(__file__).resolve().parent.parent / "labels"
THUMBNAIL_SIZE = 200  # pixels, longest side of a card's picture
HEATMAP_SIZE = 320  # the "Why?" picture is a little larger so the colours can be read
EXPLAIN_SIZE = 640  # longest side kept for Grad-CAM; the network sees ~150 px anyway
# Older cards are dropped past these limits, so a long session doesn't keep every upload in memory
# (a card keeps its file's bytes until then, to save it under a label). The newest upload is always kept.
MAX_CARDS = 60
MAX_KEPT_BYTES = 200 * 1024 * 1024
GENERIC_PROBLEM = "Something went wrong with '{name}'. Please try again, or try another picture."

# A little CSS for what ipywidgets' Layout can't say (fonts, colours in HTML text).
STYLE = """
<style>
.picsort-card { font-size: 14px; }
.picsort-filename { font-weight: bold; word-break: break-all; }
.picsort-verdict { font-size: 18px; }
.picsort-unsure-note { color: #8a4b00; }
.picsort-error { color: #b00020; }
.picsort-saved { color: #1b5e20; font-weight: bold; }
.picsort-count { margin-right: 1em; white-space: nowrap; }
</style>
"""


def labels_dir(folder: Path | str | None = None) -> Path:
    """Where labelled images go: the folder given, else `$PICSORT_LABELS_DIR`, else `labels/` in the repo."""
    return Path(folder or os.environ.get(LABELS_VARIABLE) or DEFAULT_LABELS_DIR)


def build_app(model_folder: Path | str | None = None, labels_folder: Path | str | None = None) -> widgets.Widget:
    """The whole page as one widget: load the model and the label store, wire up the upload."""
    classifier = load_model(model_folder)
    app = ClassifierApp(classifier, LabelStore(labels_dir(labels_folder), classifier.classes))
    return app.widget


# ---- small helpers ---------------------------------------------------------------------------------------


def escape(text: Any) -> str:
    """Text made safe for an HTML widget: file names come from users and must never become markup."""
    return html.escape(str(text), quote=True)


def percent(probability: float) -> str:
    """A probability as a whole percentage; never shows 0% or 100% for something that isn't exactly that."""
    value = probability * 100
    if 0 < value < 1:
        return "<1%"
    if 99 < value < 100:
        return ">99%"
    return f"{value:.0f}%"


def reduced(image: Image.Image, size: int) -> Image.Image:
    """`image` scaled down to at most `size` pixels on its longest side (the same image if already small)."""
    scale = size / max(image.size)
    if scale >= 1:
        return image
    width, height = max(1, round(image.width * scale)), max(1, round(image.height * scale))
    # reducing_gap: shrink big photos by whole factors first; much faster, no visible difference.
    return image.resize((width, height), Image.BILINEAR, reducing_gap=3.0)


def image_widget(image: Image.Image, size: int, css_class: str) -> widgets.Image:
    """A JPEG picture widget of `image` scaled down to `size`, with its size set so the page doesn't jump."""
    small = reduced(image, size)
    buffer = io.BytesIO()
    small.convert("RGB").save(buffer, format="JPEG", quality=85)
    picture = widgets.Image(value=buffer.getvalue(), format="jpeg", width=small.width, height=small.height,
                            layout=widgets.Layout(width=f"{small.width}px", height=f"{small.height}px"))
    picture.add_class(css_class)
    return picture


def html_widget(text: str, css_class: str) -> widgets.HTML:
    """An HTML widget with a stable CSS class (the browser test and the stylesheet use these)."""
    widget = widgets.HTML(text)
    widget.add_class(css_class)
    return widget


def entry_field(entry: Any, name: str, default: Any = None) -> Any:
    """A field of an upload entry: ipywidgets 8 gives `Bunch` objects, tests may pass plain dicts."""
    if isinstance(entry, dict):
        return entry.get(name, default)
    return getattr(entry, name, default)


@dataclass
class Upload:
    """One uploaded file as the app needs it."""

    name: str
    content: memoryview

    @classmethod
    def from_entry(cls, entry: Any) -> "Upload":
        name = str(entry_field(entry, "name") or "unnamed file")
        content = entry_field(entry, "content")
        # memoryview() accepts bytes, bytearray and memoryview without copying; None means an empty file.
        return cls(name, memoryview(b"" if content is None else content))


# ---- one card per uploaded file --------------------------------------------------------------------------


class Card:
    """What the page shows for one uploaded file: its result, or why it couldn't be used.

    A card for a usable picture keeps the file's bytes (to save them under a label) and a reduced copy of
    the picture (for "Why?"); a card for a bad file keeps nothing but its message.
    """

    def __init__(self, app: "ClassifierApp", name: str, *, data: bytes | None = None,
                 image: Image.Image | None = None, prediction: Prediction | None = None,
                 problem: str | None = None):
        self.app = app
        self.name = name
        self.data = data
        self.prediction = prediction
        self.problem = problem
        self.saved_as: str | None = None
        self.label_buttons: dict[str, widgets.Button] = {}
        self.heatmap: widgets.Image | None = None
        self._explain_image: Image.Image | None = None
        if problem is not None:
            self.widget = self._problem_widget(problem)
        else:
            # Keep only a reduced copy: a 20-megapixel photo would hold ~60 MB per card otherwise.
            self._explain_image = reduced(image, EXPLAIN_SIZE)
            self.widget = self._result_widget(image, prediction)

    @property
    def ok(self) -> bool:
        """True when the file was classified."""
        return self.prediction is not None

    @property
    def sort_key(self) -> tuple[int, float]:
        """Problems first, then the least sure results: those need a person's eye most."""
        return (0, 0.0) if self.prediction is None else (1, self.prediction.probability)

    # -- building ----------------------------------------------------------------------------------------

    def _frame(self, children: list[widgets.Widget], *extra_classes: str) -> widgets.VBox:
        box = widgets.VBox(children, layout=widgets.Layout(
            border="1px solid #ccc", padding="8px 12px", margin="0 0 12px 0", width="100%", max_width="760px"))
        for css_class in ("picsort-card", *extra_classes):
            box.add_class(css_class)
        return box

    def _title(self) -> widgets.HTML:
        return html_widget(f'<span class="picsort-filename">{escape(self.name)}</span>', "picsort-card-title")

    def _problem_widget(self, message: str) -> widgets.VBox:
        text = html_widget(f'<span class="picsort-error">⚠ {escape(message)}</span>', "picsort-problem")
        hint = html_widget("Nothing was saved for this file.", "picsort-problem-hint")
        return self._frame([self._title(), text, hint], "picsort-card-problem")

    def _result_widget(self, image: Image.Image, prediction: Prediction) -> widgets.VBox:
        thumbnail = image_widget(image, THUMBNAIL_SIZE, "picsort-thumbnail")
        verdict = html_widget(
            f'<span class="picsort-verdict"><b>{escape(prediction.label)}</b> — {percent(prediction.probability)}'
            f"</span>", "picsort-verdict-line")
        details: list[widgets.Widget] = [verdict]
        if prediction.unsure:
            classes = ", ".join(self.app.classifier.classes)
            details.append(html_widget(
                f'<span class="picsort-unsure-note">The model is not sure: this picture may be none of '
                f"these ({escape(classes)}).</span>", "picsort-unsure"))
        details.append(self._bars(prediction))
        self.why_button = widgets.Button(description="Why?", tooltip="Show which parts of the picture "
                                         "led to this answer",
                                         layout=widgets.Layout(width="auto", align_self="flex-start"))
        self.why_button.add_class("picsort-why")
        self.why_button.on_click(lambda _: self._guarded(self.toggle_explanation))
        details.append(self.why_button)
        self.heatmap_box = widgets.VBox([])
        self.heatmap_box.add_class("picsort-heatmap-box")

        self.status = html_widget("Is this right? Click the correct class to save the picture with that "
                                  "label.", "picsort-status")
        # A fixed-width picture column keeps the bars of tall and wide pictures lined up.
        column = f"{THUMBNAIL_SIZE}px"
        picture = widgets.Box([thumbnail], layout=widgets.Layout(width=column, min_width=column))
        row = widgets.HBox([picture, widgets.VBox(details, layout=widgets.Layout(margin="0 0 0 16px"))])
        extra = ["picsort-card-unsure"] if prediction.unsure else []
        return self._frame([self._title(), row, self.heatmap_box, self.status, self._label_row()],
                           "picsort-card-result", *extra)

    def _bars(self, prediction: Prediction) -> widgets.VBox:
        """One bar per class, in the model's class order so cards can be compared at a glance."""
        rows = []
        for name in self.app.classifier.classes:
            probability = prediction.probabilities[name]
            bar = widgets.FloatProgress(value=probability, min=0.0, max=1.0,
                                        bar_style="success" if name == prediction.label else "info",
                                        layout=widgets.Layout(width="180px"))
            row = widgets.HBox([
                widgets.Label(name, layout=widgets.Layout(width="90px")),
                bar,
                widgets.Label(percent(probability), layout=widgets.Layout(width="50px", margin="0 0 0 6px")),
            ])
            row.add_class("picsort-bar")
            rows.append(row)
        box = widgets.VBox(rows)
        box.add_class("picsort-bars")
        return box

    def _label_row(self) -> widgets.HBox:
        """One button per class; the model's guess is marked so confirming it is one obvious click."""
        buttons = []
        for name in self.app.classifier.classes:
            guessed = name == self.prediction.label
            button = widgets.Button(description=f"✓ {name}" if guessed else name,
                                    tooltip=f"Save this picture labelled '{name}'",
                                    button_style="info" if guessed else "",
                                    layout=widgets.Layout(width="auto", min_width="90px"))
            button.add_class("picsort-label-button")
            button.add_class(f"picsort-label-{name}")  # class names are safe folder names (LabelStore checks)
            button.on_click(lambda _, label=name: self._guarded(lambda: self.save(label)))
            self.label_buttons[name] = button
            buttons.append(button)
        row = widgets.HBox([widgets.Label("Label:"), *buttons])
        row.add_class("picsort-labels")
        return row

    # -- actions -----------------------------------------------------------------------------------------

    def _guarded(self, action) -> None:
        """Run a button's action; a failure becomes a message on this card (a traceback would go nowhere)."""
        try:
            action()
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: action failed for %s", self.name)
            self.status.value = f'<span class="picsort-error">{escape(GENERIC_PROBLEM.format(name=self.name))}</span>'

    def save(self, label: str) -> Path:
        """Save the picture under `label` (prediction and file name recorded) and say so on the card."""
        prediction = self.prediction
        path = self.app.store.save(self.data, label, predicted=prediction.label,
                                   probabilities=prediction.probabilities, original_name=self.name)
        self.saved_as = label
        for name, button in self.label_buttons.items():
            # Green = what is saved now; blue = the model's guess when it isn't what was saved.
            button.button_style = "success" if name == label else ("info" if name == prediction.label else "")
        verb = "confirmed" if label == prediction.label else f"corrected from {escape(prediction.label)}"
        count = self.app.refresh_counts().get(label, 0)
        self.status.value = (f'<span class="picsort-saved">Saved as {escape(label)}</span> ({verb}; '
                             f"{count} {escape(label)} picture{'s' if count != 1 else ''} labelled so far).")
        return path

    def toggle_explanation(self) -> None:
        """Show (or hide again) the Grad-CAM heatmap for the predicted class."""
        if self.heatmap_box.children:
            self.heatmap_box.children = ()
            self.why_button.description = "Why?"
            return
        self.why_button.description = "Working…"
        try:
            overlay = self.app.classifier.explain(self._explain_image, class_name=self.prediction.label)
        finally:
            self.why_button.description = "Why?"
        self.heatmap = image_widget(overlay, HEATMAP_SIZE, "picsort-heatmap")
        caption = html_widget(
            f"Red and yellow: the parts of the picture that made the model say "
            f"<b>{escape(self.prediction.label)}</b>. Blue: parts that mattered little.", "picsort-heatmap-caption")
        self.heatmap_box.children = (self.heatmap, caption)
        self.why_button.description = "Hide why"


# ---- the page --------------------------------------------------------------------------------------------


class ClassifierApp:
    """The page: intro, upload button, label counts and one card per uploaded file (newest upload on top)."""

    def __init__(self, classifier: Classifier, store: LabelStore):
        self.classifier = classifier
        # The store needs the classes to refuse labels the model doesn't know.
        self.store = store if store.classes else LabelStore(store.root, classifier.classes)
        self.cards: list[Card] = []

        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Upload photos",
                                         button_style="primary",
                                         layout=widgets.Layout(width="auto", align_self="flex-start"))
        self.upload.add_class("picsort-upload")
        self.upload.observe(self._on_upload, names="value")
        self.summary = html_widget("", "picsort-summary")
        self.counts = html_widget("", "picsort-counts")
        self.cards_box = widgets.VBox([])
        self.cards_box.add_class("picsort-cards")
        self.refresh_counts()
        self.widget = widgets.VBox([html_widget(STYLE, "picsort-style"), self._intro(), self.upload,
                                    self.summary, self.counts, self.cards_box])
        self.widget.add_class("picsort-app")

    def _intro(self) -> widgets.HTML:
        """What the model recognises, and the honest limit: it knows nothing outside its classes."""
        classes = self.classifier.classes
        listed = ", ".join(f"<b>{escape(c)}</b>" for c in classes[:-1]) + f" or <b>{escape(classes[-1])}</b>" \
            if len(classes) > 1 else f"<b>{escape(classes[0])}</b>"
        limit = f"{MAX_UPLOAD_BYTES // (1024 * 1024)} MB"
        return html_widget(
            f"<p>Upload photos and the model tells you whether each one shows {listed}.</p>"
            f"<p>It only knows these {len(classes)} classes: any picture gets one of them, even a cat or a car, "
            f"so a low confidence often means the picture is none of them.</p>"
            f"<p>Click <i>Why?</i> on a card to see what the model looked at, and click the right class to "
            f"save the photo as training data. JPEG, PNG, GIF, WebP, BMP or TIFF, up to {limit} each.</p>",
            "picsort-intro")

    # -- uploads -----------------------------------------------------------------------------------------

    def _on_upload(self, change: dict) -> None:
        """Classify as soon as files arrive, then empty the upload so the same file can be sent again."""
        entries = change["new"]
        if not entries:
            return  # our own reset below, or an empty selection
        try:
            self.handle_upload(entries)
        except Exception:  # noqa: BLE001 - never let one upload break the page or the kernel
            log.exception("picsort app: upload failed")
            self.summary.value = '<span class="picsort-error">Something went wrong with this upload. ' \
                                 "Please try again.</span>"
        finally:
            self.upload.value = ()

    def handle_upload(self, entries: Iterable[Any]) -> list[Card]:
        """Make a card for every uploaded file and put them on top of the page, least sure first.

        `entries` are ipywidgets-8 upload entries (objects or dicts with `name` and `content`). Every file is
        decoded first; the usable ones then go through the model in one batch.
        """
        started = time.perf_counter()
        uploads = [Upload.from_entry(entry) for entry in entries]
        self.summary.value = f"Looking at {len(uploads)} file{'s' if len(uploads) != 1 else ''}…"
        cards: list[Card] = []
        good: list[tuple[Upload, Image.Image]] = []
        for upload in uploads:
            image, problem = self._decode(upload)
            if problem is not None:
                cards.append(Card(self, upload.name, problem=problem))
            else:
                good.append((upload, image))
        cards += self._classify(good)
        cards.sort(key=lambda card: card.sort_key)  # stable: equal keys keep upload order
        self._show(cards)
        self._summarise(cards, time.perf_counter() - started)
        return cards

    @staticmethod
    def _decode(upload: Upload) -> tuple[Image.Image | None, str | None]:
        """(image, None) for a usable file, (None, plain message) for anything else."""
        try:
            return image_from_bytes(upload.content, upload.name), None
        except UnusableImageError as error:
            return None, str(error)
        except Exception:  # noqa: BLE001 - an unexpected decoder failure is still just this file's problem
            log.exception("picsort app: could not decode %s", upload.name)
            return None, GENERIC_PROBLEM.format(name=upload.name)

    def _classify(self, good: list[tuple[Upload, Image.Image]]) -> list[Card]:
        """Cards for decoded pictures: one forward pass for all of them, one at a time only if that fails."""
        if not good:
            return []
        try:
            predictions: list[Prediction | None] = self.classifier.predict_batch([image for _, image in good])
        except Exception:  # noqa: BLE001 - find the picture that fails rather than losing them all
            log.exception("picsort app: batch classification failed, retrying one by one")
            predictions = [self._predict_one(upload, image) for upload, image in good]
        cards = []
        for (upload, image), prediction in zip(good, predictions):
            cards.append(self._result_card(upload, image, prediction))
        return cards

    def _predict_one(self, upload: Upload, image: Image.Image) -> Prediction | None:
        try:
            return self.classifier.predict(image)
        except Exception:  # noqa: BLE001
            log.exception("picsort app: could not classify %s", upload.name)
            return None

    def _result_card(self, upload: Upload, image: Image.Image, prediction: Prediction | None) -> Card:
        generic = GENERIC_PROBLEM.format(name=upload.name)
        if prediction is None:
            return Card(self, upload.name, problem=generic)
        try:
            return Card(self, upload.name, data=upload.content.tobytes(), image=image, prediction=prediction)
        except Exception:  # noqa: BLE001 - e.g. a thumbnail that can't be encoded
            log.exception("picsort app: could not show %s", upload.name)
            return Card(self, upload.name, problem=generic)

    def _show(self, cards: list[Card]) -> None:
        """Newest upload on top; earlier cards stay while they fit in MAX_CARDS and MAX_KEPT_BYTES."""
        kept = list(cards)
        size = sum(len(card.data or b"") for card in kept)
        for card in self.cards:
            size += len(card.data or b"")
            if len(kept) >= MAX_CARDS or size > MAX_KEPT_BYTES:
                break
            kept.append(card)
        self.cards = kept
        self.cards_box.children = tuple(card.widget for card in self.cards)

    def _summarise(self, cards: list[Card], seconds: float) -> None:
        done = sum(card.ok for card in cards)
        failed = len(cards) - done
        parts = [f"{done} photo{'s' if done != 1 else ''} classified in {seconds:.1f} s"]
        if failed:
            parts.append(f'<span class="picsort-error">{failed} file{"s" if failed != 1 else ""} could not be '
                         f"used</span>")
        order = " Least sure first." if done > 1 else ""
        self.summary.value = "; ".join(parts) + "." + order

    # -- labels ------------------------------------------------------------------------------------------

    def refresh_counts(self) -> dict[str, int]:
        """Show how many labelled pictures each class has; returns the counts."""
        counts = self.store.counts()
        items = "".join(
            f'<span class="picsort-count" data-class="{escape(name)}">{escape(name)}: <b>{count}</b></span>'
            for name, count in counts.items())
        self.counts.value = f"<b>Labelled so far:</b> {items}"
        return counts
