"""Teach mode's state: photos added class by class, their features computed as they arrive, and Train.

The app's Teach section (and anyone in Python) adds photos one at a time as bytes; each is decoded by the one
decoder (`Classifier.to_image`, picsort.photos.images), prepared as the app prepares it and run once through the frozen
pretrained body, so only its pooled features and a small thumbnail are kept in memory. Train then fits the head
with `picsort.training.teaching.fit_model`, the same fitting `picsort teach` uses, in about a second.

Given a label store (`store`; the app gives the Teach folder, picsort.foundation.folders.teach_dir), each photo is also kept
there under its class as it arrives and leaves it when removed, so a reload of the page or a new kernel loses
nothing (`restore`), and the photos download as a labels zip that train.ipynb and `picsort teach` take. Beside
them (picsort.foundation.folders.teach_features_dir) each photo's features and thumbnail are kept too, so reopening Teach
reads them instead of decoding and running every photo again. A session holds at most MAX_PHOTOS photos.
"""

from __future__ import annotations

import datetime
import hashlib
import io
import itertools
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from picsort.foundation.files import write_atomically
from picsort.foundation.folders import teach_features_dir
from picsort.foundation.vocabulary import NONE_LABEL, check_class_name
from picsort.inference.backbones import DEFAULT_BACKBONE, native_size
from picsort.inference.batches import pooled_body_features
from picsort.inference.classify import Classifier
from picsort.inference.model import centre_crop_extra
from picsort.photos.images import jpeg
from picsort.photos.labels import LabelStore
from picsort.training.notebook import NotEnoughPhotosError, check_photo_counts
from picsort.training.teaching import MODEL_FILES, Fitted, check_packages, fit_model, pretrained_classifier

__all__ = ["MAX_CLASSES", "MAX_PHOTOS", "MIN_PHOTOS", "DuplicatePhotoError", "TeachSession", "TaughtPhoto",
           "TooManyError", "Trained"]

# More than picsort teach's 3: with a handful of photos each one held out in turn is what the accuracy and the
# "none of these" threshold are measured on, and under 5 a class's figures swing on a single photo.
MIN_PHOTOS = 5
THUMBNAIL_SIZE = 96  # pixels, longest side of a photo's thumbnail in the Teach section
NAMED_IN = "the Teach section"
# A visitor's photos at most (those labelled on the page after Train included): 1000 is 200 photos each for five
# classes, more than the course's 150 a class, and what it costs stays small: about 6 KB of features and a 3 KB
# thumbnail a photo in the kernel, and Train on 1000 photos' features takes a second or two. On disk the photos
# are kept as they came (at most picsort.photos.images.MAX_UPLOAD_BYTES each).
MAX_PHOTOS = 1000
MAX_CLASSES = 50  # each class is a few widgets on the page


class DuplicatePhotoError(ValueError):
    """The same photo (the same bytes) was added before: one photo counts once, in one class."""


class TooManyError(ValueError):
    """A photo past MAX_PHOTOS or a class past MAX_CLASSES: the message says so and what to do."""


@dataclass(frozen=True)
class TaughtPhoto:
    """One photo added to a class: what the page shows of it and what Train needs (its features, not its pixels)."""

    id: int
    name: str
    thumbnail: bytes  # JPEG, at most THUMBNAIL_SIZE px
    size: tuple[int, int]  # the picture's width and height as decoded
    features: torch.Tensor  # raw average-pooled body features (C)
    sha256: str = ""  # hex SHA-256 of the bytes added: the photo's name in the label store


