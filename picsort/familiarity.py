"""Does a photo look like the training photos at all? The check behind a "none of these" answer.

Softmax gives some class most of the probability whatever the photo shows (a dog shown to a bears model
comes out "black bear, 78 %"), so the top probability cannot say "none of these". Instead the model folder
keeps the pooled body features of its training photos (`reference.safetensors`, plain tensors), and a photo
whose features are far from all of them is flagged. train.ipynb keeps the body's pretrained features
(frozen body and batch norm), where photos of other things lie far from the training photos, and
calibrates the threshold on the validation photos; the card records the method and the threshold.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

REFERENCE_NAME = "reference.safetensors"
METHOD = "cosine similarity of average-pooled body features, mean over the k most similar training photos"
DEFAULT_K = 5
DEFAULT_KEEP = 0.99


def pooled(features: torch.Tensor) -> torch.Tensor:
    """Unit-length average-pooled features (N×C) from a body's feature map (N×C×H×W)."""
    return torch.nn.functional.normalize(features.float().mean(dim=(2, 3)), dim=1)


class FamiliarityIndex:
    """The training photos' pooled features, and the similarity below which a photo is "none of these"."""

    def __init__(self, reference: torch.Tensor | None, k: int = DEFAULT_K, threshold: float | None = None):
        self.reference = reference
        self.k = k
        self.threshold = threshold

    @classmethod
    def load(cls, folder: Path | str, card: dict) -> "FamiliarityIndex":
        """The index a model folder's card describes; models exported without one never say "none of these"."""
        from safetensors.torch import load_file

        from picsort.model import ModelFolderError

        settings = card.get("none_of_these")
        if not settings:
            return cls(None)
        path = Path(folder) / settings.get("reference", REFERENCE_NAME)
        if not path.exists():
            raise ModelFolderError(f"{path} is missing: re-export the model with train.ipynb")
        reference = load_file(path)["features"].float()
        return cls(reference, int(settings["k"]), float(settings["threshold"]))

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Familiarity (N) of a body's feature map (N×C×H×W): 1 for a training photo, lower for other things."""
        return self.similarity_of_pooled(pooled(features))

    def similarity_of_pooled(self, vectors: torch.Tensor) -> torch.Tensor:
        """Familiarity (N) of unit-length pooled features (N×C)."""
        if self.reference is None:
            return torch.full((vectors.shape[0],), math.nan)
        similarities = vectors @ self.reference.T
        return similarities.topk(min(self.k, self.reference.shape[0]), dim=1).values.mean(dim=1)

    def is_unfamiliar(self, similarity: float) -> bool:
        """Whether a photo with this familiarity looks like none of the classes."""
        return self.threshold is not None and similarity < self.threshold


# ---- training side -----------------------------------------------------------------------------------


def pooled_features(learn, items) -> torch.Tensor:
    """Pooled body features (N×C) of files, prepared as the learner validates (no augmentation)."""
    body = learn.model[0]
    dl = learn.dls.test_dl(list(items), num_workers=0)
    chunks = []
    learn.model.eval()
    with torch.inference_mode():
        for (batch,) in dl:
            chunks.append(pooled(body(batch)))
    return torch.cat(chunks).cpu()


def calibrate(learn, *, k: int = DEFAULT_K, keep: float = DEFAULT_KEEP, others=()) -> tuple[torch.Tensor, dict]:
    """Reference features of the training photos, and the card's settings.

    The threshold keeps `keep` of the validation photos, which the reference does not hold, as new photos of
    the classes will not be. Given photos of other things (`others`, files), it moves halfway towards the
    score below which `keep` of those lie, when the two do not overlap: photos from another source score a
    little lower than this scrape's own, and the margin is theirs.
    """
    reference = pooled_features(learn, learn.dls.train_ds.items)
    index = FamiliarityIndex(reference, k)
    validation = index.similarity_of_pooled(pooled_features(learn, learn.dls.valid_ds.items))
    others = list(others)
    other_scores = index.similarity_of_pooled(pooled_features(learn, others)) if others else torch.empty(0)
    threshold = float(torch.quantile(validation, 1 - keep)) if len(validation) else 0.0
    if len(other_scores):
        ceiling = float(torch.quantile(other_scores, keep))
        if ceiling < threshold:
            threshold = (threshold + ceiling) / 2
    threshold = round(threshold, 4)
    flagged = lambda scores: round(float((scores < threshold).float().mean()), 4) if len(scores) else None  # noqa: E731
    settings = {
        "method": METHOD,
        "k": k,
        "threshold": threshold,
        "reference": REFERENCE_NAME,
        "reference_images": int(reference.shape[0]),
        "calibration": {"keep": keep, "validation_images": int(len(validation)),
                        "validation_flagged": flagged(validation), "other_images": len(others),
                        "others_flagged": flagged(other_scores)},
    }
    return reference, settings
