"""Does a photo look like the training photos at all? The check behind a "none of these" answer.

Softmax gives some class most of the probability whatever the photo shows (a dog shown to a bears model
comes out "black bear, 78 %"), so the top probability cannot say "none of these". Two descriptions of the
training photos, both from the user's own photos alone, say it instead:

- **What ImageNet calls them** (`resemblance`). The pretrained body comes with its ImageNet classifier, 1000
  classes of everyday things: a description of "other things" that needs no extra photos. The ImageNet classes
  among the two most probable of any training photo are the ones the classes *resemble*; a photo to which the
  ImageNet classifier gives less than a chance share of its probability on those is none of these. The chance
  share is what a photo of something unrelated, its probability spread evenly, would put there: the covered
  classes' share of the 1000, times CHANCE_FACTOR, kept between RESEMBLANCE_BOUNDS (more photos cover more classes,
  and the threshold follows: benchmarks/own_model_none_of_these.py has the figures for 10 to 150 photos a class).
  It cannot tell apart things ImageNet lumps together (two breeds of one dog class, two kinds of one
  plant), nor things ImageNet has no class for, both of which lean on the second description.
- **How near the training photos it lies** (`similarity`): the pooled body features of the training photos
  (`reference.safetensors`, plain tensors), and a photo far from all of them is flagged; the threshold leans
  below the held-out photos' own scores and, given photos of other things, rises to flag 99 % of them.

A photo is none of these when either says so. Photos of other things (train.ipynb's OTHER_THINGS, `picsort
teach --others`, photos labelled "none of these") only raise the second threshold, so they can only flag more
other things. The card records both thresholds and the rule (`RULE`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from picsort.inference.backbones import ImageNetHead
from picsort.inference.model import ModelFolderError, model_file, tensor_shapes

REFERENCE_NAME = "reference.safetensors"
METHOD = ("a photo is none of these when the pretrained ImageNet classifier puts less than a chance share of its "
          "probability on the ImageNet classes the training photos resemble, or when its average-pooled body "
          "features are far from every training photo's (cosine similarity, mean over the k most similar)")
MIN_VALIDATION = 20
DEFAULT_K = 5
DEFAULT_KEEP = 0.99
# The ImageNet classes a training photo counts as: its two most probable (one misses a photo's second reading,
# as church/monastery; three let outsiders' probability in: benchmarks/own_model_none_of_these.py).
IMAGENET_TOP = 2
# How far above a chance share of the probability a photo of the classes must put on their ImageNet classes.
CHANCE_FACTOR = 1.25
RESEMBLANCE_BOUNDS = (0.03, 0.15)
RULE = (f"ImageNet: the classes among the top {IMAGENET_TOP} of any training photo are covered; a photo is none of "
        f"these below {CHANCE_FACTOR:g} x the covered share of the ImageNet classes on them (threshold kept within "
        f"{RESEMBLANCE_BOUNDS[0]:g}-{RESEMBLANCE_BOUNDS[1]:g}). Similarity: 1st percentile of the validation photos' "
        "scores (with each training photo left out, under 20 validation photos), minus its distance to their median; "
        "raised to the 99th percentile of photos of other things when given, never above that 1st percentile minus "
        "a quarter of that distance")


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Unit-length average-pooled features (N×C) from a body's feature map (N×C×H×W)."""
    return torch.nn.functional.normalize(features.float().mean(dim=(2, 3)), dim=1)


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
        """Similarity to the training photos (N) of a body's feature map (N×C×H×W): 1 for a training photo, lower for other things."""
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
        return self.resemblance_of_pooled(features.float().mean(dim=(2, 3)))

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


# ---- training side -----------------------------------------------------------------------------------


def pooled_features(learn, items) -> torch.Tensor:
    """Raw average-pooled body features (N×C) of files, prepared as the learner validates (no augmentation)."""
    from picsort.training.notebook import body_features

    return body_features(learn, items)


