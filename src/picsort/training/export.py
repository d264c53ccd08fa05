"""A model folder written after training: the weights, the "none of these" reference and its calibration, the card.

picsort.inference.model reads a folder back to serve it; this module writes one, for a fastai learner (`export_model`, which
train.ipynb calls) and, through `model_card`, `save_weights` and `save_card`, for picsort.training.teaching. It also loads
the fastai learner back from `export.pkl` for more training (`load_learner_checked`), never to serve.
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

from picsort.foundation.files import write_atomically
from picsort.inference.backbones import LITE_BACKBONES, TORCHVISION_BACKBONES, imagenet_classifier
from picsort.inference.model import (
    CARD_NAME,
    DEFAULT_THRESHOLD,
    LEARNER_NAME,
    WEIGHTS_NAME,
    centre_crop_extra,
    model_dir,
    read_card,
)
from picsort.inference.none_of_these import REFERENCE_NAME
from picsort.training.calibration import DEFAULT_KEEP, calibrate

VERSIONED_PACKAGES = ("torch", "torchvision", "fastai", "fastcore", "fasttransform", "timm", "pillow", "numpy")


def library_versions() -> dict:
    """Versions of the libraries an exported model depends on."""
    versions = {"python": platform.python_version()}
    for package in VERSIONED_PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


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


def network_architecture(backbone: str) -> dict:
    """Which library and architecture name rebuild a backbone's body."""
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
    things (`others`, files) are given (picsort.training.calibration.calibrate). Returns the card.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    loss, error_rate = learn.validate()[:2]
    # The ImageNet classifier fits the body only while the body is the pretrained one (train.ipynb freezes it).
    imagenet = imagenet_classifier(backbone, learn.model[0])
    reference, none_of_these = calibrate(learn, keep=DEFAULT_KEEP if keep is None else keep, others=others,
                                         imagenet=imagenet)
    card = model_card(
        classes=[str(c) for c in learn.dls.vocab], backbone=backbone, head=describe_head(learn.model[1]),
        preprocessing=describe_preprocessing(learn.dls), threshold=threshold, none_of_these=none_of_these,
        recipe=recipe, data_source=data_source, images_per_class=images_per_class,
        validation={"error_rate": round(float(error_rate), 4), "loss": round(float(loss), 4),
                    "images": len(learn.dls.valid_ds)},
        notes=notes)
    save_weights(folder, learn.model, reference, imagenet)
    learn.export(folder.resolve() / LEARNER_NAME)
    os.chmod(folder / LEARNER_NAME, 0o644)  # readable by the server and by git, whatever the umask
    save_card(folder, card)
    return card


def model_card(*, classes: list[str], backbone: str, head: dict, preprocessing: dict, threshold: float,
               none_of_these: dict, recipe: str, data_source: str, images_per_class: dict, validation: dict,
               notes: str = "") -> dict:
    """A model card (`model.json`), its keys in the order every exporter writes them, dated and with the
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


def save_weights(folder: Path | str, network: nn.Module, reference: torch.Tensor, imagenet=None) -> None:
    """`model.safetensors` (the network's state) and `reference.safetensors` (unit-length pooled features of the
    training photos and, when given, the body's ImageNet classifier: picsort.inference.none_of_these) in `folder`."""
    from safetensors.torch import save

    folder = Path(folder)
    state = {key: value.detach().cpu().contiguous() for key, value in network.state_dict().items()}
    write_atomically(folder / WEIGHTS_NAME, save(state))
    tensors = {"features": reference.half().contiguous()}
    if imagenet is not None:
        tensors |= {"imagenet.weight": imagenet.weight.half().contiguous(), "imagenet.bias": imagenet.bias.half().contiguous()}
    write_atomically(folder / REFERENCE_NAME, save(tensors))


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
