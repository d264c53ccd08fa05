"""The one place that knows where `model/` is, what its files hold, and how to rebuild its network.

A model folder holds:
- `export.pkl`: fastai's `learn.export()`, for the course's `load_learner` and for more training. It is a
  pickle, so loading it runs code; it is never loaded to serve users.
- `model.safetensors`: the trained weights, plain tensors.
- `reference.safetensors`: pooled features of the training photos, for "none of these" (picsort.familiarity).
- `model.json`: the card: classes, backbone, preprocessing, "none of these" threshold, validation error,
  library versions.
The app and the command line rebuild the network from the card with plain torch (and timm for timm
backbones) and load the safetensors: no pickle, and no fastai import at serving time.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
from pathlib import Path

import torch
from torch import nn

from picsort.efficientnet_lite import VARIANTS as LITE_VARIANTS, EfficientNetLite
from picsort.files import write_atomically
from picsort.folders import model_dir

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
LEARNER_NAME = "export.pkl"
DEFAULT_THRESHOLD = 0.7
# fastai's RandomResizedCrop(val_xtra=0.14) default: how much wider than the crop a validation image is squished.
VAL_XTRA = 0.14
VERSIONED_PACKAGES = ("torch", "torchvision", "fastai", "fastcore", "fasttransform", "timm", "pillow", "numpy")


class ModelFolderError(FileNotFoundError):
    """A model folder is missing or lacks one of its files."""


def read_card(folder: Path | str | None = None) -> dict:
    """The model card (`model.json`) of a model folder."""
    path = model_dir(folder) / CARD_NAME
    if not path.exists():
        raise ModelFolderError(f"no model card at {path}: train and export a model with train.ipynb first")
    return json.loads(path.read_text())


def library_versions() -> dict:
    """Versions of the libraries an exported model depends on."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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


def describe_head(head: nn.Module) -> dict:
    """The card's description of a fastai head: its pooling, the width of its hidden layer (None: none), and
    whether it starts with batch norm (False: `first_bn=False, ps=0`, one linear layer with a bias)."""
    linears = [layer for layer in head.modules() if isinstance(layer, nn.Linear)]
    if len(linears) not in (1, 2):
        raise ValueError("expected fastai's create_head with at most one hidden layer")
    pool = "avg" if isinstance(head[0], nn.AdaptiveAvgPool2d) else "concat"
    batchnorm = any(isinstance(layer, nn.BatchNorm1d) for layer in head.modules())
    if not batchnorm and (len(linears) != 1 or any(isinstance(layer, nn.Dropout) for layer in head.modules())):
        raise ValueError("a head without batch norm must be one linear layer without dropout (ps=0)")
    return {"hidden": linears[0].out_features if len(linears) == 2 else None, "pool": pool, "batchnorm": batchnorm}


def build_network(card: dict, use_timm: bool = False) -> nn.Sequential:
    """An untrained network shaped like the card's: `Sequential(body, head)` as fastai's `vision_learner`."""
    architecture = card["architecture"]
    if architecture["library"] == "timm" and architecture["name"] in LITE_VARIANTS and not use_timm:
        model = EfficientNetLite(architecture["name"])  # the same layers without importing timm (see that module)
        body, features = TimmFeatures(model), model.num_features
    elif architecture["library"] == "timm":
        import timm

        model = timm.create_model(architecture["name"], pretrained=False, num_classes=0)
        body, features = TimmFeatures(model), model.num_features
    elif architecture["library"] == "torchvision":
        import torchvision.models

        resnet = getattr(torchvision.models, architecture["name"])(weights=None)
        body = nn.Sequential(*list(resnet.children())[:-2])  # fastai cuts a ResNet before its pool and fc
        features = resnet.fc.in_features
    else:
        raise ValueError(f"model card names an unknown library {architecture['library']!r}")
    head = card["head"]
    return nn.Sequential(body, classifier_head(features, len(card["classes"]), head["hidden"], head.get("pool", "concat"),
                                               head.get("batchnorm", True)))


def load_network(folder: Path | str | None = None) -> tuple[nn.Sequential, dict]:
    """The trained network in eval mode and its card, from plain weights (no pickle is loaded)."""
    from safetensors.torch import load_file

    folder = model_dir(folder)
    card = read_card(folder)
    weights = folder / WEIGHTS_NAME
    if not weights.exists():
        raise ModelFolderError(f"{weights} is missing: re-export the model with train.ipynb")
    network = build_network(card)
    network.load_state_dict(load_file(weights))
    return network.eval(), card


# ---- export (training side) ---------------------------------------------------------------------------


