"""A model folder read back to serve: its card, and its network rebuilt from plain weights.

A model folder holds:
- `export.pkl`: fastai's `learn.export()`, for the course's `load_learner` and for more training. It is a
  pickle, so loading it runs code; it is never loaded to serve users.
- `model.safetensors`: the trained weights, plain tensors.
- `reference.safetensors`: pooled features of the training photos, for "none of these" (picsort.inference.none_of_these).
- `model.json`: the card: classes, backbone, preprocessing, "none of these" threshold, validation error,
  library versions.
The app and the command line rebuild the network from the card with plain torch (and timm for timm
backbones) and load the safetensors: no pickle, and no fastai import at serving time. Writing a model folder
after training is picsort.training.export's job.

A model folder can come from anyone, so it is checked before anything is built from it: the card's schema and
sizes (`check_card`), each file a regular file inside the folder (`model_file`), and the weights' tensor names and
shapes (`check_tensors`); what does not fit is a ModelFolderError naming the file and the problem.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path

import torch
from torch import nn

from picsort.foundation.folders import model_dir
from picsort.inference.backbones import LITE_BACKBONES, TORCHVISION_BACKBONES
from picsort.inference.efficientnet_lite import VARIANTS as LITE_VARIANTS
from picsort.inference.efficientnet_lite import EfficientNetLite

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
LEARNER_NAME = "export.pkl"
DEFAULT_THRESHOLD = 0.7
# fastai's RandomResizedCrop(val_xtra=0.14) default: how much wider than the crop a validation image is squished.
VAL_XTRA = 0.14

# What a card may ask for. A model folder can come from anyone (a download, a colleague, a workshop's shared
# drive), and the network is built from its card before any weight is read: these bounds keep a card from asking
# for gigabytes (a hidden layer of 10**6, torchvision's vit_h_14) or for sizes the resize cannot make. Each is far
# beyond what picsort trains (3 classes, no hidden layer or 512, 224-260 px).
MAX_CARD_BYTES = 2**20
MAX_CLASSES = 1000
MAX_HIDDEN = 4096
IMAGE_SIZES = range(32, 1025)
MAX_K = 1000
# ImageNet-1k's classes; larger label sets (21k) would still fit.
MAX_IMAGENET_CLASSES = 22_000
# The bodies picsort trains (backbones.BACKBONES), by the library that names them on the card.
ARCHITECTURES = {**{("timm", name): name for name in LITE_BACKBONES},
                 **{("torchvision", name): name for name in TORCHVISION_BACKBONES}}
POOLS = ("avg", "concat")
# The one resize picsort serves (classify.Classifier.model_view), fastai's at validation.
RESAMPLE = "bilinear"


class ModelFolderError(FileNotFoundError):
    """A model folder is missing, lacks one of its files, or holds one picsort cannot serve; the message says
    which file and what is wrong with it."""


def read_card(folder: Path | str | None = None) -> dict:
    """The model card (`model.json`) of a model folder, checked (`check_card`) before anything is built from it."""
    path = model_dir(folder) / CARD_NAME
    return check_card(read_card_file(path), path)


def read_card_file(path: Path | str) -> object:
    """The JSON in a card file, unchecked: a regular file inside its folder, at most MAX_CARD_BYTES, else
    ModelFolderError. Opened without blocking, so a FIFO named model.json is refused rather than waited on."""
    path = Path(path)
    model_file(path.parent, path.name,
               missing=f"no model card at {path}: train and export a model with train.ipynb first")
    try:
        # O_NONBLOCK: should the file have become a FIFO since the check, opening it still returns at once.
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise ModelFolderError(f"cannot read {path}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ModelFolderError(f"{path} is not a regular file")
        text = file.read(MAX_CARD_BYTES + 1)
    if len(text) > MAX_CARD_BYTES:
        raise ModelFolderError(f"{path} is larger than a model card can be ({MAX_CARD_BYTES // 1024} KB)")
    try:
        return json.loads(text.decode("utf-8"))
    except (ValueError, RecursionError) as error:
        raise ModelFolderError(f"{path} is not a model card (not valid JSON: {error})") from None


def model_file(folder: Path | str, name: str, *, missing: str | None = None) -> Path:
    """`folder/name` if it is a regular file inside `folder`, else ModelFolderError naming the problem.

    `name` is a plain file name (a card may name a file: `none_of_these.reference`); a link is followed only to a
    file inside the folder; a FIFO or a device is refused before anything opens it (reading one could block for
    ever or never end). `missing`: the message when there is no such file (default: re-export)."""
    folder = Path(folder)
    problem = file_name_problem(name)
    if problem:
        raise ModelFolderError(f"{folder}: {problem}")
    path = folder / name
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelFolderError(missing or f"{path} is missing: re-export the model with train.ipynb") from None
    except OSError as error:
        raise ModelFolderError(f"cannot read {path}: {error.strerror}") from None
    if not stat.S_ISREG(mode):
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise ModelFolderError(f"{path} is {kind}, not a file picsort can read")
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ModelFolderError(f"{path} is a link to a file outside its model folder {folder}: copy the file in")
    return path


def file_name_problem(name: object) -> str | None:
    """Why `name` is not a plain file name in a model folder (None: it is): no folder, no `..`, no path."""
    if not isinstance(name, str) or not name:
        return f"a model file must be named by text, not {_shown(name)}"
    if name in (".", "..") or "/" in name or "\\" in name or "\0" in name or name != os.path.basename(name):
        return f"{_shown(name)} is not a file name in the model folder (no folders, no '..')"
    return None


def check_card(card: object, where: Path | str = CARD_NAME) -> dict:
    """`card` if picsort can serve a model from it, else ModelFolderError naming `where` and the problem.

    Checked: what the network is built from (classes, architecture, head), the resize and normalisation, the
    thresholds and the "none of these" section's file name and numbers. Other keys (the card's record of how it
    was made, or keys a newer picsort writes) are left alone."""
    problem = card_problem(card)
    if problem:
        raise ModelFolderError(f"{where} cannot be served: {problem}")
    return card


def card_problem(card: object) -> str | None:
    """Why `card` cannot be served (None: it can). See `check_card`."""
    if not isinstance(card, dict):
        return f"a model card is a JSON object, not {type(card).__name__}"
    problem = network_problem(card)
    if problem:
        return problem
    prep = card.get("preprocessing")
    if not isinstance(prep, dict):
        return "it has no 'preprocessing' (the size and normalisation of its photos)"
    if not _whole(prep.get("size"), IMAGE_SIZES.start, IMAGE_SIZES.stop - 1):
        return (f"preprocessing.size is {_shown(prep.get('size'))}: a whole number of pixels from "
                f"{IMAGE_SIZES.start} to {IMAGE_SIZES.stop - 1}")
    if not _whole(prep.get("extra"), 0, prep["size"]):
        return f"preprocessing.extra is {_shown(prep.get('extra'))}: a whole number of pixels from 0 to the size"
    for key, low in (("mean", -math.inf), ("std", 0.0)):
        values = prep.get(key)
        if not (isinstance(values, list) and len(values) == 3 and all(_number(value) for value in values)
                and all(value > low for value in values)):
            more = " above 0" if low == 0 else ""
            return f"preprocessing.{key} is {_shown(values)}: a list of 3 finite numbers{more} (red, green, blue)"
    if prep.get("resample", RESAMPLE) != RESAMPLE:
        return f"preprocessing.resample is {_shown(prep.get('resample'))}: picsort resizes with {RESAMPLE!r} only"
    if "threshold" in card and not _number(card["threshold"], 0, 1):
        return f"threshold is {_shown(card['threshold'])}: a probability from 0 to 1"
    settings = card.get("none_of_these")
    if settings:
        # Keys other than these (the calibration's record, more a newer picsort keeps) are not read to serve.
        if not isinstance(settings, dict):
            return f"none_of_these is {_shown(settings)}: a JSON object"
        if "reference" in settings and (problem := file_name_problem(settings["reference"])):
            return f"none_of_these.reference: {problem}"
        if not _whole(settings.get("k"), 1, MAX_K):
            return f"none_of_these.k is {_shown(settings.get('k'))}: a whole number from 1 to {MAX_K}"
        if not _number(settings.get("threshold")):
            return f"none_of_these.threshold is {_shown(settings.get('threshold'))}: a finite number"
        imagenet = settings.get("imagenet")
        if imagenet is not None:
            # The ImageNet classes the training photos resemble (picsort.inference.none_of_these); the reference file's
            # classifier says how many classes there are, checked where it is read.
            covered = imagenet.get("covered") if isinstance(imagenet, dict) else None
            if not (isinstance(covered, list) and covered
                    and all(_whole(index, 0, MAX_IMAGENET_CLASSES - 1) for index in covered)):
                return (f"none_of_these.imagenet.covered is {_shown(covered)}: a list of ImageNet class numbers "
                        f"(0-{MAX_IMAGENET_CLASSES - 1})")
            if not _number(imagenet.get("threshold"), 0, 1):
                return (f"none_of_these.imagenet.threshold is {_shown(imagenet.get('threshold'))}: a number from 0 "
                        f"to 1")
    return None


def network_problem(card: dict) -> str | None:
    """Why the network a card describes is not one picsort builds (None: it is): its classes, its body (one of
    ARCHITECTURES) and its head, all bounded, so building it never asks for more than picsort trains."""
    classes = card.get("classes")
    if not isinstance(classes, list):
        return f"classes is {_shown(classes)}: a list of class names"
    if not 2 <= len(classes) <= MAX_CLASSES:
        return f"classes lists {len(classes)} names: a model has 2 to {MAX_CLASSES} classes"
    from picsort.foundation.vocabulary import check_class_names  # the one rule for class names

    try:
        check_class_names(classes)
    except (TypeError, ValueError) as error:
        return str(error)
    architecture = card.get("architecture")
    if not isinstance(architecture, dict) or ((architecture.get("library"), architecture.get("name"))
                                              not in ARCHITECTURES):
        known = ", ".join(f"{library} {name}" for library, name in ARCHITECTURES)
        return f"architecture is {_shown(architecture)}: picsort builds only {known}"
    head = card.get("head")
    if not isinstance(head, dict):
        return f"head is {_shown(head)}: a JSON object (hidden, pool, batchnorm)"
    hidden = head.get("hidden")
    if hidden is not None and not _whole(hidden, 1, MAX_HIDDEN):
        return f"head.hidden is {_shown(hidden)}: null (no hidden layer) or a whole number from 1 to {MAX_HIDDEN}"
    if head.get("pool", "concat") not in POOLS:
        return f"head.pool is {_shown(head.get('pool'))}: one of {', '.join(POOLS)}"
    if not isinstance(head.get("batchnorm", True), bool):
        return f"head.batchnorm is {_shown(head.get('batchnorm'))}: true or false"
    if head.get("batchnorm", True) is False and hidden is not None:
        return "a head without batch norm (head.batchnorm false) is one linear layer: head.hidden must be null"
    return None


def _whole(value: object, low: int, high: int) -> bool:
    """A JSON whole number (not a boolean) from `low` to `high`."""
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: object, low: float = -math.inf, high: float = math.inf) -> bool:
    """A finite JSON number (not a boolean, not NaN or Infinity, which Python's json reads) from `low` to `high`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value) and low <= value <= high
    except OverflowError:  # a whole number too large for a float
        return False


def _shown(value: object) -> str:
    """A card's value quoted in a message as JSON, bounded (a card can hold anything)."""
    try:
        text = json.dumps(value, ensure_ascii=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---- the network, rebuilt without fastai -------------------------------------------------------------


class ConcatPool(nn.Module):
    """Max and average pooling side by side, as fastai's `AdaptiveConcatPool2d` (max first)."""

    def __init__(self):
        super().__init__()
        self.mp = nn.AdaptiveMaxPool2d(1)
        self.ap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return torch.cat([self.mp(x), self.ap(x)], 1)


class TimmFeatures(nn.Module):
    """A timm model's feature map; named `model` inside like fastai's `TimmBody`, so weights load as saved."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.forward_features(x)


def classifier_head(features: int, classes: int, hidden: int | None = 512, pool: str = "concat",
                    batchnorm: bool = True) -> nn.Sequential:
    """fastai's `create_head`, flattened in the same order so the saved weights fit: by default (max and
    average pooling, a hidden layer of 512), or with `lin_ftrs=[]` (`hidden` None), `concat_pool=False`
    (`pool` "avg") and `first_bn=False, ps=0` (`batchnorm` False: one linear layer with a bias, no dropout)."""
    pooling, width = (ConcatPool(), features * 2) if pool == "concat" else (nn.AdaptiveAvgPool2d(1), features)
    if not batchnorm:
        if hidden:
            raise ValueError("a head without its first batch norm is a single linear layer here (hidden=None)")
        return nn.Sequential(pooling, nn.Flatten(), nn.Linear(width, classes))
    layers = [pooling, nn.Flatten(), nn.BatchNorm1d(width)]
    if hidden:
        layers += [nn.Dropout(0.25), nn.Linear(width, hidden, bias=False), nn.ReLU(inplace=True),
                   nn.BatchNorm1d(hidden)]
        width = hidden
    return nn.Sequential(*layers, nn.Dropout(0.5), nn.Linear(width, classes, bias=False))


def network_body(architecture: dict, use_timm: bool = False) -> tuple[nn.Module, int]:
    """The body a card's `architecture` names, untrained, and the width of its features."""
    if architecture["library"] == "timm" and architecture["name"] in LITE_VARIANTS and not use_timm:
        model = EfficientNetLite(architecture["name"])  # the same layers without importing timm (see that module)
        return TimmFeatures(model), model.num_features
    if architecture["library"] == "timm":
        import timm

        model = timm.create_model(architecture["name"], pretrained=False, num_classes=0)
        return TimmFeatures(model), model.num_features
    import torchvision.models

    resnet = getattr(torchvision.models, architecture["name"])(weights=None)
    # fastai cuts a ResNet before its pool and fc
    return nn.Sequential(*list(resnet.children())[:-2]), resnet.fc.in_features


def build_network(card: dict, use_timm: bool = False) -> nn.Sequential:
    """An untrained network shaped like the card's: `Sequential(body, head)` as fastai's `vision_learner`.

    Only a network picsort trains (`network_problem`), checked before any layer is allocated."""
    problem = network_problem(card)
    if problem:
        raise ModelFolderError(f"the model card cannot be served: {problem}")
    body, features = network_body(card["architecture"], use_timm)
    head = card["head"]
    return nn.Sequential(body, classifier_head(features, len(card["classes"]), head["hidden"], head.get("pool", "concat"),
                                               head.get("batchnorm", True)))


def feature_width(card: dict) -> int:
    """The width of the features of the card's body (what "none of these" compares), without allocating it."""
    with torch.device("meta"):
        return network_body(card["architecture"])[1]


def load_network(folder: Path | str | None = None, card: dict | None = None) -> tuple[nn.Sequential, dict]:
    """The trained network in eval mode and its card (`read_card`'s, unless given, checked), from plain weights (no
    pickle is loaded). The weights file's tensor names and shapes are compared with the network's before a tensor is
    read, so a file that does not fit says which tensor, and a large one is not loaded to find that out."""
    from safetensors.torch import load_file

    folder = model_dir(folder)
    card = read_card(folder) if card is None else card
    weights = model_file(folder, WEIGHTS_NAME)
    with torch.device("meta"):  # shapes only: nothing allocated
        expected = {key: tuple(value.shape) for key, value in build_network(card).state_dict().items()}
    check_tensors(weights, expected)
    network = build_network(card)
    network.load_state_dict(load_file(weights))
    return network.eval(), card


def tensor_shapes(path: Path | str) -> dict[str, tuple[int, ...]]:
    """The name and shape of each tensor in a safetensors file, read from its header (no tensor is loaded);
    ModelFolderError when it is not one."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as file:
            return {key: tuple(file.get_slice(key).get_shape()) for key in file.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for a damaged header
        raise ModelFolderError(f"{path} is not a safetensors file picsort can read ({error})") from None


def check_tensors(path: Path | str, expected: dict[str, tuple[int, ...]]) -> None:
    """ModelFolderError naming the first difference between a safetensors file's tensors and `expected` (name ->
    shape): one missing, one more, or one of another shape."""
    found = tensor_shapes(path)
    missing = [key for key in expected if key not in found]
    extra = [key for key in found if key not in expected]
    if missing or extra:
        what = (f"lacks {len(missing)} tensors the card's network has ({', '.join(map(_shown, missing[:3]))}"
                f"{', ...' if len(missing) > 3 else ''})" if missing else
                f"holds {len(extra)} tensors the card's network does not have ({', '.join(map(_shown, extra[:3]))}"
                f"{', ...' if len(extra) > 3 else ''})")
        raise ModelFolderError(f"{path} does not fit its model card: it {what}")
    for key, shape in expected.items():
        if found[key] != shape:
            raise ModelFolderError(f"{path} does not fit its model card: {_shown(key)} is {_size(found[key])}, the card's "
                                   f"network has {_size(shape)}")


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape)) or "a single number"


def centre_crop_extra(size: int, val_xtra: float = VAL_XTRA) -> int:
    """The pixels fastai's RandomResizedCrop adds to `size` at validation: it squishes the whole image to
    size + extra (rounded up to a multiple of 8), then crops the centre `size`."""
    return int(-(-size * val_xtra // 8) * 8)
