"""The web app: drop photos, see what the model thinks and why, and label them for the next training round.

`app.ipynb` calls :func:`build_app`; Voila turns that notebook into the page. :class:`ClassifierApp` owns the
page: the upload zone hands it one file at a time (:meth:`ClassifierApp.add_file`), each file is decoded,
classified and turned into a small card at once, and the full-size picture is dropped before the next file
arrives, so memory does not grow with the selection. A card holds only what it shows; the photo's bytes stay here
(:class:`Upload`) until it is labelled. Cards report through callbacks (`on_label(label)`, `on_undo`, `explain`)
that the app wires to the label store and the counts. Tests drive the same methods without a browser.

This module must not import fastai (directly or through picsort modules): serving uses the plain-torch
network from `picsort.inference.classify`, which starts faster and needs less memory.
"""

from __future__ import annotations

import datetime
import html
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import ipywidgets as widgets

from picsort.app.cards import (ACTION_KEYS, FORGOTTEN, GENERIC_PROBLEM, LabelNotSaved, ProblemCard, ResultCard, keys_help,
                           shown_name)
from picsort.inference.classify import Classifier, Prediction, load_model
from picsort.foundation.cpu_quota import fit_torch_threads
from picsort.app.download_widget import DownloadButton, NothingToDownload
from picsort.foundation.folders import EXAMPLES_DIR, labels_dir, visitor_teach_dir
from picsort.photos.images import (ACCEPTED_FORMATS_TEXT, MAX_UPLOAD_BYTES, UnusableImageError, human_bytes, image_from_bytes,
                            jpeg)
from picsort.photos.labels import NONE_LABEL, NONE_TEXT, LabelStore, LabelStoreError, shown_label
from picsort.inference.model import ModelFolderError
from picsort.photos.photo_folders import photos_in
from picsort.foundation.process_memory import return_freed_memory
from picsort.serving.server_log import send_log_to_server
from picsort.app.session_widget import SessionWatch
from picsort.app.upload_widget import UploadZone
from picsort.app.widget_scripts import static_text

__all__ = ["ClassifierApp", "build_app"]

log = logging.getLogger(__name__)

THUMBNAIL_SIZE = 200  # pixels, longest side of a card's picture
EXPLAIN_SIZE = 400  # longest side of the copy a card keeps for "Why?" (shown at up to 320 px)
CARDS_PER_PAGE = 60
# The page keeps a card's photo bytes (to save them under a label) while the newest cards' bytes fit in
# MAX_KEPT_BYTES; older cards can no longer be labelled. Past MAX_CARDS the oldest cards are closed.
MAX_CARDS = 1000
MAX_KEPT_BYTES = 200 * 1024 * 1024
STYLE = static_text("app.css")
# Everyone using one server labels into one store (labels/, or $PICSORT_LABELS_DIR), so a page says so, reads
# its counts from the store, and its cards say when someone else's label replaced theirs.
ELSEWHERE = "someone else using this app"
TEACH_OPEN = "Teach it your own classes…"
TEACH_CLOSE = "Hide Teach"
# Teach keeps each visitor's photos apart; until the page has said whose it is, there is no folder to open.
TEACH_WAITING = "Teach opens once this page has told the server which browser it is: wait a moment, or reload."
# How the page names a visitor's Teach folder: never its path on the server.
TEACH_FOLDER = "your Teach folder"
SHARED_TEXT = ("Labels are shared: everyone using this app on this server saves into the same labels, so the "
               "counts include theirs, and when two people label one photo differently the latest label counts. "
               "Your cards say so when you next label, undo or add photos.")


@dataclass(eq=False)
class Upload:
    """What the page keeps of one classified photo beside its card: the bytes, to save under a label (None once
    the memory cap let them go), the name as uploaded and the model's answer, recorded with the label."""

    name: str
    data: bytes | None
    prediction: Prediction
    sha256: str | None = None  # known once the store has saved the photo (the store names it by its SHA-256)


