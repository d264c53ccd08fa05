"""The page's labels and the shared label store: everyone using one server labels into one store (labels/, or
$PICSORT_LABELS_DIR), so the counts are read from it, undo takes back this page's latest label only, and a card
whose photo someone else labelled since says so when this page next acts.

Reached by the cards' `on_label` (:meth:`SharedLabels.save_label`) and the page's undo, refresh and download;
it reads the page's photos (`uploads`, card -> `picsort.app.card_pages.Upload`) and never builds a card.
"""

from __future__ import annotations

import datetime
import io
from typing import Mapping

from picsort.app.card_pages import Upload
from picsort.app.cards import FORGOTTEN, LabelNotSaved, ResultCard
from picsort.app.download_widget import NothingToDownload
from picsort.app.page_text import escape, html_widget
from picsort.foundation.shown_text import shown_name
from picsort.foundation.vocabulary import NONE_LABEL, NONE_TEXT, shown_label
from picsort.photos.labels import LabelStore, LabelStoreError

__all__ = ["ELSEWHERE", "SharedLabels"]

# How a card names whoever changed its photo's label: the store does not know who, only that it was not this page.
ELSEWHERE = "someone else using this app"


class SharedLabels:
    """Saving, undoing and counting labels in `store` for the page's cards; `counts` and `undo_note` show it."""

    def __init__(self, store: LabelStore, uploads: Mapping[ResultCard, Upload]):
        self.store = store
        self.uploads = uploads  # the page's, read as they are now
        self.counts_heading = "Labelled so far, by everyone here:"
        self.counts = html_widget("", "picsort-counts")
        self.undo_note = html_widget("", "picsort-undo-note")

    def save_label(self, card: ResultCard, label: str) -> str:
        """A result card's `on_label`: save its photo to the store, refresh the counts, return the card's line."""
        upload = self.uploads.get(card)
        if upload is None or upload.data is None:  # the card was closed, or its bytes let go, as it was clicked
            raise LabelNotSaved(FORGOTTEN)
        prediction = upload.prediction
        labels = self._labels_now()  # to tell someone else's label of this photo, read before ours replaces it
        try:
            saved = self.store.save(upload.data, label, predicted=prediction.label,
                                    probabilities=prediction.probabilities, original_name=upload.name,
                                    decoded_whole=upload.decoded_whole)  # classify's decode checked it
        except LabelStoreError as problem:  # the store turns every refusal of the disk into one of these
            raise LabelNotSaved(f"Not saved: {problem}") from problem
        upload.sha256 = saved.name.partition(".")[0]  # the store hashed the bytes once, and names the file so
        same_photo = self.cards_of(upload.sha256, upload.data)
        before = labels.get(upload.sha256)  # someone else's label, unless a card of this page shows it
        shown_here = {same.saved_as for same in same_photo}
        for same in same_photo:  # one photo, one label: its other cards on this page agree
            self.uploads[same].sha256 = upload.sha256
            if same is not card:
                same.show_label(label, f"Saved as {shown_label(label)} (the same photo as another card here).")
        self.undo_note.value = ""
        counts = self.refresh_counts()
        replaced = (f" It was labelled {shown_label(before)} by {ELSEWHERE}: yours replaces that."
                    if before is not None and before != label and before not in shown_here else "")
        if label == NONE_LABEL:
            return f"Saved as {NONE_TEXT} (kept out of training)." + replaced
        count = counts.get(label, 0)
        verb = "confirmed" if label == prediction.label else f"corrected from {shown_label(prediction.label)}"
        return (f"Saved as {label} ({verb}; {count} {label} picture{'s' if count != 1 else ''} labelled so far by "
                f"everyone here).{replaced}")

    def undo(self) -> dict | None:
        """Undo the latest label saved on this page; the card it belongs to shows its label again."""
        labels = self._labels_now()
        self._check_cards(labels)  # a card whose label someone else replaced says so first
        undone = self.store.undo()
        if undone is None:
            self.undo_note.value = "Nothing to undo."
            self.refresh_counts()
            return None
        before, now = labels.get(undone["sha256"]), self.store.label_of(undone["sha256"])
        name = shown_name(undone.get("original_name") or "photo")
        yours = shown_label(undone["label"])
        if before not in (None, undone["label"]) and now == before:
            # Someone else labelled the photo after this page did: their label stands, only this page's goes.
            note = f"Undone: your label {yours} for '{name}'; it stays {shown_label(now)}, as {ELSEWHERE} labelled it."
            card_note = f"Labelled {shown_label(now)} by {ELSEWHERE}; your label {yours} was undone."
        else:
            note = f"Undone: '{name}' is no longer saved as {yours}"
            note += f" (back to {shown_label(now)})." if now else "."
            card_note = note if not now else f"Saved as {shown_label(now)} (label restored by undo)."
        for card in self.cards_of(undone["sha256"]):
            card.show_label(now, card_note)
        self.undo_note.value = escape(note)
        self.refresh_counts()
        return undone

    def refresh_counts(self) -> dict[str, int]:
        """Re-read the shared store: show how many labelled pictures each class has, everyone's, and let each card
        whose label someone else replaced say so; returns the counts."""
        self._check_cards(self._labels_now())
        counts = self.store.counts()
        items = "".join(
            f'<span class="picsort-count" data-class="{escape(name)}">'
            f'{escape(shown_label(name))}: <b>{count}</b></span>'
            for name, count in counts.items())
        self.counts.value = f"<b>{self.counts_heading}</b> {items}"
        return counts

    def labels_zip(self) -> tuple[str, bytes, str]:
        """The label store as a zip (photos in their label folders + manifest), for the download button."""
        if not any(self.refresh_counts().values()):
            raise NothingToDownload("Nothing labelled yet.")
        buffer = io.BytesIO()
        count = self.store.write_zip(buffer)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
        return f"picsort-labels-{stamp}.zip", buffer.getvalue(), f"{count} labelled photo{'s' if count != 1 else ''}."

    def _labels_now(self) -> dict[str, str]:
        """SHA-256 -> label of every photo in the store as it is now, whoever labelled it (one manifest read)."""
        return {entry["sha256"]: entry["label"] for entry in self.store.entries()}

    def cards_of(self, sha256: str, data: bytes | None = None) -> list[ResultCard]:
        """This page's cards of one photo (the same bytes uploaded twice make two cards): those the store has saved
        under `sha256`, and those holding the same bytes as `data`. Nothing is hashed here: the store does that."""
        return [card for card, upload in self.uploads.items()
                if upload.sha256 == sha256 or (data is not None and upload.data == data)]

    def _check_cards(self, labels: Mapping[str, str]) -> None:
        """Each card labelled on this page whose photo the store now labels otherwise shows the store's label and
        says who changed it. This page updates its own cards as it saves and undoes, so the change was made
        elsewhere."""
        for card, upload in self.uploads.items():
            if card.saved_as and labels.get(upload.sha256, "") != card.saved_as:
                now = labels.get(upload.sha256)
                card.show_label(now, f"Relabelled {shown_label(now)} by {ELSEWHERE}." if now else
                                "No longer labelled: it was taken out of the shared labels elsewhere.")
