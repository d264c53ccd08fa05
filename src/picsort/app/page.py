"""The web app: drop photos, see what the model thinks and why, and label them for the next training round.

`app.ipynb` calls :func:`build_app`; Voila turns that notebook into the page. :class:`ClassifierApp` is the page:
it lays out the parts, each a module with one job, and wires their callbacks to one another:

- `picsort.app.page_text`: what the page says (title and intro from the model card, the limits, the shared note);
- `picsort.app.intake`: files in (upload zone, camera, paste, the examples), each decoded once, classified and
  made a card at once, the full-size picture dropped before the next file;
- `picsort.app.card_pages`: the cards a page at a time, and each photo kept beside its card under a memory cap;
- `picsort.app.shared_labels`: labels saved to and undone in the store every visitor shares, and the counts;
- `picsort.app.teach_panel`: Teach mode (each visitor's own folder and session), opened here; the page then
  answers with the model it trains.

Tests drive the same methods without a browser. This module must not import fastai (directly or through picsort
modules): serving uses the plain-torch network from `picsort.inference.classify`, which starts faster and needs
less memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

import ipywidgets as widgets

from picsort.app.card_pages import CardPages, Upload
from picsort.app.cards import ProblemCard, ResultCard
from picsort.app.download_widget import DownloadButton
from picsort.app.intake import Intake
from picsort.app.page_text import escape, html_widget, intro_text, limits_text
from picsort.app.session_widget import SessionWatch
from picsort.app.shared_labels import SharedLabels
from picsort.app.widget_scripts import static_text
from picsort.foundation.cpu_quota import fit_torch_threads
from picsort.foundation.folders import EXAMPLES_DIR, labels_dir
from picsort.foundation.vocabulary import ACTION_KEYS
from picsort.inference.classify import Classifier, load_model
from picsort.inference.model import ModelFolderError
from picsort.photos.labels import LabelStore
from picsort.photos.photo_folders import photos_in
from picsort.serving.server_log import send_log_to_server

__all__ = ["ClassifierApp", "build_app"]

log = logging.getLogger(__name__)

STYLE = static_text("app.css")
TEACH_OPEN = "Teach it your own classes…"
TEACH_CLOSE = "Hide Teach"
# Teach keeps each visitor's photos apart; until the page has said whose it is, there is no folder to open.
TEACH_WAITING = "Teach opens once this page has told the server which browser it is: wait a moment, or reload."


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


class ClassifierApp:
    """The page: what the model is, the upload zone, label counts, undo, download and the cards (newest on top)."""

    def __init__(self, classifier: Classifier, store: LabelStore, *, examples_folder: Path | None = EXAMPLES_DIR):
        if store.classes is None or list(store.classes) != list(classifier.classes):
            raise ValueError(f"the label store's classes ({store.classes}) are not the model's "
                             f"({', '.join(classifier.classes)})")
        send_log_to_server()
        self.classifier = classifier
        self.labels_root = store.root  # the shared labels, beside which each visitor's Teach folder is
        self.pages = CardPages()
        self.shared = SharedLabels(store, self.pages.uploads)
        self.intake = Intake(classifier, examples=photos_in(examples_folder) if examples_folder is not None else [],
                             on_card=self._card_arrived, on_selection_done=self._selection_done,
                             on_label=self.shared.save_label, on_undo=lambda: self._guarded(self.undo),
                             guarded=self._guarded)
        # Teach mode: built on first open, so a page nobody teaches on loads no second network.
        # Enabled once the page's visitor id arrives (SessionWatch, below): Teach is each visitor's own.
        self.teach_button = widgets.Button(description=TEACH_OPEN, disabled=True, tooltip=TEACH_WAITING,
                                           layout=widgets.Layout(width="auto", align_self="flex-start"))
        self.teach_button.add_class("picsort-teach-open")
        self.teach_button.on_click(lambda _: self._guarded(self.toggle_teach))
        self.teach_box = widgets.VBox([])
        self.teach_panel = None
        self.undo_button = widgets.Button(description=f"Undo last label ({ACTION_KEYS['undo'][0]})",
                                          tooltip="Undo the latest label saved on this page",
                                          layout=widgets.Layout(width="auto"))
        self.undo_button.add_class("picsort-undo")
        self.undo_button.on_click(lambda _: self._guarded(self.undo))
        self.download = DownloadButton(self.labels_zip, mime="application/zip", description="Download labels (zip)")
        self.session = SessionWatch(on_visitor=self._visitor_arrived)
        toolbar = widgets.HBox([self.counts, self.undo_button, self.download, self.undo_note])
        toolbar.add_class("picsort-toolbar")
        self.refresh_counts()
        self.intro = html_widget(intro_text(classifier.classes, classifier.card), "picsort-intro")
        self.widget = widgets.VBox([html_widget(f"<style>{STYLE}</style>", "picsort-style"), self.intro,
                                    self.teach_button, self.teach_box, self.upload, self.examples_button,
                                    self.progress, toolbar, self.pages.pager, self.pages.cards_box, self.session])
        self.widget.add_class("picsort-app")

    # -- the parts' widgets and state, by the names the page has always had --------------------------------

    upload = property(lambda self: self.intake.upload)
    examples_button = property(lambda self: self.intake.examples_button)
    examples = property(lambda self: self.intake.examples)
    progress = property(lambda self: self.intake.progress)
    store = property(lambda self: self.shared.store)
    counts = property(lambda self: self.shared.counts)
    undo_note = property(lambda self: self.shared.undo_note)
    cards = property(lambda self: self.pages.cards)
    uploads = property(lambda self: self.pages.uploads)
    page = property(lambda self: self.pages.page)
    pager = property(lambda self: self.pages.pager)
    previous_page = property(lambda self: self.pages.previous_page)
    next_page = property(lambda self: self.pages.next_page)
    page_note = property(lambda self: self.pages.page_note)
    cards_box = property(lambda self: self.pages.cards_box)

    @staticmethod
    def limits_text() -> str:
        """The limits the page states: the decoder's own (picsort.photos.images)."""
        return limits_text()

    # -- the wiring --------------------------------------------------------------------------------------

    def _card_arrived(self, card: ResultCard | ProblemCard, upload: Upload | None, in_selection: int) -> None:
        if in_selection == 1:
            self.pages.page = 0  # a new selection is shown from its first page
        self.pages.add(card, upload, keep=in_selection)

    def _selection_done(self, cards: list[ResultCard | ProblemCard]) -> None:
        self.pages.put_first(cards)
        self.refresh_counts()

    def add_file(self, name: str, data: bytes, *, index: int | None = None, total: int | None = None):
        return self.intake.add_file(name, data, index=index, total=total)

    def add_problem(self, name: str, message: str, *, index: int | None = None, total: int | None = None):
        return self.intake.add_problem(name, message, index=index, total=total)

    def handle_upload(self, entries: Iterable[Mapping[str, Any]]) -> list:
        return self.intake.handle_upload(entries)

    def try_examples(self) -> list:
        return self.intake.try_examples()

    def finish_batch(self) -> list:
        return self.intake.finish_batch()

    def show_page(self, page: int) -> None:
        self.pages.show_page(page)

    def undo(self) -> dict | None:
        return self.shared.undo()

    def refresh_counts(self) -> dict[str, int]:
        return self.shared.refresh_counts()

    def labels_zip(self) -> tuple[str, bytes, str]:
        return self.shared.labels_zip()

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
        from picsort.app.teach_panel import TeachCannotStart, TeachPanel  # a page nobody teaches on loads none of it

        if self.teach_panel is None:
            if self.visitor is None:
                self.teach_box.children = (html_widget(f"<p>{escape(TEACH_WAITING)}</p>", "picsort-teach-message"),)
                return
            try:
                self.teach_panel = TeachPanel.for_visitor(
                    self.visitor, labels_root=self.labels_root, model_classes=self.classifier.classes,
                    on_trained=lambda trained: self.use_model(trained.classifier, self.teach_panel.session.store))
            except TeachCannotStart as problem:
                self.teach_box.children = (html_widget(f'<p class="picsort-error">{escape(problem)}</p>',
                                                       "picsort-teach-message"),)
                return
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
        self.shared.store = LabelStore(kept.root, classifier.classes, shown_as=kept.shown_as,
                                       max_photos=kept.max_photos)
        self.classifier = classifier
        self.intake.use(classifier)
        self.pages.clear()
        self.intro.value = intro_text(classifier.classes, classifier.card)
        self.examples_button.layout.display = "none"  # the examples are photos of the shipped model's classes
        if labels_store is not None:
            self.shared.counts_heading = ("Photos of these classes so far, taught and labelled (kept in your Teach "
                                          "folder, for this browser only; a label counts at the next Train):")
        self.progress.value = (f"Now answering with the model you trained ({escape(', '.join(classifier.classes))})"
                               f": drop photos below to try it.")
        self.refresh_counts()

    def _guarded(self, action) -> None:
        """Run a button's action; a failure becomes a line on the page (details in the server log)."""
        try:
            action()
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: action failed")
            self.undo_note.value = '<span class="picsort-error">Something went wrong. Please try again.</span>'