@dataclass
class Trained:
    """One Train: the model, ready to classify, and how it did on photos held out from it."""

    fitted: Fitted
    seconds: float

    @property
    def classifier(self) -> Classifier:
        return self.fitted.classifier

    @property
    def accuracy(self) -> float:
        return 1 - self.fitted.card["validation"]["error_rate"]

    def summary(self) -> str:
        """What the page says after Train (plain text)."""
        card = self.fitted.card
        validation = card["validation"]
        counts = ", ".join(f"{name} {count}" for name, count in card["images_per_class"].items())
        others = card["none_of_these"]["calibration"]["other_images"]
        none = (f" 'None of these' was set on {others} photo{'s' * (others != 1)} labelled none of these too."
                if others else "")
        return (f"Trained on {sum(card['images_per_class'].values())} photos ({counts}) in {self.seconds:.1f} s. "
                f"Held-out accuracy: {self.accuracy:.0%} of {validation['images']} photos, each answered by a "
                f"model trained without it ({validation['method'].split(':')[0]}).{none}")

    def model_zip(self) -> tuple[str, bytes]:
        """(file name, bytes) of a zip holding the model folder: unzipped, `PICSORT_MODEL_DIR=<folder> picsort app`,
        `picsort classify --model <folder>` and `load_model(<folder>)` serve it."""
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M")
        folder_name = f"picsort-model-{stamp}"
        buffer = io.BytesIO()
        with tempfile.TemporaryDirectory(prefix="picsort-model-") as temporary:
            folder = self.fitted.save(Path(temporary) / folder_name)
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for name in MODEL_FILES:
                    archive.write(folder / name, f"{folder_name}/{name}")
        return f"{folder_name}.zip", buffer.getvalue()


