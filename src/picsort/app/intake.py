"""Files into cards: the upload zone (choose, drop, paste, the camera) and the example photos hand over one file at
a time; each is decoded once and classified (`Classifier.classify`), and becomes a card at once. The full-size
picture goes before the next file arrives; what stays (`picsort.app.card_pages.Upload`) is the photo's bytes, to
label it, and its decode shrunk to EXPLAIN_SIZE, so neither labelling nor "Why?" decodes the photo again.

A selection ends with its cards least sure first and a summary line. Everything leaves through callbacks:
`on_card(card, upload, keep)` (put it on the page), `on_selection_done(cards)`, and the cards' own `on_label(card,
label)` and `on_undo()`. This module never reaches into the page.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import ipywidgets as widgets

from picsort.app.card_pages import Upload
from picsort.app.cards import GENERIC_PROBLEM, ProblemCard, ResultCard
from picsort.app.page_text import escape, html_widget, limits_text
from picsort.app.upload_widget import UploadZone
from picsort.foundation.process_memory import return_freed_memory
from picsort.foundation.shown_text import human_bytes, shown_name
from picsort.inference.classify import Classifier
from picsort.photos.images import MAX_UPLOAD_BYTES, UnusableImageError, jpeg, shrunk

__all__ = ["EXPLAIN_SIZE", "THUMBNAIL_SIZE", "Intake"]

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 200  # pixels, longest side of a card's picture
EXPLAIN_SIZE = 400  # longest side of the picture a card keeps for "Why?" (shown at up to 320 px)

Card = ResultCard | ProblemCard


class Intake:
    """The ways in (`upload`, `examples_button`), the progress line (`progress`) and the selection in progress."""

    def __init__(self, classifier: Classifier, *, examples: Sequence[Path],
                 on_card: Callable[[Card, Upload | None, int], None],
                 on_selection_done: Callable[[list[Card]], None],
                 on_label: Callable[[ResultCard, str], str], on_undo: Callable[[], None],
                 guarded: Callable[[Callable[[], Any]], None] = lambda action: action()):
        self.classifier = classifier
        self.examples = list(examples)
        self._on_card, self._on_selection_done = on_card, on_selection_done
        self._on_label, self._on_undo = on_label, on_undo
        self._batch: list[Card] = []
        self._batch_started: float | None = None
        self.upload = UploadZone(on_file=self._upload_file, on_refused=self._upload_refused,
                                 on_done=lambda _total: self.finish_batch(), limits_text=limits_text())
        self.upload.add_class("picsort-try-upload")
        self.examples_button = widgets.Button(
            description="Try these examples", tooltip=f"Classify {len(self.examples)} example photos",
            layout=widgets.Layout(width="auto", align_self="flex-start", display="" if self.examples else "none"))
        self.examples_button.add_class("picsort-examples")
        self.examples_button.on_click(lambda _: guarded(self.try_examples))
        self.progress = html_widget("", "picsort-progress")

    def use(self, classifier: Classifier) -> None:
        """Answer with `classifier` from now on; a selection in progress is forgotten (its cards are gone)."""
        self.classifier = classifier
        self._batch, self._batch_started = [], None

    # -- the ways in -------------------------------------------------------------------------------------

    def _upload_file(self, name: str, data: bytes, index: int, total: int) -> None:
        self.add_file(name, data, index=index, total=total)

    def _upload_refused(self, name: str, reason: str, size: int, index: int, total: int) -> None:
        if reason == "too_large":
            message = (f"'{shown_name(name)}' is larger than the {human_bytes(MAX_UPLOAD_BYTES)} limit "
                       f"({human_bytes(size)}); it was not sent.")
        else:
            message = f"'{shown_name(name)}' could not be read by the browser (is it a file you can open?)."
        self.add_problem(name, message, index=index, total=total)

    def handle_upload(self, entries: Iterable[Mapping[str, Any]]) -> list[Card]:
        """Every entry (`name` and `content`, as ipywidgets' FileUpload gives them: dicts) as one selection."""
        entries = list(entries)
        for index, entry in enumerate(entries, start=1):
            content = entry.get("content")
            data = b"" if content is None else memoryview(content).tobytes()
            self.add_file(str(entry.get("name") or "unnamed file"), data, index=index, total=len(entries))
        return self.finish_batch()

    def try_examples(self) -> list[Card]:
        """The example photos that come with the app, as if uploaded."""
        for index, path in enumerate(self.examples, start=1):
            self.add_file(path.name, path.read_bytes(), index=index, total=len(self.examples))
        return self.finish_batch()

    # -- one file ----------------------------------------------------------------------------------------

    def add_file(self, name: str, data: bytes, *, index: int | None = None, total: int | None = None) -> Card:
        """Classify one file and put its card on the page at once; the full-size picture is dropped here."""
        self._start(name, index, total)
        try:
            card, upload = self._card_for(name, data)
        except Exception:  # noqa: BLE001 - one file's failure is that file's card, never the page's
            log.exception("picsort app: could not handle %r", name)
            card, upload = ProblemCard(name, GENERIC_PROBLEM.format(name=f"'{shown_name(name)}'")), None
        self._add(card, upload)
        return card

    def add_problem(self, name: str, message: str, *, index: int | None = None, total: int | None = None) -> Card:
        """A card for a file that was not sent or could not be used."""
        self._start(name, index, total)
        card = ProblemCard(name, message)
        self._add(card, None)
        return card

    def _start(self, name: str, index: int | None, total: int | None) -> None:
        if self._batch_started is None:
            self._batch_started = time.perf_counter()
        count = len(self._batch) + 1
        self.progress.value = f"Looking at {index or count} of {total or count}: {escape(shown_name(name))}…"

    def _card_for(self, name: str, data: bytes) -> tuple[Card, Upload | None]:
        try:
            # Decoded once, no larger than the network's view needs (JPEG draft, reduce on load), and answered.
            classified = self.classifier.classify(data, name=name)
        except UnusableImageError as problem:
            return ProblemCard(name, str(problem)), None
        prediction = classified.prediction
        picture, size = jpeg(classified.image, THUMBNAIL_SIZE)
        upload = Upload(name, data, prediction, picture=shrunk(classified.image, EXPLAIN_SIZE),
                        decoded_whole=not classified.reduced)
        del classified  # the full-size picture goes now, before the next file arrives
        card = ResultCard(name, picture, size, {c: prediction.probabilities[c] for c in self.classifier.classes},
                          prediction.label, unsure=prediction.unsure,
                          on_label=lambda label: self._on_label(card, label), on_undo=self._on_undo,
                          explain=lambda label: self.explain(upload, label))
        return card, upload

    def _add(self, card: Card, upload: Upload | None) -> None:
        self._batch.append(card)
        self._on_card(card, upload, len(self._batch))  # newest on top while the selection arrives

    def explain(self, upload: Upload, label: str) -> bytes:
        """The "Why?" overlay of `upload`'s picture for `label`, as a JPEG."""
        overlay = self.classifier.explain(upload.explain_picture(), class_name=label)
        return jpeg(overlay, EXPLAIN_SIZE)[0]

    # -- the end of a selection --------------------------------------------------------------------------

    def finish_batch(self) -> list[Card]:
        """End of a selection: least sure first within it, a summary, and freed memory handed back."""
        batch, self._batch = self._batch, []
        started, self._batch_started = self._batch_started, None
        if not batch:
            self.progress.value = ""
            return []
        batch.sort(key=lambda card: card.sort_key)  # stable: equal keys keep upload order
        done = sum(card.ok for card in batch)
        failed = len(batch) - done
        parts = [f"{done} photo{'s' if done != 1 else ''} classified in {time.perf_counter() - started:.1f} s"]
        if failed:
            parts.append(f'<span class="picsort-error">{failed} file{"s" if failed != 1 else ""} could not be '
                         f"used</span>")
        self.progress.value = "; ".join(parts) + "." + (" Least sure first." if done > 1 else "")
        self._on_selection_done(batch)
        return_freed_memory()
        return batch
