"""Does a photo look like the training photos at all? The check behind a "none of these" answer.

Softmax gives some class most of the probability whatever the photo shows (a dog shown to a bears model
comes out "black bear, 78 %"), so the top probability cannot say "none of these". Two descriptions of the
training photos, both from the user's own photos alone, say it instead:

- **What ImageNet calls them** (`resemblance`). The pretrained body comes with its ImageNet classifier, 1000
  classes of everyday things: a description of "other things" that needs no extra photos. The ImageNet classes
  among the most probable of any training photo are the ones the classes *resemble*; a photo to which the
  ImageNet classifier gives less than a chance share of its probability on those is none of these. It cannot
  tell apart things ImageNet lumps together (two breeds of one dog class, two kinds of one plant), nor things
  ImageNet has no class for, both of which lean on the second description.
- **How near the training photos it lies** (`similarity`): the pooled body features of the training photos
  (`reference.safetensors`, plain tensors), and a photo far from all of them is flagged.

A photo is none of these when either says so. This module is the check a served model runs (no fastai); the
thresholds, the covered classes and the rule the card records are chosen when a model is made, by
picsort.training.calibration (train.ipynb, `picsort teach` and Teach mode use the same rule there).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from picsort.inference.backbones import ImageNetHead
from picsort.inference.model import ModelFolderError, model_file, tensor_shapes

REFERENCE_NAME = "reference.safetensors"
DEFAULT_K = 5  # the training photos a photo's similarity is measured against: the mean over its k most similar


def average_pooled(features: torch.Tensor) -> torch.Tensor:
    """Raw average-pooled features (N×C, float32) of a body's feature map (N×C×H×W): the one pooling behind the
    reference, the ImageNet resemblance, the head's fit (picsort.training) and Teach mode's kept features."""
    return features.float().mean(dim=(2, 3))


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Unit-length average-pooled features (N×C) from a body's feature map (N×C×H×W)."""
    return torch.nn.functional.normalize(average_pooled(features), dim=1)