class TeachSession:
    """Classes with their photos' features; `train()` fits a Classifier on them.

    Bad input raises ValueError with a message for the page: an unusable class name, a photo that cannot be
    read (`UnusableImageError`), too few photos (`NotEnoughPhotosError`, naming the class and how many more).
    """

    def __init__(self, classes: Sequence[str] = (), backbone: str = DEFAULT_BACKBONE, store: LabelStore | None = None):
        check_packages(backbone)  # says which package to install, before the body is loaded
        self.backbone = backbone
        self.store = store  # where each photo is kept on disk as it is added (None: in memory only)
        # Features of the store's photos labelled "none of these" (on the page, after a Train): photos of other
        # things, for the "none of these" threshold, as picsort teach uses a labels zip's none/ folder.
        self.others: dict[str, torch.Tensor] = {}
        self.photos: dict[str, list[TaughtPhoto]] = {}
        self._ids = itertools.count(1)
        self._preparer: Classifier | None = None
        for name in classes:
            self.add_class(name)

    @property
    def classes(self) -> list[str]:
        return list(self.photos)

    @property
    def capture_side(self) -> int:
        """The shortest side a photo needs: the model squishes it to size + extra and crops the centre, so a
        camera photo taken larger would only be reduced again."""
        size = native_size(self.backbone)
        return size + centre_crop_extra(size)

    def counts(self) -> dict[str, int]:
        return {name: len(photos) for name, photos in self.photos.items()}

    def add_class(self, name: str) -> str:
        name = check_class_name(name.strip() if isinstance(name, str) else name)
        if name in self.photos:
            raise ValueError(f"there is already a class called {name!r}")
        if len(self.photos) >= MAX_CLASSES:
            raise TooManyError(f"{NAMED_IN} takes at most {MAX_CLASSES} classes: remove one to add {name!r}")
        self.photos[name] = []
        return name

    def remove_class(self, name: str) -> None:
        """Forget the class and its photos (taken out of the store too)."""
        for photo in list(self._photos_of(name)):
            self.remove_photo(name, photo.id)
        del self.photos[name]

    def add_photo(self, class_name: str, data: bytes, name: str = "photo", *, keep: bool = True) -> TaughtPhoto:
        """Decode one photo, keep its features and a thumbnail under `class_name`, and the photo in the store
        (unless `keep` is false: it is there already). Raises UnusableImageError, DuplicatePhotoError, and
        LabelStoreError when the disk refuses it (then the photo is not added)."""
        photos = self._photos_of(class_name)
        if self.total() >= MAX_PHOTOS:
            raise TooManyError(f"{name} was not added: {NAMED_IN} holds at most {MAX_PHOTOS} photos, and has "
                               f"{self.total()}; remove some to make room")
        digest = hashlib.sha256(data).hexdigest()
        for other, members in self.photos.items():
            if any(photo.sha256 == digest for photo in members):
                raise DuplicatePhotoError(f"{name} is already in {other}: each photo counts once")
        photo = self._kept(digest, name) or self._decoded(data, name, digest)
        if keep and self.store is not None:
            self.store.save(data, class_name, original_name=name)
        photos.append(photo)
        return photo

    def total(self) -> int:
        """Photos held, in every class and labelled "none of these": what MAX_PHOTOS counts."""
        return sum(self.counts().values()) + len(self.others)

    def remove_photo(self, class_name: str, photo_id: int) -> TaughtPhoto:
        photos = self._photos_of(class_name)
        for index, photo in enumerate(photos):
            if photo.id == photo_id:
                if self.store is not None:
                    self.store.remove(photo.sha256)
                    self._cached(photo.sha256).unlink(missing_ok=True)
                return photos.pop(index)
        raise ValueError(f"{class_name} has no photo number {photo_id}")

    def restore(self) -> tuple[list[tuple[str, TaughtPhoto]], list[str]]:
        """Add the photos kept in the store that this session does not hold yet (taught before a reload or in
        another kernel, or labelled on the page since): ((class, photo) of each added, a line for each photo that
        could not be used). Photos labelled "none of these" are no class: they go to `others`, for the threshold."""
        added, problems = [], []
        if self.store is None:
            return added, problems
        held = {photo.sha256 for members in self.photos.values() for photo in members}
        entries = self.store.entries()
        labelled_none = {entry["sha256"] for entry in entries if entry["label"] == NONE_LABEL}
        self.others = {digest: features for digest, features in self.others.items() if digest in labelled_none}
        left_out = 0
        for entry in entries:
            label, digest = entry["label"], entry["sha256"]
            if digest in held or digest in self.others:
                continue
            name = entry.get("original_name") or Path(entry["path"]).name
            if self.total() >= MAX_PHOTOS:  # a store filled past the limit by hand: the first ones count
                left_out += 1
                continue
            try:
                if label == NONE_LABEL:
                    kept = self._kept(digest, name) or self._decoded(
                        (self.store.root / entry["path"]).read_bytes(), name, digest)
                    self.others[digest] = kept.features
                    continue
                if label not in self.photos:
                    self.add_class(label)
                kept = self._kept(digest, name)
                if kept is not None:  # its features and thumbnail from the last time: no decoding
                    self.photos[label].append(kept)
                    added.append((label, kept))
                    continue
                data = (self.store.root / entry["path"]).read_bytes()
                added.append((label, self.add_photo(label, data, name, keep=False)))
            except (OSError, ValueError) as problem:  # a file gone or spoilt since: the rest still count
                problems.append(f"{name}: {problem}")
        if left_out:
            problems.append(f"{left_out} more photo{'s' * (left_out != 1)} left out: {NAMED_IN} holds at most "
                            f"{MAX_PHOTOS}")
        return added, problems

    def photos_zip(self) -> tuple[str, bytes, int]:
        """(file name, bytes, number of photos) of the store as a labels zip (train.ipynb's and picsort teach's
        source); ValueError without a store."""
        if self.store is None:
            raise ValueError("this session keeps its photos in memory only: nothing to download")
        buffer = io.BytesIO()
        count = self.store.write_zip(buffer)
        return f"picsort-taught-{datetime.datetime.now():%Y-%m-%d-%H%M}.zip", buffer.getvalue(), count

    def shortfall(self) -> str | None:
        """Why Train cannot run yet (which class needs how many more photos), or None when it can."""
        try:
            self._check()
        except NotEnoughPhotosError as problem:
            return str(problem)
        return None

    def train(self) -> Trained:
        """Fit the head and "none of these" on every photo added (raises NotEnoughPhotosError when too few)."""
        started = time.perf_counter()
        self._check()
        classes = self.classes
        photos = [(index, photo) for index, name in enumerate(classes) for photo in self.photos[name]]
        features = torch.stack([photo.features for _, photo in photos])
        labels = [index for index, _ in photos]
        others = torch.stack(list(self.others.values())) if self.others else None
        fitted = fit_model(features, labels, classes, other_features=others, backbone=self.backbone,
                           body=self.preparer.network[0].model, data_source="photos added in the app's Teach section")
        return Trained(fitted, time.perf_counter() - started)

    def _features(self, data: bytes, name: str) -> tuple[Image.Image, torch.Tensor]:
        """(the picture as decoded, its raw average-pooled body features); raises UnusableImageError."""
        preparer = self.preparer
        image = preparer.to_image(data, name=name)
        return image, pooled_body_features(preparer, [preparer.to_tensor(image)])[0].clone()

    # -- features kept beside the photos (a reload reads them instead of decoding every photo again) -----------

    def _cached(self, digest: str) -> Path:
        return teach_features_dir(self.store.root) / f"{digest}.{self.backbone}.npz"

    def _decoded(self, data: bytes, name: str, digest: str) -> TaughtPhoto:
        """The photo decoded and run through the body (raises UnusableImageError), kept beside the store's."""
        image, features = self._features(data, name)
        thumbnail, _ = jpeg(image, THUMBNAIL_SIZE, quality=80)
        photo = TaughtPhoto(next(self._ids), name, thumbnail, image.size, features, digest)
        self._keep(photo)
        return photo

    def _keep(self, photo: TaughtPhoto) -> None:
        """Write the photo's features, thumbnail and size beside the store's photos (nothing without a store; a
        write the disk refuses only costs the next reopening a decode)."""
        if self.store is None:
            return
        buffer = io.BytesIO()
        np.savez(buffer, features=photo.features.numpy().astype(np.float32),
                 thumbnail=np.frombuffer(photo.thumbnail, dtype=np.uint8), size=np.array(photo.size, dtype=np.int64))
        try:
            self._cached(photo.sha256).parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self._cached(photo.sha256), buffer.getvalue())
        except OSError:
            pass

    def _kept(self, digest: str, name: str) -> TaughtPhoto | None:
        """The photo as kept by `_keep`, or None (no store, never kept, or a file that is not what _keep wrote)."""
        if self.store is None:
            return None
        try:
            with np.load(self._cached(digest), allow_pickle=False) as kept:
                features, thumbnail, size = kept["features"], kept["thumbnail"], kept["size"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return None
        if (features.dtype != np.float32 or features.ndim != 1 or not np.isfinite(features).all()
                or thumbnail.dtype != np.uint8 or thumbnail.ndim != 1 or size.shape != (2,)):
            return None
        return TaughtPhoto(next(self._ids), name, thumbnail.tobytes(), (int(size[0]), int(size[1])),
                           torch.from_numpy(features.copy()), digest)

    @property
    def preparer(self) -> Classifier:
        """The pretrained body, preparing photos exactly as a taught model will (loaded on first use)."""
        if self._preparer is None:
            self._preparer = pretrained_classifier(self.backbone, ["first", "second"])
        return self._preparer

    def _check(self) -> None:
        if len(self.photos) < 2:
            raise NotEnoughPhotosError(f"a classifier needs at least two classes: name {2 - len(self.photos)} "
                                       f"more in {NAMED_IN}")
        check_photo_counts(self.counts(), named_in=NAMED_IN, least=MIN_PHOTOS)

    def _photos_of(self, class_name: str) -> list[TaughtPhoto]:
        if class_name not in self.photos:
            raise ValueError(f"there is no class called {class_name!r}")
        return self.photos[class_name]

