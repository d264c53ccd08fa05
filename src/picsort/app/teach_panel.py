"""The page's Teach section: name classes, add photos to each (choose, drop, paste or the camera), Train.

A thin view over `picsort.app.teach_session.TeachSession`: each photo is turned into features as it arrives, so
Train takes about a second. A trained model is handed to the page through `on_trained`; the section never
reaches into the page. With a session that has a store (the app gives each visitor a Teach folder of their own),
every photo is kept there as it is added, and the section opens with the photos kept before (a reload, a new
kernel) and offers them as a labels zip. They are never mixed into the shared labels. The page never shows where
on the server they are. Each class's photos are one widget (picsort.app.thumbnail_widget), and every line the
section says is text, never markup: class and file names come from visitors.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Callable, Sequence

import ipywidgets as widgets

from picsort.app.camera_widget import Camera
from picsort.app.download_widget import DownloadButton, NothingToDownload
from picsort.app.teach_session import MAX_PHOTOS, MIN_PHOTOS, TaughtPhoto, TeachSession, Trained
from picsort.app.thumbnail_widget import ThumbnailGrid
from picsort.app.upload_widget import UploadZone
from picsort.foundation.folders import visitor_teach_dir
from picsort.foundation.process_memory import return_freed_memory
from picsort.foundation.shown_text import human_bytes
from picsort.photos.images import ACCEPTED_FORMATS_TEXT, MAX_UPLOAD_BYTES, UnusableImageError
from picsort.photos.labels import LabelStore, LabelStoreError
from picsort.training.notebook import NotEnoughPhotosError

__all__ = ["TEACH_FOLDER", "TeachCannotStart", "TeachPanel"]

log = logging.getLogger(__name__)
# Each photo's decode and forward pass leave tens of MB of freed heap that glibc keeps (several threads' arenas):
# over a selection of 1000 that grew the kernel by hundreds of MB before the selection's end gave it back. A trim
# every few photos costs milliseconds.
TRIM_EVERY = 10
# How the page names a visitor's Teach folder: never its path on the server.
TEACH_FOLDER = "your Teach folder"


class TeachCannotStart(Exception):
    """Teach cannot open on this server or for this visitor; the message says why, for the page."""


def _html(text: str, css_class: str) -> widgets.HTML:
    widget = widgets.HTML(text)
    widget.add_class(css_class)
    return widget


def _button(description: str, css_class: str, tooltip: str = "") -> widgets.Button:
    # flex 0 0 auto: beside a long note (the download's) a button keeps its whole label
    button = widgets.Button(description=description, tooltip=tooltip or description,
                            layout=widgets.Layout(width="auto", flex="0 0 auto"))
    button.add_class(css_class)
    return button


class TeachPanel:
    """The Teach section's widgets (`widget`) over one TeachSession; `on_trained(trained)` gets each new model."""

    def __init__(self, session: TeachSession, *, model_classes: Sequence[str],
                 on_trained: Callable[[Trained], None]):
        self.session = session
        self.model_classes = list(model_classes)
        self._on_trained = on_trained
        self.trained: Trained | None = None
        self._added: list[str] = []  # names of the photos of the selection arriving, for its summary line
        self._said, self._error = "", False  # the message line's text, and whether it is an error
        self._decoded_since_trim = 0
        self._rows: dict[str, tuple[widgets.HTML, ThumbnailGrid]] = {}  # class -> (its heading, its thumbnails)
        self._row_widgets: dict[str, widgets.VBox] = {}

        self.name_input = widgets.Text(placeholder="a class name, e.g. mug", layout=widgets.Layout(width="14em"))
        self.name_input.add_class("picsort-teach-name")
        self.add_button = _button("Add class", "picsort-teach-add")
        self.add_button.on_click(lambda _: self._guarded(self.add_class_typed))
        self.from_model_button = _button(f"Start from this model's classes ({', '.join(self.model_classes)})",
                                         "picsort-teach-from-model")
        self.from_model_button.on_click(lambda _: self._guarded(self.start_from_model))
        self.target = widgets.ToggleButtons(options=[], description="Add photos to:",
                                            style={"description_width": "auto"})
        self.target.add_class("picsort-teach-target")
        self.upload = UploadZone(on_file=self._upload_file, on_refused=self._upload_refused,
                                 on_done=lambda _total: self._finish_selection(),
                                 limits_text=f"{ACCEPTED_FORMATS_TEXT}; up to {human_bytes(MAX_UPLOAD_BYTES)} each.")
        self.upload.add_class("picsort-teach-upload")
        self.camera = Camera(on_photo=self._camera_photo, side=session.capture_side)
        self.message = _html("", "picsort-teach-message")
        self.classes_box = widgets.VBox([])
        self.classes_box.add_class("picsort-teach-classes")
        self.train_button = _button("Train", "picsort-teach-train", "Train a model on the photos above")
        self.train_button.on_click(lambda _: self._guarded(self.train))
        self.status = _html("", "picsort-teach-status")
        self.download = DownloadButton(self.model_zip, mime="application/zip", description="Download model (zip)")
        self.download.add_class("picsort-teach-download")
        self.web_download = DownloadButton(self.web_zip, mime="application/zip", description="Download web page (zip)")
        self.web_download.add_class("picsort-teach-web-download")
        self.photos_download = DownloadButton(self.photos_zip, mime="application/zip",
                                              description="Download photos (labels zip)")
        self.photos_download.add_class("picsort-teach-photos-download")
        self.photos_download.layout.display = "" if session.store is not None else "none"
        self.widget = widgets.VBox([
            _html(f"<h2>Teach it your own classes</h2><p>Name two or more classes, add at least {MIN_PHOTOS} "
                  f"photos of each (choose, drop or paste them, or take them with the camera), press <b>Train</b>, "
                  f"and the page answers with your model at once. More photos, from different angles and "
                  f"backgrounds, make a better model (up to {MAX_PHOTOS} photos in all).</p>"
                  f"<p class=\"picsort-teach-kept\">{html.escape(self.kept_text())}"
                  f"</p>", "picsort-teach-intro"),
            widgets.HBox([self.name_input, self.add_button, self.from_model_button]),
            self.target, self.upload, self.camera, self.message, self.classes_box,
            widgets.HBox([self.train_button, self.download, self.web_download]), self.photos_download, self.status])
        self.widget.add_class("picsort-teach")
        for name in session.classes:
            self._add_row(name)
            for photo in session.photos[name]:
                self._show_photo(name, photo)
        self._refresh()

    # -- classes -----------------------------------------------------------------------------------------

    def add_class_typed(self) -> None:
        self.add_class(self.name_input.value)
        self.name_input.value = ""

    def add_class(self, name: str) -> bool:
        """Add a class (the message line says why not); the new class is where photos go next."""
        try:
            name = self.session.add_class(name)
        except ValueError as problem:
            self._say(f"{problem}.", error=True)
            return False
        self._add_row(name)
        self._refresh()
        self.target.value = name
        self._say("")
        return True

    def kept_text(self) -> str:
        """Where the photos are kept (the upload zone's note): never the server's path."""
        if self.session.store is None:
            return "Each photo is kept only as what the model needs, here, until you leave the page."
        return ("Your photos are kept on the server for this browser only, until you remove them: reload the page "
                "or come back later in this browser and they are here again. Nobody else using this app sees them.")

    @classmethod
    def for_visitor(cls, visitor: str, *, labels_root: Path, model_classes: Sequence[str],
                    on_trained: Callable[[Trained], None]) -> "TeachPanel":
        """A visitor's Teach section, its photos kept in a folder of their own beside the shared labels, never in
        them (picsort.foundation.folders.visitor_teach_dir): a reload or a new kernel in the same browser brings
        them back (`restore`), nobody else's page sees them, and they download as a labels zip of their own.

        TeachCannotStart when the server lacks what teaching needs (scikit-learn, the Lite weights package) or the
        disk refuses the Teach folder.
        """
        from picsort.app import teach_session
        from picsort.training.teaching import TeachError

        try:
            store = LabelStore(visitor_teach_dir(visitor, labels=labels_root), shown_as=TEACH_FOLDER,
                               max_photos=teach_session.MAX_PHOTOS)  # read now: tests lower it
            session = TeachSession(store=store)
        except (TeachError, LabelStoreError) as problem:
            raise TeachCannotStart(f"Teaching cannot start here: {problem}") from problem
        return cls(session, model_classes=model_classes, on_trained=on_trained)

    def restore(self) -> int:
        """Bring back the photos kept in the Teach folder that this section does not show yet; says so."""
        added, problems = self.session.restore()
        for class_name, photo in added:
            if class_name not in self._rows:
                self._add_row(class_name)
            self._show_photo(class_name, photo)
        self._refresh()
        if added:
            counts = ", ".join(f"{name} {count}" for name, count in self.session.counts().items())
            self._say(f"Added {len(added)} photo{'s' * (len(added) != 1)} you taught before (or labelled on the "
                      f"page since): now {counts}.")
        if problems:
            self._say(f"{self._said} {len(problems)} kept photo{'s' * (len(problems) != 1)} could not be "
                      f"used: {'; '.join(problems[:3])}", error=True)
        if added and self.target.value is None and self.session.classes:
            self.target.value = self.session.classes[0]
        return len(added)

    def start_from_model(self) -> None:
        for name in self.model_classes:
            if name not in self.session.photos:
                self.add_class(name)
        if self.model_classes:
            self.target.value = self.model_classes[0]

    def remove_class(self, name: str) -> None:
        self.session.remove_class(name)
        self._rows.pop(name)
        row = self._row_widgets.pop(name)
        self._refresh()
        _close_all(row)
        self._say(f"Removed the class {name} and its photos.")

    def _add_row(self, name: str) -> None:
        heading = _html("", "picsort-teach-class-heading")
        remove = _button("Remove class", "picsort-teach-remove-class", f"Remove {name} and its photos")
        remove.on_click(lambda _: self._guarded(lambda: self.remove_class(name)))
        thumbnails = ThumbnailGrid(
            on_remove=lambda photo_id: self._guarded(lambda: self.remove_photo(name, photo_id)))
        row = widgets.VBox([widgets.HBox([heading, remove]), thumbnails])
        row.add_class("picsort-teach-class")
        self._rows[name] = (heading, thumbnails)
        self._row_widgets[name] = row

    # -- photos ------------------------------------------------------------------------------------------

    def add_photo(self, name: str, data: bytes) -> TaughtPhoto | None:
        """One photo for the class chosen under "Add photos to"; a photo that cannot be used is named on the page."""
        class_name = self.target.value
        if class_name is None:
            self._say("Add a class first: type its name and press Add class.", error=True)
            return None
        try:
            photo = self.session.add_photo(class_name, data, name)
        except (UnusableImageError, LabelStoreError, ValueError) as problem:  # unreadable, disk full, added before
            self._say(str(problem), error=True)
            return None
        finally:
            self._decoded_since_trim += 1
            if self._decoded_since_trim >= TRIM_EVERY:
                self._decoded_since_trim = 0
                return_freed_memory()
        self._show_photo(class_name, photo)
        self._added.append(class_name)
        self._refresh()
        return photo

    def remove_photo(self, class_name: str, photo_id: int) -> None:
        photo = self.session.remove_photo(class_name, photo_id)
        self._rows[class_name][1].remove(photo_id)
        self._refresh()
        self._say(f"Removed {photo.name} from {class_name}.")

    def _show_photo(self, class_name: str, photo: TaughtPhoto) -> None:
        width, height = photo.size
        self._rows[class_name][1].add(photo.id, f"Remove {photo.name} ({width}×{height} px)", photo.thumbnail)

    def _upload_file(self, name: str, data: bytes, index: int, total: int) -> None:
        self._say(f"Adding {index} of {total}…")
        self.add_photo(name, data)

    def _camera_photo(self, name: str, data: bytes) -> None:
        if self.add_photo(name, data) is not None:
            self._say(f"Took {name} for {self.target.value}.")

    def _upload_refused(self, name: str, reason: str, size: int, index: int, total: int) -> None:
        why = f"it is larger than the limit ({human_bytes(size)})" if reason == "too_large" else \
            "the browser could not read it"
        self._say(f"{name} was not added: {why}.", error=True)

    def _finish_selection(self) -> None:
        added, self._added = self._added, []
        if added and not self._error:
            self._say(f"Added {len(added)} photo{'s' * (len(added) != 1)} to {added[-1]}.")
        return_freed_memory()  # decoding a selection's photos leaves freed heap glibc would otherwise keep

    # -- training ----------------------------------------------------------------------------------------

    def train(self) -> Trained | None:
        """Train on every photo added, and on those labelled with a taught class on the page since (they are kept
        in the same Teach folder); the page switches to the new model (`on_trained`)."""
        self.restore()
        try:
            trained = self.session.train()
        except NotEnoughPhotosError as problem:
            self.status.value = f'<span class="picsort-error">Not yet: {html.escape(str(problem))}.</span>'
            return None
        self.trained = trained
        self._on_trained(trained)
        self.status.value = (f"{html.escape(trained.summary())} The page now answers with this model: try it "
                             f"with photos in the zone below this section. <i>Download model</i> keeps it (this "
                             f"page forgets the model when you leave{self._photos_note()}).")
        return trained

    def _photos_note(self) -> str:
        if self.session.store is None:
            return ""
        return "; the photos stay on the server and come back when Teach opens in this browser"

    def photos_zip(self) -> tuple[str, bytes, str]:
        """The photos taught, as a labels zip, for the download button."""
        if self.session.store is None or not sum(self.session.counts().values()):
            raise NothingToDownload("Add photos first.")
        name, data, count = self.session.photos_zip()
        return name, data, (f"{count} photo{'s' * (count != 1)} in one folder per class: train.ipynb and "
                            f"picsort teach take this zip as it is")

    def model_zip(self) -> tuple[str, bytes, str]:
        """The trained model folder as a zip, for the download button."""
        if self.trained is None:
            raise NothingToDownload("Train a model first.")
        name, data = self.trained.model_zip()
        return name, data, (f"Unzip it and serve it: PICSORT_MODEL_DIR={name.removesuffix('.zip')} picsort app")

    def web_zip(self) -> tuple[str, bytes, str]:
        """The trained model as a web page that classifies in the visitor's browser (picsort.web), zipped."""
        if self.trained is None:
            raise NothingToDownload("Train a model first.")
        import tempfile
        from pathlib import Path

        from picsort.web.site import SiteError, zipped_site

        with tempfile.TemporaryDirectory(prefix="picsort-model-") as temporary:
            try:
                name, data = zipped_site(self.trained.fitted.save(Path(temporary) / "model"))
            except SiteError as error:
                raise NothingToDownload(str(error)) from None
        return name, data, (f"Unzip it and publish the folder (GitHub Pages), or serve it to a room: "
                            f"python -m http.server --directory {name.removesuffix('.zip')}")

    # -- what the section says ---------------------------------------------------------------------------

    def _refresh(self) -> None:
        counts = self.session.counts()
        for name, (heading, _) in self._rows.items():
            count = counts[name]
            more = f" (add {MIN_PHOTOS - count} more)" if count < MIN_PHOTOS else ""
            heading.value = (f'<span class="picsort-teach-count" data-class="{html.escape(name)}"><b>'
                             f'{html.escape(name)}</b>: {count} photo{"s" * (count != 1)}{more}</span>')
        rows = tuple(self._row_widgets[name] for name in self._rows)
        if rows != self.classes_box.children:  # each change is sent to the page: only real ones
            self.classes_box.children = rows
        if tuple(counts) != tuple(self.target.options):
            current = self.target.value
            self.target.options = list(counts)
            if current in counts:
                self.target.value = current
        self.target.layout.display = "" if counts else "none"

    def _say(self, text: str, error: bool = False) -> None:
        """One line in the message area, as text: names in it come from visitors and must never be markup."""
        self._said, self._error = text, error
        shown = html.escape(text)
        self.message.value = f'<span class="picsort-error">{shown}</span>' if error else shown

    def _guarded(self, action) -> None:
        """Run a button's action; a failure becomes a line in the section (details in the server log)."""
        try:
            action()
        except Exception:  # noqa: BLE001 - the page must keep working whatever happens
            log.exception("picsort app: a Teach action failed")
            self._say("Something went wrong. Please try again.", error=True)


def _close_all(widget: widgets.Widget) -> None:
    """Close a widget and every widget inside it, layouts and styles too (closing a box leaves its children, and
    closing a widget its layout, open in the kernel)."""
    for child in getattr(widget, "children", ()):
        _close_all(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget):
            part.close()
    widget.close()
