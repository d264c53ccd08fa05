"""Does a photo look like the training photos at all? The check behind a "none of these" answer.

Softmax gives some class most of the probability whatever the photo shows (a dog shown to a bears model
comes out "black bear, 78 %"), so the top probability cannot say "none of these". Instead the model folder
keeps the pooled body features of its training photos (`reference.safetensors`, plain tensors), and a photo
whose features are far from all of them is flagged. train.ipynb keeps the body's pretrained features
(frozen body and batch norm), where photos of other things lie far from the training photos, and
calibrates the threshold on the validation photos (`choose_threshold`); the card records the method, the rule
and the threshold.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from picsort.model import ModelFolderError, model_file, tensor_shapes

REFERENCE_NAME = "reference.safetensors"
METHOD = "cosine similarity of average-pooled body features, mean over the k most similar training photos"
RULE = ("1st percentile of the validation photos' scores (with each training photo left out, under 20 validation "
        "photos), minus its distance to their median; raised to the 99th percentile of photos of other things when "
        "given (when not, of each class's photos scored against the other classes' photos only), never above that "
        "1st percentile minus a quarter of that distance")
MIN_VALIDATION = 20
DEFAULT_K = 5
DEFAULT_KEEP = 0.99


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Unit-length average-pooled features (N×C) from a body's feature map (N×C×H×W)."""
    return torch.nn.functional.normalize(features.float().mean(dim=(2, 3)), dim=1)


class NoneOfTheseCheck:
    """The training photos' pooled features, and the similarity below which a photo is "none of these"."""

    def __init__(self, reference: torch.Tensor | None, k: int = DEFAULT_K, threshold: float | None = None):
        self.reference = reference
        self.k = k
        self.threshold = threshold

    @classmethod
    def load(cls, folder: Path | str, card: dict, width: int | None = None) -> "NoneOfTheseCheck":
        """The index a model folder's card (checked: picsort.model.read_card) describes; models exported without one
        never say "none of these". `width`: the width of the network's features (picsort.model.feature_width), which
        the reference's must equal; the file's shape is read from its header before its tensor is."""
        from safetensors.torch import load_file

        settings = card.get("none_of_these")
        if not settings:
            return cls(None)
        path = model_file(folder, settings.get("reference", REFERENCE_NAME))
        shape = tensor_shapes(path).get("features")
        if shape is None or len(shape) != 2 or not shape[0] or (width is not None and shape[1] != width):
            wanted = f"N×{width}" if width is not None else "N×features"
            found = "no 'features' tensor" if shape is None else f"features of {'×'.join(map(str, shape)) or '1'}"
            raise ModelFolderError(f"{path} does not fit its model: it holds {found}, the network's features are "
                                   f"{wanted} (re-export the model with train.ipynb)")
        reference = load_file(path)["features"].float()
        return cls(reference, int(settings["k"]), float(settings["threshold"]))

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Similarity to the training photos (N) of a body's feature map (N×C×H×W): 1 for a training photo, lower for other things."""
        return self.similarity_of_pooled(pooled(features))

    def similarity_of_pooled(self, vectors: torch.Tensor) -> torch.Tensor:
        """Similarity to the training photos (N) of unit-length pooled features (N×C)."""
        if self.reference is None:
            return torch.full((vectors.shape[0],), math.nan)
        similarities = vectors @ self.reference.T
        return similarities.topk(min(self.k, self.reference.shape[0]), dim=1).values.mean(dim=1)

    def is_none_of_these(self, similarity: float) -> bool:
        """Whether a photo with this similarity looks like none of the classes."""
        return self.threshold is not None and similarity < self.threshold


# ---- training side -----------------------------------------------------------------------------------


def pooled_features(learn, items) -> torch.Tensor:
    """Unit-length pooled body features (N×C) of files, prepared as the learner validates (no augmentation)."""
    from picsort.training import body_features

    return torch.nn.functional.normalize(body_features(learn, items), dim=1)


def leave_one_out(reference: torch.Tensor, k: int = DEFAULT_K) -> torch.Tensor:
    """Each reference photo's similarity to the others (itself left out): more photos the reference does not
    hold, for small data sets whose validation split has only a few."""
    if reference.shape[0] < 2:
        return torch.empty(0)
    similarities = reference @ reference.T
    similarities.fill_diagonal_(-math.inf)
    return similarities.topk(min(k, reference.shape[0] - 1), dim=1).values.mean(dim=1)


