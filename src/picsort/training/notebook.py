"""What train.ipynb needs beyond the course's fastai calls: enough photos per category, a batch size that fits
them, and a linear head fitted the way that holds up on photos from other sources; and the notebook's DataBlock
for tests and benchmarks that train as it does.

Why a logistic regression: with the pretrained body frozen, the head is a linear model on the body's
average-pooled features. Fitted as an L2-regularised logistic regression on those features (each training
photo seen whole, as the app sees it), it was right on 97.9 % of bear photos from another source; fastai's
head trained on the same features (batch norm, dropout, three one-cycle epochs on augmented crops) on 96.1 %
(the owners' hidden set, issue 16). Strong regularisation keeps it from learning this scrape's quirks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from picsort.inference.none_of_these import average_pooled

# Each category needs one photo to check the model on and at least two to learn from.
MIN_PHOTOS_PER_CATEGORY = 3
# The logistic regression's inverse regularisation strength (scikit-learn's C) on raw pooled features: the
# owners' 97.9 % held for C from 0.01 to 0.1; at 0.1 the validation loss is lowest of that range (benchmarks/model_variants.py).
HEAD_C = 0.1


class NotEnoughPhotosError(ValueError):
    """A category has no photos, or too few to train and validate on; the message names it."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback: the run stops at this cell with the message alone.
        return [f"{type(self).__name__}: {self}"]


def photos_per_category(data: Path | str, categories, source: str = "") -> dict[str, int]:
    """Photos in `data/<category>/` for each category named; NotEnoughPhotosError names any short of them."""
    from picsort.photos.photo_folders import photos_in

    counts = {name: len(photos_in(Path(data) / name)) for name in categories}
    return check_photo_counts(counts, source)


def check_photo_counts(counts: Mapping[str, int], source: str = "", named_in: str = "CATEGORIES",
                       least: int = MIN_PHOTOS_PER_CATEGORY) -> dict[str, int]:
    """`counts` (photos per category) when every category has enough (`least`); NotEnoughPhotosError names any
    short of them and how many more it needs. `named_in`: where the user lists the categories, for the message."""
    counts = dict(counts)
    where = f" from {source}" if source else ""
    empty = [name for name, count in counts.items() if count == 0]
    if empty:
        raise NotEnoughPhotosError(f"no photos of {', '.join(empty)}{where} (found {_listed(counts)}): "
                                   f"add photos of it, or remove it from {named_in}")
    short = {name: count for name, count in counts.items() if count < least}
    if short:
        wanted = ", ".join(f"{name} has {count}, add {least - count} more" for name, count in short.items())
        raise NotEnoughPhotosError(f"each category needs at least {least} photos (one to check "
                                   f"the model on, the rest to learn from): {wanted}")
    if len(counts) < 2:
        raise NotEnoughPhotosError(f"a classifier needs at least two categories: add one to {named_in}")
    return counts


def training_datablock(size: int, valid_pct: float = 0.2, seed: int = 42, get_items=None):
    """The fastai DataBlock train.ipynb trains with, for code that trains as it does (tests, benchmarks).

    Photos found by `get_image_files` (or `get_items`), labelled by their folder, a fixed random validation split,
    `RandomResizedCrop(size, min_scale=0.35)` per photo and `aug_transforms(max_lighting=0.4)` per batch. The
    notebook writes these calls out itself (the course teaches them): tests/test_training.py checks that its
    cells build this same recipe.
    """
    from fastai.vision.all import (
        CategoryBlock,
        DataBlock,
        ImageBlock,
        RandomResizedCrop,
        RandomSplitter,
        aug_transforms,
        get_image_files,
        parent_label,
    )

    return DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_items or get_image_files,
                     splitter=RandomSplitter(valid_pct=valid_pct, seed=seed), get_y=parent_label,
                     item_tfms=RandomResizedCrop(size, min_scale=0.35), batch_tfms=aug_transforms(max_lighting=0.4))


def fitting_batch_size(counts: Mapping[str, int], wanted: int, valid_pct: float = 0.2) -> int:
    """`wanted`, or fewer when the training split is smaller: fastai drops a last incomplete batch, so a batch
    larger than the training photos would leave nothing to train on."""
    total = sum(counts.values())
    training = total - int(valid_pct * total)
    return max(1, min(wanted, training))