def describe_preprocessing(dls) -> dict:
    """The validation-time resize and normalisation of fastai `DataLoaders`, as numbers for the card."""
    from fastai.vision.all import Normalize, RandomResizedCrop, Resize, ResizeMethod

    resizes = [t for t in dls.valid.after_item.fs if isinstance(t, (Resize, RandomResizedCrop))]
    if len(resizes) != 1:
        raise ValueError("the DataBlock needs exactly one item transform that sizes images (Resize or RandomResizedCrop)")
    resize = resizes[0]
    width, height = resize.size
    if width != height:
        raise ValueError(f"square images only, got item size {resize.size}")
    if isinstance(resize, RandomResizedCrop):
        extra = centre_crop_extra(max(resize.size), resize.val_xtra)
    elif resize.method == ResizeMethod.Squish:
        extra = 0
    else:
        raise ValueError("use Resize(method='squish') or RandomResizedCrop so the app can resize the same way")
    normalizers = [t for t in dls.after_batch.fs if isinstance(t, Normalize)]
    if len(normalizers) > 1:
        raise ValueError("expected at most one Normalize transform (vision_learner adds it)")
    # vision_learner adds no Normalize when training from random weights: pixels then stay in [0, 1].
    mean = normalizers[0].mean.flatten().tolist() if normalizers else [0.0, 0.0, 0.0]
    std = normalizers[0].std.flatten().tolist() if normalizers else [1.0, 1.0, 1.0]
    return {"size": int(width), "extra": extra, "resample": "bilinear", "mean": mean, "std": std}


def centre_crop_extra(size: int, val_xtra: float = VAL_XTRA) -> int:
    """The pixels fastai's RandomResizedCrop adds to `size` at validation: it squishes the whole image to
    size + extra (rounded up to a multiple of 8), then crops the centre `size`."""
    return int(-(-size * val_xtra // 8) * 8)


def network_architecture(backbone: str) -> dict:
    """Which library and architecture name rebuild a backbone's body."""
    from picsort.backbones import LITE_BACKBONES, TORCHVISION_BACKBONES

    if backbone in LITE_BACKBONES:
        return {"library": "timm", "name": backbone}
    if backbone in TORCHVISION_BACKBONES:
        return {"library": "torchvision", "name": backbone}
    raise ValueError(f"unknown backbone {backbone!r}")


def export_model(learn, folder: Path | str, *, backbone: str, data_source: str, images_per_class: dict,
                 threshold: float = DEFAULT_THRESHOLD, keep: float | None = None, others=(), recipe: str = "",
                 notes: str = "") -> dict:
    """Write `export.pkl`, `model.safetensors`, `reference.safetensors` and `model.json` for a trained learner.

    The "none of these" threshold keeps `keep` of the validation photos, with a margin when photos of other
    things (`others`, files) are given (picsort.familiarity.calibrate). Returns the card.
    """
    from picsort.familiarity import DEFAULT_KEEP, calibrate

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    loss, error_rate = learn.validate()[:2]
    reference, none_of_these = calibrate(learn, keep=DEFAULT_KEEP if keep is None else keep, others=others)
    card = model_card(
        classes=[str(c) for c in learn.dls.vocab], backbone=backbone, head=describe_head(learn.model[1]),
        preprocessing=describe_preprocessing(learn.dls), threshold=threshold, none_of_these=none_of_these,
        recipe=recipe, data_source=data_source, images_per_class=images_per_class,
        validation={"error_rate": round(float(error_rate), 4), "loss": round(float(loss), 4),
                    "images": len(learn.dls.valid_ds)},
        notes=notes)
    save_weights(folder, learn.model, reference)
    learn.export(folder.resolve() / LEARNER_NAME)
    os.chmod(folder / LEARNER_NAME, 0o644)  # readable by the server and by git, whatever the umask
    save_card(folder, card)
    return card


def model_card(*, classes: list[str], backbone: str, head: dict, preprocessing: dict, threshold: float,
               none_of_these: dict, recipe: str, data_source: str, images_per_class: dict, validation: dict,
               notes: str = "") -> dict:
    """A model card (`model.json`), its keys in the one order every exporter writes, dated and with the
    library versions of this run."""
    return {
        "classes": list(classes),
        "backbone": backbone,
        "architecture": network_architecture(backbone),
        "head": head,
        "preprocessing": preprocessing,
        "threshold": threshold,
        "none_of_these": none_of_these,
        "recipe": recipe,
        "data_source": data_source,
        "images_per_class": images_per_class,
        "validation": validation,
        "trained": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
        "notes": notes,
    }


def save_weights(folder: Path | str, network: nn.Module, reference: torch.Tensor) -> None:
    """`model.safetensors` (the network's state) and `reference.safetensors` (unit-length pooled features of the
    training photos, picsort.familiarity) in `folder`."""
    from safetensors.torch import save

    from picsort.familiarity import REFERENCE_NAME

    folder = Path(folder)
    state = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    write_atomically(folder / WEIGHTS_NAME, save(state))
    write_atomically(folder / REFERENCE_NAME, save({"features": reference.half().contiguous()}))


def save_card(folder: Path | str, card: dict) -> None:
    """`model.json`, written last: a folder with a card holds a whole model."""
    write_atomically(Path(folder) / CARD_NAME, (json.dumps(card, indent=2) + "\n").encode())


def load_learner_checked(folder: Path | str | None = None, cpu: bool = True):
    """fastai's `load_learner` on `export.pkl`, after checking the libraries its pickle imports are there."""
    folder = model_dir(folder)
    card = read_card(folder)
    library = card["architecture"]["library"]
    # Without timm, unpickling a timm model fails inside fastai with a misleading UnboundLocalError.
    if importlib.util.find_spec(library) is None:
        wanted = card.get("versions", {}).get(library)
        pin = f"=={wanted}" if wanted else ""
        raise ImportError(f"{folder / LEARNER_NAME} needs the package {library}: pip install {library}{pin}")
    from fastai.learner import load_learner

    return load_learner(folder / LEARNER_NAME, cpu=cpu)