def build_app(model_folder: Path | str | None = None, labels_folder: Path | str | None = None) -> widgets.Widget:
    """The whole page as one widget: load the model and the label store, wire up the upload.

    A model that cannot be served (no model, a class name that is not a safe folder name) gets a page that
    says so instead of a traceback.
    """
    send_log_to_server()
    fit_torch_threads()  # torch counts the node's cores; Binder's quota may be one CPU's time
    try:
        classifier = load_model(model_folder)
        store = LabelStore(labels_dir(labels_folder), classifier.classes)  # checks the class names first
    except (ModelFolderError, ValueError) as problem:
        log.exception("picsort app: cannot serve this model")
        return html_widget(f'<p class="picsort-error">This app cannot start: {escape(problem)}</p>', "picsort-app")
    except Exception as problem:  # noqa: BLE001 - anything else still gets the page's words, not Voila's error cell
        log.exception("picsort app: cannot serve this model")
        return html_widget(f'<p class="picsort-error">This app cannot start: could not load the model '
                           f'({escape(type(problem).__name__)}: {escape(problem)})</p>', "picsort-app")
    return ClassifierApp(classifier, store).widget


# ---- small helpers ---------------------------------------------------------------------------------------


def escape(text: Any) -> str:
    """Text made safe for an HTML widget: file names come from users and must never become markup."""
    return html.escape(str(text), quote=True)


def html_widget(text: str, css_class: str) -> widgets.HTML:
    """An HTML widget with a stable CSS class (the browser test and the stylesheet use these)."""
    widget = widgets.HTML(text)
    widget.add_class(css_class)
    return widget


def listed(names: list[str], joiner: str = "or") -> str:
    """'a', 'a or b', 'a, b or c' in bold."""
    bold = [f"<b>{escape(name)}</b>" for name in names]
    return bold[0] if len(bold) == 1 else ", ".join(bold[:-1]) + f" {joiner} " + bold[-1]


# ---- the page --------------------------------------------------------------------------------------------