class NoneOfTheseCheck:
    """The training photos' pooled features and the ImageNet classes they resemble, with the similarity and the
    resemblance below which a photo is "none of these"."""

    def __init__(self, reference: torch.Tensor | None, k: int = DEFAULT_K, threshold: float | None = None, *,
                 imagenet: ImageNetHead | None = None, covered: list[int] | None = None,
                 resemblance_threshold: float | None = None):
        self.reference = reference
        self.k = k
        self.threshold = threshold
        self.imagenet = imagenet
        self.covered = torch.tensor(sorted(covered or []), dtype=torch.long)
        self.resemblance_threshold = resemblance_threshold if imagenet is not None else None

    @classmethod
    def load(cls, folder: Path | str, card: dict, width: int | None = None) -> "NoneOfTheseCheck":
        """The check a model folder's card (checked: picsort.inference.model.read_card) describes; models exported without one
        never say "none of these". `width`: the width of the network's features (picsort.inference.model.feature_width), which
        the reference's and the ImageNet classifier's must equal; the file's shapes are read from its header before
        its tensors are."""
        from safetensors.torch import load_file

        settings = card.get("none_of_these")
        if not settings:
            return cls(None)
        path = model_file(folder, settings.get("reference", REFERENCE_NAME))
        shapes = tensor_shapes(path)
        shape = shapes.get("features")
        if shape is None or len(shape) != 2 or not shape[0] or (width is not None and shape[1] != width):
            wanted = f"N×{width}" if width is not None else "N×features"
            found = "no 'features' tensor" if shape is None else f"features of {'×'.join(map(str, shape)) or '1'}"
            raise ModelFolderError(f"{path} does not fit its model: it holds {found}, the network's features are "
                                   f"{wanted} (re-export the model with train.ipynb)")
        imagenet = settings.get("imagenet")
        if imagenet:
            _check_imagenet(path, imagenet, shapes, shape[1])
        tensors = load_file(path)
        head = ImageNetHead(tensors["imagenet.weight"].float(), tensors["imagenet.bias"].float()) if imagenet else None
        return cls.from_settings(tensors["features"].float(), settings, head)

    @classmethod
    def from_settings(cls, reference: torch.Tensor, settings: dict, imagenet: ImageNetHead | None = None
                      ) -> "NoneOfTheseCheck":
        """The check a card's `none_of_these` settings describe, with the reference (unit-length pooled features)
        and the ImageNet classifier (used only where the settings name its covered classes)."""
        covering = settings.get("imagenet")
        return cls(reference, int(settings["k"]), float(settings["threshold"]),
                   imagenet=imagenet if covering else None,
                   covered=[int(index) for index in covering["covered"]] if covering else None,
                   resemblance_threshold=float(covering["threshold"]) if covering else None)

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Similarity to the training photos (N) of a body's feature map (N×C×H×W): 1 for a training photo, lower for
        other things."""
        return self.similarity_of_pooled(pooled(features))

    def similarity_of_pooled(self, vectors: torch.Tensor) -> torch.Tensor:
        """Similarity to the training photos (N) of unit-length pooled features (N×C)."""
        if self.reference is None:
            return torch.full((vectors.shape[0],), math.nan)
        similarities = vectors @ self.reference.T
        return similarities.topk(min(self.k, self.reference.shape[0]), dim=1).values.mean(dim=1)

    def resemblance(self, features: torch.Tensor) -> torch.Tensor:
        """The ImageNet classifier's probability on the classes the training photos resemble (N), of a body's
        feature map (N×C×H×W); 1 where the model has no ImageNet classifier."""
        return self.resemblance_of_pooled(average_pooled(features))

    def resemblance_of_pooled(self, pooled_features: torch.Tensor) -> torch.Tensor:
        """`resemblance` of raw average-pooled features (N×C)."""
        if self.imagenet is None:
            return torch.ones(pooled_features.shape[0])
        return self.imagenet.probabilities(pooled_features)[:, self.covered].sum(dim=1)

    def is_none_of_these(self, similarity: float, resemblance: float = 1.0) -> bool:
        """Whether a photo with this similarity and resemblance looks like none of the classes."""
        return ((self.threshold is not None and similarity < self.threshold)
                or (self.resemblance_threshold is not None and resemblance < self.resemblance_threshold))


def _check_imagenet(path: Path, settings: dict, shapes: dict, width: int) -> None:
    """ModelFolderError naming the problem unless the reference file's ImageNet classifier fits the network's
    features and the classes the card's `none_of_these.imagenet` (checked: picsort.inference.model.card_problem) covers;
    checked from the file's header, before any tensor is read."""
    weight, bias = shapes.get("imagenet.weight"), shapes.get("imagenet.bias")
    if not weight or len(weight) != 2 or weight[1] != width or bias != (weight[0],):
        raise ModelFolderError(f"{path} lacks an ImageNet classifier of the network's {width} features that its card's "
                               f"none_of_these.imagenet names (it holds {weight} and {bias}): re-export the model")
    if max(settings["covered"]) >= weight[0]:
        raise ModelFolderError(f"the card's none_of_these.imagenet.covered must list ImageNet class numbers "
                               f"0-{weight[0] - 1}, the classes of {path}'s classifier")


def describe(settings: dict) -> str:
    """The card's "none of these" settings in a sentence, for `picsort teach`'s summary and Teach mode."""
    calibrated = settings["calibration"]
    rules = [f"similarity to the training photos below {settings['threshold']:g}"]
    if settings.get("imagenet"):
        imagenet = settings["imagenet"]
        rules.insert(0, f"under {imagenet['threshold']:.0%} of ImageNet's probability on the "
                        f"{len(imagenet['covered'])} ImageNet classes the photos resemble")
    flagged = []
    if calibrated["validation_images"]:
        flagged.append(f"{calibrated['validation_flagged']:.0%} of the {calibrated['validation_images']} held-out photos")
    if calibrated["other_images"]:
        flagged.append(f"{calibrated['others_flagged']:.0%} of {calibrated['other_images']} photos of other things")
    return " or ".join(rules) + (f"; flags {' and '.join(flagged)}" if flagged else "")