def body_features(learn, items) -> torch.Tensor:
    """Average-pooled body features (N×C) of files, each prepared as the learner validates (no augmentation).

    Kept on the learner by file (path and modification time) and by the body's weights: the frozen body gives a
    photo the same features every time, and train.ipynb needs the training photos' twice (the head, then the
    "none of these" reference). Anything that changes the weights (training the body) misses the cache.
    """
    items = list(items)
    cache = learn.__dict__.setdefault("_picsort_features", {})
    version = (_weights_fingerprint(learn.model[0]), id(learn.dls))
    keys = [_cache_key(version, item) for item in items]
    missing = [index for index, key in enumerate(keys) if key is None or key not in cache]
    fresh = {}
    if missing:
        body = learn.model[0]
        dl = learn.dls.test_dl([items[index] for index in missing], num_workers=0)
        chunks = []
        learn.model.eval()
        with torch.inference_mode():
            for (batch,) in dl:
                chunks.append(average_pooled(body(batch)).cpu())
        for index, vector in zip(missing, torch.cat(chunks)):
            fresh[index] = vector
            if keys[index] is not None:
                cache[keys[index]] = vector
    rows = [fresh[index] if index in fresh else cache[key] for index, key in enumerate(keys)]
    return torch.stack(rows) if rows else torch.empty(0)


def _weights_fingerprint(body: torch.nn.Module) -> float:
    """A number that changes when the body's weights or batch-norm statistics do (a few ms for Lite2)."""
    with torch.no_grad():
        return float(sum(t.double().sum() for t in body.state_dict().values() if t.is_floating_point()))


def _cache_key(version: tuple, item) -> tuple | None:
    if not isinstance(item, (str, Path)):
        return None  # a picture in memory: nothing to recognise it by
    try:
        stat = Path(item).stat()
    except OSError:
        return None
    return version, str(Path(item).resolve()), stat.st_mtime_ns, stat.st_size


def fit_linear_head(learn, C: float = HEAD_C) -> None:
    """Set the learner's last linear layer to `logistic_head` fitted on the pooled features of its training photos.
    The head must be one linear layer with a bias on the average pool (`vision_learner(..., lin_ftrs=[],
    concat_pool=False, first_bn=False, ps=0)`)."""
    head = learn.model[1]
    linear = head[-1]
    if not isinstance(linear, torch.nn.Linear) or linear.bias is None or any(
            isinstance(layer, (torch.nn.BatchNorm1d, torch.nn.Dropout)) for layer in head):
        raise ValueError("fit_linear_head needs a head of one linear layer with a bias: vision_learner(..., "
                         "lin_ftrs=[], concat_pool=False, first_bn=False, ps=0)")
    train = learn.dls.train_ds
    labels = [int(label) for label in train.tls[1]]  # the encoded categories, without loading the photos
    weight, bias = logistic_head(body_features(learn, train.items), labels, [str(c) for c in learn.dls.vocab], C)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)


def logistic_head(features: torch.Tensor, labels: Sequence[int], classes: Sequence[str], C: float = HEAD_C
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a linear layer whose softmax is an L2-regularised logistic regression on `features`
    (N×C raw average-pooled body features) with `labels` (N indexes into `classes`), fitted to convergence
    with scikit-learn. train.ipynb fits its head with it (through `fit_linear_head`), and so does `picsort teach`.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    present = set(int(label) for label in labels)
    missing = [name for index, name in enumerate(classes) if index not in present]
    if missing:
        raise NotEnoughPhotosError(f"no training photos of {', '.join(missing)}: add photos of it")
    # One BLAS thread: these problems are small (hundreds of photos × 1,280 features), and OpenBLAS's threads, which
    # spin while they wait, cost more than they save, most of all on a CPU shared with torch or other work: on 2
    # busy cores, Teach mode's Train on 50 photos took 2.4 s with two threads and 0.6 s with one; the 416 bears' head
    # 0.5-3.2 s and 0.1 s (benchmarks/teach_speed.py measures Train).
    with threadpool_limits(limits=1, user_api="blas"):
        regression = LogisticRegression(C=C, max_iter=10_000).fit(features.double().numpy(), np.asarray(labels))
    coef, intercept = regression.coef_, regression.intercept_
    if coef.shape[0] == 1:  # two classes: scikit-learn fits one logit; softmax over (-z/2, z/2) is sigmoid(z)
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-intercept[0] / 2, intercept[0] / 2])
    return torch.as_tensor(coef, dtype=torch.float32), torch.as_tensor(intercept, dtype=torch.float32)


def _listed(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name}: {count}" for name, count in counts.items())
