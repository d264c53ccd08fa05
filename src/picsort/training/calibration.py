"""Choosing a model's "none of these" settings when it is made: the rule train.ipynb (through
picsort.training.export), `picsort teach` and Teach mode (through picsort.training.teaching) share.

The check itself, which a served model runs without fastai, is picsort.inference.none_of_these; this module
picks what the card tells it, from the user's own photos alone:

- **The ImageNet classes the photos resemble** (`covered_classes`): those among the IMAGENET_TOP most probable of
  any training photo. A photo is none of these when the ImageNet classifier gives them less than a chance share of
  its probability: what a photo of something unrelated, its probability spread evenly, would put there, the
  covered classes' share of the 1000, times CHANCE_FACTOR, kept between RESEMBLANCE_BOUNDS
  (`resemblance_threshold`; more photos cover more classes, and the threshold follows:
  benchmarks/own_model_none_of_these.py has the figures for 10 to 150 photos a class).
- **The similarity threshold** (`choose_threshold`) leans below the held-out photos' own scores and, given photos
  of other things, rises to flag 99 % of them.

Photos of other things (train.ipynb's OTHER_THINGS, `picsort teach --others`, photos labelled "none of these")
only raise the similarity threshold, so they can only flag more other things. The card records both thresholds
and the rule (`RULE`). `calibrate` and `pooled_features` work on a fastai learner (train.ipynb); `calibration`
on features already computed (teach).
"""

from __future__ import annotations

import math

import torch

from picsort.inference.backbones import ImageNetHead
from picsort.inference.none_of_these import DEFAULT_K, REFERENCE_NAME, NoneOfTheseCheck
from picsort.training.notebook import body_features

METHOD = ("a photo is none of these when the pretrained ImageNet classifier puts less than a chance share of its "
          "probability on the ImageNet classes the training photos resemble, or when its average-pooled body "
          "features are far from every training photo's (cosine similarity, mean over the k most similar)")
MIN_VALIDATION = 20
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


def pooled_features(learn, items) -> torch.Tensor:
    """Raw average-pooled body features (N×C) of files, prepared as the learner validates (no augmentation)."""
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
