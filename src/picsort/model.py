"""A model folder read back to serve: its card, and its network rebuilt from plain weights.

A model folder holds:
- `export.pkl`: fastai's `learn.export()`, for the course's `load_learner` and for more training. It is a
  pickle, so loading it runs code; it is never loaded to serve users.
- `model.safetensors`: the trained weights, plain tensors.
- `reference.safetensors`: pooled features of the training photos, for "none of these" (picsort.none_of_these).
- `model.json`: the card: classes, backbone, preprocessing, "none of these" threshold, validation error,
  library versions.
The app and the command line rebuild the network from the card with plain torch (and timm for timm
backbones) and load the safetensors: no pickle, and no fastai import at serving time. Writing a model folder
after training is picsort.export's job.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from picsort.efficientnet_lite import VARIANTS as LITE_VARIANTS, EfficientNetLite
from picsort.folders import model_dir

CARD_NAME = "model.json"
WEIGHTS_NAME = "model.safetensors"
LEARNER_NAME = "export.pkl"
DEFAULT_THRESHOLD = 0.7
# fastai's RandomResizedCrop(val_xtra=0.14) default: how much wider than the crop a validation image is squished.
VAL_XTRA = 0.14


class ModelFolderError(FileNotFoundError):
    """A model folder is missing or lacks one of its files."""


def read_card(folder: Path | str | None = None) -> dict:
    """The model card (`model.json`) of a model folder."""
    path = model_dir(folder) / CARD_NAME
    if not path.exists():
        raise ModelFolderError(f"no model card at {path}: train and export a model with train.ipynb first")
    return json.loads(path.read_text())


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


def centre_crop_extra(size: int, val_xtra: float = VAL_XTRA) -> int:
    """The pixels fastai's RandomResizedCrop adds to `size` at validation: it squishes the whole image to
    size + extra (rounded up to a multiple of 8), then crops the centre `size`."""
    return int(-(-size * val_xtra // 8) * 8)
