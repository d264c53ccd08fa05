"""Teach mode's state: photos added class by class, their features computed as they arrive, and Train.

The app's Teach section (and anyone in Python) adds photos one at a time as bytes; each is decoded by the one
decoder (`Classifier.to_image`, picsort.images), prepared as the app prepares it and run once through the frozen
pretrained body, so only its pooled features and a small thumbnail are kept. Train then fits the head with
`picsort.teaching.fit_model`, the same fitting `picsort teach` uses, in about a second.
"""

from __future__ import annotations

import datetime
import io
import itertools
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from picsort.backbones import DEFAULT_BACKBONE, native_size
from picsort.classify import Classifier
from picsort.labels import check_class_name
from picsort.model import centre_crop_extra
from picsort.teaching import MODEL_FILES, Fitted, _check_packages, fit_model, pretrained_classifier
from picsort.training import NotEnoughPhotosError, check_photo_counts

__all__ = ["MIN_PHOTOS", "TeachSession", "TaughtPhoto", "Trained"]

# More than picsort teach's 3: with a handful of photos each one held out in turn is what the accuracy and the
# "none of these" threshold are measured on, and under 5 a class's figures swing on a single photo.
MIN_PHOTOS = 5
THUMBNAIL_SIZE = 96  # pixels, longest side of a photo's thumbnail in the Teach section
NAMED_IN = "the Teach section"


@dataclass(frozen=True)
class TaughtPhoto:
    """One photo added to a class: what the page shows of it and what Train needs (its features, not its pixels)."""

    id: int
    name: str
    thumbnail: bytes  # JPEG, at most THUMBNAIL_SIZE px
    size: tuple[int, int]  # the picture's width and height as decoded
    features: torch.Tensor  # raw average-pooled body features (C)


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
        return (f"Trained on {sum(card['images_per_class'].values())} photos ({counts}) in {self.seconds:.1f} s. "
                f"Held-out accuracy: {self.accuracy:.0%} of {validation['images']} photos, each answered by a "
                f"model trained without it ({validation['method'].split(':')[0]}).")

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

    def __init__(self, classes: Sequence[str] = (), backbone: str = DEFAULT_BACKBONE):
        _check_packages(backbone)  # says which package to install, before the body is loaded
        self.backbone = backbone
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
        self.photos[name] = []
        return name

    def remove_class(self, name: str) -> None:
        self._photos_of(name)
        del self.photos[name]

    def add_photo(self, class_name: str, data: bytes, name: str = "photo") -> TaughtPhoto:
        """Decode one photo, keep its features and a thumbnail under `class_name`; raises UnusableImageError."""
        photos = self._photos_of(class_name)
        preparer = self.preparer
        image = preparer.to_image(data, name=name)
        with torch.inference_mode():
            (maps,) = preparer.feature_maps(preparer.to_batch([preparer.to_tensor(image)]))
            features = maps.float().mean(dim=(2, 3))[0].clone()
        thumbnail = image.convert("RGB")
        thumbnail.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.BILINEAR)
        buffer = io.BytesIO()
        thumbnail.save(buffer, format="JPEG", quality=80)
        photo = TaughtPhoto(next(self._ids), name, buffer.getvalue(), image.size, features)
        photos.append(photo)
        return photo

    def remove_photo(self, class_name: str, photo_id: int) -> TaughtPhoto:
        photos = self._photos_of(class_name)
        for index, photo in enumerate(photos):
            if photo.id == photo_id:
                return photos.pop(index)
        raise ValueError(f"{class_name} has no photo number {photo_id}")

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
        fitted = fit_model(features, labels, classes, backbone=self.backbone, body=self.preparer.network[0].model,
                           data_source="photos added in the app's Teach section")
        return Trained(fitted, time.perf_counter() - started)

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