class ClassifierApp:
    """The page: what the model is, the upload zone, label counts, undo, download and the cards (newest on top)."""

    def __init__(self, classifier: Classifier, store: LabelStore, *, examples_folder: Path | None = EXAMPLES_DIR):
        if store.classes is None or list(store.classes) != list(classifier.classes):
            raise ValueError(f"the label store's classes ({store.classes}) are not the model's "
                             f"({', '.join(classifier.classes)})")
        send_log_to_server()
        self.classifier = classifier
        self.store = store
        self.labels_root = store.root  # the shared labels, beside which each visitor's Teach folder is
        self.counts_heading = "Labelled so far, by everyone here:"
        self.cards: list[ResultCard | ProblemCard] = []  # newest first; includes the batch in progress
        self.uploads: dict[ResultCard, Upload] = {}  # each result card's photo
        self.page = 0
        self._batch: list[ResultCard | ProblemCard] = []
        self._batch_started: float | None = None
        self.examples = photos_in(examples_folder) if examples_folder is not None else []

        self.upload = UploadZone(on_file=self._upload_file, on_refused=self._upload_refused,
                                 on_done=lambda _total: self.finish_batch(), limits_text=self.limits_text())
        self.upload.add_class("picsort-try-upload")
        # Teach mode: built on first open, so a page nobody teaches on loads no second network.
        # Enabled once the page's visitor id arrives (SessionWatch, below): Teach is each visitor's own.
        self.teach_button = widgets.Button(description=TEACH_OPEN, disabled=True, tooltip=TEACH_WAITING,
                                           layout=widgets.Layout(width="auto", align_self="flex-start"))
        self.teach_button.add_class("picsort-teach-open")
        self.teach_button.on_click(lambda _: self._guarded(self.toggle_teach))
        self.teach_box = widgets.VBox([])
        self.teach_panel = None
        self.examples_button = widgets.Button(
            description="Try these examples", tooltip=f"Classify {len(self.examples)} example photos",
            layout=widgets.Layout(width="auto", align_self="flex-start", display="" if self.examples else "none"))
        self.examples_button.add_class("picsort-examples")
        self.examples_button.on_click(lambda _: self._guarded(self.try_examples))
        self.progress = html_widget("", "picsort-progress")
        self.counts = html_widget("", "picsort-counts")
        self.undo_button = widgets.Button(description=f"Undo last label ({ACTION_KEYS['undo'][0]})",
                                          tooltip="Undo the latest label saved on this page",
                                          layout=widgets.Layout(width="auto"))
        self.undo_button.add_class("picsort-undo")
        self.undo_button.on_click(lambda _: self._guarded(self.undo))
        self.undo_note = html_widget("", "picsort-undo-note")
        self.download = DownloadButton(self.labels_zip, mime="application/zip", description="Download labels (zip)")
        self.previous_page = widgets.Button(description="‹ Newer", layout=widgets.Layout(width="auto"))
        self.next_page = widgets.Button(description="Older ›", layout=widgets.Layout(width="auto"))
        self.previous_page.on_click(lambda _: self.show_page(self.page - 1))
        self.next_page.on_click(lambda _: self.show_page(self.page + 1))
        self.page_note = html_widget("", "picsort-page-note")
        self.pager = widgets.HBox([self.previous_page, self.page_note, self.next_page])
        self.pager.add_class("picsort-pager")
        self.cards_box = widgets.VBox([])
        self.cards_box.add_class("picsort-cards")
        self.session = SessionWatch(on_visitor=self._visitor_arrived)
        toolbar = widgets.HBox([self.counts, self.undo_button, self.download, self.undo_note])
        toolbar.add_class("picsort-toolbar")
        self.refresh_counts()
        self._show()
        self.intro = html_widget(self._intro_text(), "picsort-intro")
        self.widget = widgets.VBox([html_widget(f"<style>{STYLE}</style>", "picsort-style"), self.intro,
                                    self.teach_button, self.teach_box, self.upload, self.examples_button,
                                    self.progress, toolbar, self.pager, self.cards_box, self.session])
        self.widget.add_class("picsort-app")

    # -- what the page says ------------------------------------------------------------------------------

    @staticmethod
    def limits_text() -> str:
        """The limits the page states: the decoder's own (picsort.photos.images)."""
        return (f"{ACCEPTED_FORMATS_TEXT}; up to {human_bytes(MAX_UPLOAD_BYTES)} each; as many photos as you "
                f"like at once.")

    def _intro_text(self) -> str:
        """Title and intro from the model card: what it tells apart, how it was made, and its limit."""
        classes = self.classifier.classes
        card = self.classifier.card
        facts = []
        trained = card.get("trained")
        if trained:
            try:
                facts.append(f"trained on {datetime.datetime.fromisoformat(trained):%-d %B %Y}")
            except ValueError:
                facts.append(f"trained {escape(trained)}")
        photos = sum((card.get("images_per_class") or {}).values())
        if photos:
            facts.append(f"from {photos} photos")
        validation = card.get("validation") or {}
        if "error_rate" in validation:
            checked = f" of {validation['images']}" if validation.get("images") else ""
            facts.append(f"wrong on {validation['error_rate'] * 100:.1f}%{checked} validation photos")
        about = f"<p>The model: {', '.join(facts)}.</p>" if facts else ""
        return (
            f'<h1 class="picsort-title">Is it {listed(classes)}?</h1>'
            f"<p>Drop photos and the model says which of {listed(classes, 'and')} each one shows, how sure it "
            f"is, and (<i>Why?</i>) what it looked at.</p>{about}"
            f"<p>It knows only these {len(classes)} classes; when a photo looks like none of them, its card says "
            f"so.</p><p>Label photos with the buttons on each card to collect training data (keys on the card "
            f"in focus: {keys_help(classes)}).</p>"
            f'<p class="picsort-shared">{SHARED_TEXT}</p>')

    # -- teach mode -------------------------------------------------------------------------------------

    @property
    def visitor(self) -> str | None:
        """This page's visitor id (picsort.app.session_widget), None until the page has sent it."""
        return self.session.visitor

    def _visitor_arrived(self, _visitor: str) -> None:
        self.teach_button.disabled = False
        self.teach_button.tooltip = ""

    def toggle_teach(self) -> None:
        """Open the Teach section (made on first open), or close it; while open, pasted pictures go to it."""
        from picsort.app.teach_panel import TeachPanel
        from picsort.app.teach_session import MAX_PHOTOS, TeachSession
        from picsort.training.teaching import TeachError

        if self.teach_panel is None:
            if self.visitor is None:
                self.teach_box.children = (html_widget(f"<p>{escape(TEACH_WAITING)}</p>", "picsort-teach-message"),)
                return
            try:
                # Each visitor's photos are kept in a folder of their own beside the shared labels, never in them
                # (picsort.foundation.folders.visitor_teach_dir): a reload or a new kernel in the same browser brings them
                # back, nobody else's page sees them, and they download as a labels zip of their own.
                store = LabelStore(visitor_teach_dir(self.visitor, labels=self.labels_root), shown_as=TEACH_FOLDER,
                                   max_photos=MAX_PHOTOS)
                session = TeachSession(store=store)
            # a server without scikit-learn or the Lite weights package; a Teach folder the disk refuses
            except (TeachError, LabelStoreError) as problem:
                self.teach_box.children = (html_widget(f'<p class="picsort-error">Teaching cannot start here: '
                                                       f"{escape(problem)}</p>", "picsort-teach-message"),)
                return
            self.teach_panel = TeachPanel(
                session, model_classes=self.classifier.classes,
                on_trained=lambda trained: self.use_model(trained.classifier, session.store))
            self.teach_box.children = (self.teach_panel.widget,)
            self.teach_panel.restore()
            opened = True
        else:
            opened = self.teach_box.layout.display == "none"
        self.teach_box.layout.display = "" if opened else "none"
        self.upload.paste = not opened
        self.teach_panel.upload.paste = opened
        self.teach_button.description = TEACH_CLOSE if opened else TEACH_OPEN

    def use_model(self, classifier: Classifier, labels_store: LabelStore | None = None) -> None:
        """Answer with `classifier` from now on (Teach's Train); the cards of the model before are closed, as their
        label buttons are its classes. Labels go to `labels_store` (Teach gives the visitor's folder: a photo
        labelled with a taught class is one more photo of it, not one for the shared labels' classes; its limit
        and name come along), else to the same store as before."""
        kept = labels_store or self.store
        self.store = LabelStore(kept.root, classifier.classes, shown_as=kept.shown_as, max_photos=kept.max_photos)
        self.classifier = classifier
        for card in self.cards:
            card.close()
        self.uploads.clear()
        self.cards, self._batch, self._batch_started, self.page = [], [], None, 0
        self._show()
        self.intro.value = self._intro_text()
        self.examples_button.layout.display = "none"  # the examples are photos of the shipped model's classes
        if labels_store is not None:
            self.counts_heading = ("Photos of these classes so far, taught and labelled (kept in your Teach folder, "
                                   "for this browser only; a label counts at the next Train):")
        self.progress.value = (f"Now answering with the model you trained ({escape(', '.join(classifier.classes))})"
                               f": drop photos below to try it.")
        self.refresh_counts()

    # -- files in ----------------------------------------------------------------------------------------

    def _upload_file(self, name: str, data: bytes, index: int, total: int) -> None:
        self.add_file(name, data, index=index, total=total)

    def _upload_refused(self, name: str, reason: str, size: int, index: int, total: int) -> None:
        if reason == "too_large":
            message = (f"'{shown_name(name)}' is larger than the {human_bytes(MAX_UPLOAD_BYTES)} limit "
                       f"({human_bytes(size)}); it was not sent.")
        else:
            message = f"'{shown_name(name)}' could not be read by the browser (is it a file you can open?)."
        self.add_problem(name, message, index=index, total=total)

    def add_file(self, name: str, data: bytes, *, index: int | None = None, total: int | None = None):
        """Classify one file and put its card on the page at once; the full-size picture is dropped here."""
        self._start(name, index, total)
        try:
            card = self._card_for(name, data)
        except Exception:  # noqa: BLE001 - one file's failure is that file's card, never the page's
            log.exception("picsort app: could not handle %r", name)
            card = ProblemCard(name, GENERIC_PROBLEM.format(name=f"'{shown_name(name)}'"))
        self._add(card)
        return card

    def add_problem(self, name: str, message: str, *, index: int | None = None, total: int | None = None):
        """A card for a file that was not sent or could not be used."""
        self._start(name, index, total)
        card = ProblemCard(name, message)
        self._add(card)
        return card

    def _start(self, name: str, index: int | None, total: int | None) -> None:
        if self._batch_started is None:
            self._batch_started = time.perf_counter()
            self.page = 0
        count = len(self._batch) + 1
        self.progress.value = f"Looking at {index or count} of {total or count}: {escape(shown_name(name))}…"

    def _card_for(self, name: str, data: bytes) -> ResultCard | ProblemCard:
        try:
            # Decoded once, no larger than the network's view needs (JPEG draft, reduce on load), and answered.
            classified = self.classifier.classify(data, name=name)
        except UnusableImageError as problem:
            return ProblemCard(name, str(problem))
        prediction = classified.prediction
        picture, size = jpeg(classified.image, THUMBNAIL_SIZE)
        explain_copy, _ = jpeg(classified.image, EXPLAIN_SIZE, quality=90)
        del classified  # the full-size picture goes now, before the next file arrives
        card = ResultCard(name, picture, size, {c: prediction.probabilities[c] for c in self.classifier.classes},
                          prediction.label, unsure=prediction.unsure,
                          on_label=lambda label: self._save_label(card, label),
                          on_undo=lambda: self._guarded(self.undo),
                          explain=lambda label: self._explain(explain_copy, label))
        self.uploads[card] = Upload(name, data, prediction)
        return card

    def _add(self, card) -> None:
        self._batch.append(card)
        self.cards.insert(0, card)  # newest on top while the selection arrives
        self._keep_within_limits()
        self._show()

    def finish_batch(self) -> list:
        """End of a selection: least sure first within it, a summary, and freed memory handed back."""
        batch, self._batch = self._batch, []
        started, self._batch_started = self._batch_started, None
        if not batch:
            self.progress.value = ""
            return []
        batch.sort(key=lambda card: card.sort_key)  # stable: equal keys keep upload order
        self.cards[: len(batch)] = batch  # the batch's cards are the newest, at the front
        self._show()
        done = sum(card.ok for card in batch)
        failed = len(batch) - done
        parts = [f"{done} photo{'s' if done != 1 else ''} classified in {time.perf_counter() - started:.1f} s"]
        if failed:
            parts.append(f'<span class="picsort-error">{failed} file{"s" if failed != 1 else ""} could not be '
                         f"used</span>")
        self.progress.value = "; ".join(parts) + "." + (" Least sure first." if done > 1 else "")
        self.refresh_counts()
        return_freed_memory()
        return batch

    def handle_upload(self, entries: Iterable[Mapping[str, Any]]) -> list:
        """Every entry (`name` and `content`, as ipywidgets' FileUpload gives them: dicts) as one selection."""
        entries = list(entries)
        for index, entry in enumerate(entries, start=1):
            content = entry.get("content")
            data = b"" if content is None else memoryview(content).tobytes()
            self.add_file(str(entry.get("name") or "unnamed file"), data, index=index, total=len(entries))
        return self.finish_batch()

    def try_examples(self) -> list:
        """The example photos that come with the app, as if uploaded."""
        for index, path in enumerate(self.examples, start=1):
            self.add_file(path.name, path.read_bytes(), index=index, total=len(self.examples))
        return self.finish_batch()

    # -- cards on the page -------------------------------------------------------------------------------

    def _keep_within_limits(self) -> None:
        """Close the cards past MAX_CARDS; past MAX_KEPT_BYTES, older cards let go of their photo's bytes."""
        while len(self.cards) > max(MAX_CARDS, len(self._batch)):
            closed = self.cards.pop()
            self.uploads.pop(closed, None)
            closed.close()
        kept = 0
        for card in self.cards:
            upload = self.uploads.get(card)
            if upload is None or upload.data is None:
                continue
            kept += len(upload.data)
            if kept > MAX_KEPT_BYTES and card is not self.cards[0]:  # the newest can always be labelled
                upload.data = None
                card.cannot_label()

    def show_page(self, page: int) -> None:
        self.page = page
        self._show()

    def _show(self) -> None:
        pages = max(1, -(-len(self.cards) // CARDS_PER_PAGE))
        self.page = min(max(self.page, 0), pages - 1)
        first = self.page * CARDS_PER_PAGE
        shown = self.cards[first: first + CARDS_PER_PAGE]
        self.cards_box.children = tuple(shown)
        self.pager.layout.display = "" if pages > 1 else "none"
        self.previous_page.disabled = self.page == 0
        self.next_page.disabled = self.page >= pages - 1
        if shown:
            self.page_note.value = (f"Page {self.page + 1} of {pages} (cards {first + 1}–{first + len(shown)} "
                                    f"of {len(self.cards)})")

    # -- labels ------------------------------------------------------------------------------------------

    def _save_label(self, card: ResultCard, label: str) -> str:
        """A result card's `on_label`: save its photo to the store, refresh the counts, return the card's line."""
        upload = self.uploads.get(card)
        if upload is None or upload.data is None:  # the card was closed, or its bytes let go, as it was clicked
            raise LabelNotSaved(FORGOTTEN)
        prediction = upload.prediction
        labels = self._labels_now()  # to tell someone else's label of this photo, read before ours replaces it
        try:
            saved = self.store.save(upload.data, label, predicted=prediction.label,
                                    probabilities=prediction.probabilities, original_name=upload.name)
        except LabelStoreError as problem:  # the store turns every refusal of the disk into one of these
            raise LabelNotSaved(f"Not saved: {problem}") from problem
        upload.sha256 = saved.name.partition(".")[0]  # the store hashed the bytes once, and names the file so
        same_photo = self._cards_of(upload.sha256, upload.data)
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
        for card in self._cards_of(undone["sha256"]):
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

    def _labels_now(self) -> dict[str, str]:
        """SHA-256 -> label of every photo in the store as it is now, whoever labelled it (one manifest read)."""
        return {entry["sha256"]: entry["label"] for entry in self.store.entries()}

    def _cards_of(self, sha256: str, data: bytes | None = None) -> list[ResultCard]:
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

    def labels_zip(self) -> tuple[str, bytes, str]:
        """The label store as a zip (photos in their label folders + manifest), for the download button."""
        if not any(self.refresh_counts().values()):
            raise NothingToDownload("Nothing labelled yet.")
        buffer = io.BytesIO()
        count = self.store.write_zip(buffer)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
        return f"picsort-labels-{stamp}.zip", buffer.getvalue(), f"{count} labelled photo{'s' if count != 1 else ''}."

    # -- explaining --------------------------------------------------------------------------------------

    def _explain(self, picture: bytes, label: str) -> bytes:
        image = image_from_bytes(picture, name="explain")
        overlay = self.classifier.explain(image, class_name=label)
        return jpeg(overlay, EXPLAIN_SIZE)[0]

    def _guarded(self, action) -> None:
        """Run a button's action; a failure becomes a line on the page (details in the server log)."""
        try:
            action()
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: action failed")
            self.undo_note.value = '<span class="picsort-error">Something went wrong. Please try again.</span>'