def other_class_scores(reference: torch.Tensor, labels: list[int], held_out: torch.Tensor | None = None,
                       held_out_labels: list[int] | None = None, k: int = DEFAULT_K) -> torch.Tensor:
    """Each photo's similarity to the photos of the other classes only (the reference's, and the held-out ones'
    when given): what a class the model was not taught looks like to it. A model is taught two classes at least,
    so these are photos of other things that every calibration has, where none were given; empty for one class."""
    scores = []
    reference_labels = torch.tensor(labels)
    held_out_labels = torch.tensor(held_out_labels if held_out_labels is not None else [], dtype=torch.long)
    for label in sorted(set(labels)):
        others = reference[reference_labels != label]
        if not len(others):
            continue
        index = NoneOfTheseCheck(others, k)
        scores.append(index.similarity_of_pooled(reference[reference_labels == label]))
        if held_out is not None and len(held_out):
            scores.append(index.similarity_of_pooled(held_out[held_out_labels == label]))
    return torch.cat(scores) if scores else torch.empty(0)


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

    Without photos of other things, `calibration` passes each class's photos scored against the other classes'
    (`other_class_scores`) as `others`: the lean rule alone sits far below anything (taught on 3 of the 10
    Imagenette classes, 40 photos each, all 120 triples: 28 % of the 416 bears flagged on average, at least 90 %
    in 19 triples; benchmarks/teach.py's draw 0 %), with the classes standing in for other things 98 % (at least
    90 % in 115 triples), while 0.7 % of the classes' other photos were flagged on average (at most 3.4 %).
    """
    if not len(own):
        return 0.0
    low = float(torch.quantile(own, 1 - keep))
    lean = low - (float(torch.quantile(own, 0.5)) - low)
    if others is None or not len(others):
        return round(lean, 4)
    ceiling = float(torch.quantile(others, keep))
    return round(min(max(lean, ceiling), low - (low - lean) / 4), 4)


def calibrate(learn, *, k: int = DEFAULT_K, keep: float = DEFAULT_KEEP, others=()) -> tuple[torch.Tensor, dict]:
    """Reference features of the training photos, and the card's settings (`choose_threshold`'s rule on the
    validation photos, and on `others`, files of photos of other things; see RULE)."""
    reference = pooled_features(learn, learn.dls.train_ds.items)
    others = list(others)
    settings = calibration(reference, pooled_features(learn, learn.dls.valid_ds.items),
                           pooled_features(learn, others) if others else torch.empty(0, reference.shape[1]),
                           k=k, keep=keep)
    return reference, settings


def calibration(reference: torch.Tensor, held_out: torch.Tensor, others: torch.Tensor, *, k: int = DEFAULT_K,
                keep: float = DEFAULT_KEEP, labels: list[int] | None = None,
                held_out_labels: list[int] | None = None) -> dict:
    """The card's "none of these" settings from unit-length pooled features: `reference` (training photos),
    `held_out` (photos of the classes the reference does not hold) and `others` (photos of other things, may be
    empty), by `choose_threshold` (see RULE). With `others` empty and the classes of the photos given (`labels`
    of the reference, `held_out_labels`), the classes stand in for other things (`other_class_scores`); photos of
    other things, when given, are the better evidence, and train.ipynb's shipped threshold stays as it was."""
    index = NoneOfTheseCheck(reference, k)
    validation = index.similarity_of_pooled(held_out) if len(held_out) else torch.empty(0)
    # Left-out training photos score higher than new ones (a scrape holds near-duplicates): used only where the
    # validation photos are too few for percentiles to mean anything.
    own = validation if len(validation) >= MIN_VALIDATION else torch.cat([validation, leave_one_out(reference, k)])
    other_scores = index.similarity_of_pooled(others) if len(others) else torch.empty(0)
    stand_in = torch.empty(0)
    if not len(others) and labels is not None:
        stand_in = other_class_scores(reference, labels, held_out, held_out_labels, k)
    threshold = choose_threshold(own, other_scores if len(others) else stand_in, keep)
    flagged = lambda scores: round(float((scores < threshold).float().mean()), 4) if len(scores) else None  # noqa: E731
    return {
        "method": METHOD,
        "k": k,
        "threshold": threshold,
        "reference": REFERENCE_NAME,
        "reference_images": int(reference.shape[0]),
        "calibration": {"rule": RULE, "keep": keep, "validation_images": int(len(validation)),
                        "validation_flagged": flagged(validation), "training_images_left_out": int(len(own) - len(validation)),
                        "other_images": int(len(others)), "others_flagged": flagged(other_scores),
                        "other_classes_scores": int(len(stand_in)), "other_classes_flagged": flagged(stand_in)},
    }