def covered_classes(imagenet: ImageNetHead, pooled_features: torch.Tensor) -> list[int]:
    """The ImageNet classes the photos resemble: those among the IMAGENET_TOP most probable of any photo."""
    if not len(pooled_features):
        return []
    top = imagenet.probabilities(pooled_features).topk(IMAGENET_TOP, dim=1).indices
    return sorted({int(index) for index in top.flatten()})


def resemblance_threshold(covered: int, classes: int) -> float:
    """The resemblance below which a photo is none of these: CHANCE_FACTOR times the share of the ImageNet classes
    that are covered (what a photo with its probability spread evenly would put on them), within
    RESEMBLANCE_BOUNDS."""
    low, high = RESEMBLANCE_BOUNDS
    return round(min(max(CHANCE_FACTOR * covered / classes, low), high), 4)


def leave_one_out(reference: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """Each reference photo's similarity to the others (itself left out): more photos the reference does not
    hold, for small data sets whose validation split has only a few."""
    if reference.shape[0] < 2:
        return torch.empty(0)
    similarities = reference @ reference.T
    similarities.fill_diagonal_(-math.inf)
    return similarities.topk(min(k, reference.shape[0] - 1), dim=1).values.mean(dim=1)


def choose_threshold(own: torch.Tensor, others: torch.Tensor | None = None, keep: float = DEFAULT_KEEP) -> float:
    """The similarity below which a photo is "none of these", from scores of photos of the classes that the
    reference does not hold (`own`) and, when given, of photos of other things (`others`).

    Photos of the classes from another source (another search, a phone, other light) are less like the training
    photos than the training scrape's own validation photos are, so a threshold at the 1st percentile of `own`
    flags too many of them. The rule leans down by the spread of `own` (its 1st percentile's distance to its
    median): `q01 - (median - q01)`. Given photos of other things, it rises to flag `keep` of them (their 99th
    percentile), but never above `q01 - (median - q01) / 4`, so the classes' own photos keep priority: on three
    Imagenette classes of 40 photos each (ten draws), that cap flagged 0.1-1.8 % of their other photos where
    `q01` itself flagged 0.9-4.6 %, and still flagged 99.5-100 % of the bears in nine draws (82 % in the tenth).
    Without photos of other things the lean threshold alone flags few of them (28 % of the bears, taught three
    Imagenette classes): the ImageNet resemblance says "none of these" there.
    """
    if not len(own):
        return 0.0
    low = float(torch.quantile(own, 1 - keep))
    lean = low - (float(torch.quantile(own, 0.5)) - low)
    if others is None or not len(others):
        return round(lean, 4)
    ceiling = float(torch.quantile(others, keep))
    return round(min(max(lean, ceiling), low - (low - lean) / 4), 4)


def calibrate(learn, *, k: int = DEFAULT_K, keep: float = DEFAULT_KEEP, others=(),
              imagenet: ImageNetHead | None = None) -> tuple[torch.Tensor, dict]:
    """Reference features of the training photos, and the card's settings (`calibration` on the validation
    photos, on `others`, files of photos of other things, and with the body's ImageNet classifier)."""
    reference = pooled_features(learn, learn.dls.train_ds.items)
    others = list(others)
    settings = calibration(reference, pooled_features(learn, learn.dls.valid_ds.items),
                           pooled_features(learn, others) if others else torch.empty(0, reference.shape[1]),
                           k=k, keep=keep, imagenet=imagenet)
    return torch.nn.functional.normalize(reference, dim=1), settings


def calibration(reference: torch.Tensor, held_out: torch.Tensor, others: torch.Tensor, *, k: int = DEFAULT_K,
                keep: float = DEFAULT_KEEP, imagenet: ImageNetHead | None = None,
                covering: torch.Tensor | None = None) -> dict:
    """The card's "none of these" settings (see RULE), the one rule train.ipynb, `picsort teach` and Teach mode
    use, from raw average-pooled features: `reference` (training photos), `held_out` (photos of the classes the
    reference does not hold) and `others` (photos of other things, may be empty); `imagenet`, the body's ImageNet
    classifier (None for a body without one: the similarity alone then); `covering`, the photos whose ImageNet
    classes count as covered, when not `reference` (teach's reference holds every photo, calibrated on a part)."""
    unit = lambda features: torch.nn.functional.normalize(features.float(), dim=1)  # noqa: E731
    reference_unit = unit(reference)
    index = NoneOfTheseCheck(reference_unit, k)
    validation = index.similarity_of_pooled(unit(held_out)) if len(held_out) else torch.empty(0)
    # Left-out training photos score higher than new ones (a scrape holds near-duplicates): used only where the
    # validation photos are too few for percentiles to mean anything.
    own = validation if len(validation) >= MIN_VALIDATION else torch.cat([validation, leave_one_out(reference_unit, k)])
    other_scores = index.similarity_of_pooled(unit(others)) if len(others) else torch.empty(0)
    threshold = choose_threshold(own, other_scores, keep)
    settings = {"method": METHOD, "k": k, "threshold": threshold, "reference": REFERENCE_NAME,
                "reference_images": int(reference.shape[0])}
    if imagenet is not None:
        imagenet = imagenet.stored()
        covered = covered_classes(imagenet, reference if covering is None else covering)
        settings["imagenet"] = {"covered": covered,
                                "threshold": resemblance_threshold(len(covered), imagenet.weight.shape[0]),
                                "classes": int(imagenet.weight.shape[0]), "top": IMAGENET_TOP,
                                "chance_factor": CHANCE_FACTOR, "bounds": list(RESEMBLANCE_BOUNDS)}
        if imagenet.names:
            settings["imagenet"]["covered_names"] = [imagenet.names[index] for index in covered]
    check = NoneOfTheseCheck.from_settings(reference_unit, settings, imagenet)

    def flagged(features: torch.Tensor, similarities: torch.Tensor) -> float | None:
        if not len(features):
            return None
        resemblances = check.resemblance_of_pooled(features)
        return round(sum(check.is_none_of_these(float(s), float(r)) for s, r in zip(similarities, resemblances))
                     / len(features), 4)

    settings["calibration"] = {
        "rule": RULE, "keep": keep, "validation_images": int(len(validation)),
        "validation_flagged": flagged(held_out, validation),
        "training_images_left_out": int(len(own) - len(validation)),
        "other_images": int(len(others)), "others_flagged": flagged(others, other_scores)}
    return settings


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


def plot_scores(check: NoneOfTheseCheck, photos: list, others: list = ()):
    """train.ipynb's picture of the check: the resemblance and the similarity of `photos` (Predictions of the
    classes' validation photos) and of `others` (Predictions of photos of other things), each beside its
    threshold. Returns the figure."""
    import matplotlib.pyplot as plt

    panels = [("similarity", "similarity to the training photos", check.threshold, "linear")]
    if check.resemblance_threshold is not None:
        panels.insert(0, ("resemblance", "ImageNet's probability on the classes your photos look like",
                          check.resemblance_threshold, "log"))
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 3.2), squeeze=False)
    for axis, (score, label, threshold, scale) in zip(axes[0], panels):
        for group, name in ((photos, "validation photos"), (others, "photos of other things")):
            values = [max(getattr(prediction, score), 1e-4) for prediction in group]
            if values:
                bins = torch.logspace(-4, 0, 30).tolist() if scale == "log" else 30
                axis.hist(values, bins=bins, alpha=0.6, label=f"{name} ({len(values)})")
        if threshold is not None:
            axis.axvline(threshold, color="black", linestyle="--", label="threshold: below it, none of these")
        axis.set_xscale(scale)
        axis.set_xlabel(label)
        axis.legend(fontsize="small")
    figure.tight_layout()
    return figure
