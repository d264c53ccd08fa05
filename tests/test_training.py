"""train.ipynb's helpers: enough photos per category, a batch that fits them, the logistic-regression head."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from picsort.training import (MIN_PHOTOS_PER_CATEGORY, NotEnoughPhotosError, fitting_batch_size, logistic_head,
                              photos_per_category)
from tests.conftest import make_synthetic_photos


def test_each_category_named_is_counted_and_one_without_photos_is_named(tmp_path):
    data = make_synthetic_photos(tmp_path / "data", classes=("black", "grizzly"), per_class=4)
    (data / "black" / "notes.txt").write_text("not a photo")
    assert photos_per_category(data, ["black", "grizzly"]) == {"black": 4, "grizzly": 4}
    with pytest.raises(NotEnoughPhotosError, match=r"no photos of teddy from labels\.zip \(found black: 4, "
                                                   r"grizzly: 4, teddy: 0\)"):
        photos_per_category(data, ["black", "grizzly", "teddy"], source="labels.zip")


def test_too_few_photos_says_how_many_more(tmp_path):
    data = make_synthetic_photos(tmp_path / "data", classes=("black", "grizzly"), per_class=MIN_PHOTOS_PER_CATEGORY)
    (data / "grizzly" / "000.jpg").unlink()
    with pytest.raises(NotEnoughPhotosError, match="grizzly has 2, add 1 more"):
        photos_per_category(data, ["black", "grizzly"])
    with pytest.raises(NotEnoughPhotosError, match="at least two categories"):
        photos_per_category(data, ["black"])


def test_the_error_shows_in_a_notebook_as_its_message_alone():
    error = NotEnoughPhotosError("no photos of teddy")
    assert error._render_traceback_() == ["NotEnoughPhotosError: no photos of teddy"]


def test_the_batch_is_never_larger_than_the_training_split():
    assert fitting_batch_size({"a": 100, "b": 100}, 32) == 32
    assert fitting_batch_size({"a": 3, "b": 3, "c": 3}, 32) == 8  # 9 photos, 1 to validate
    assert fitting_batch_size({"a": 3, "b": 3}, 32) == 5


@pytest.mark.parametrize("classes", [2, 3])
def test_the_head_gives_the_regressions_probabilities(classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(classes), 20)
    features = torch.tensor(rng.random((len(labels), 16)) + labels[:, None] * 0.2, dtype=torch.float32)
    weight, bias = logistic_head(features, labels.tolist(), [f"c{i}" for i in range(classes)], C=0.1)
    assert weight.shape == (classes, 16) and bias.shape == (classes,)
    ours = torch.softmax(features @ weight.T + bias, dim=1).numpy()
    theirs = LogisticRegression(C=0.1, max_iter=10_000).fit(features.double().numpy(), labels)
    assert np.allclose(ours, theirs.predict_proba(features.double().numpy()), atol=1e-5)


def test_a_class_without_training_photos_is_named():
    features = torch.rand(6, 4)
    with pytest.raises(NotEnoughPhotosError, match="no training photos of teddy"):
        logistic_head(features, [0, 0, 0, 1, 1, 1], ["black", "grizzly", "teddy"])


def test_features_are_computed_once_per_photo_until_the_body_changes(tmp_path):
    """train.ipynb needs the training photos' features twice (the head, then the reference): the second time
    they come from the learner's cache, unless the body's weights changed in between."""
    from fastai.vision.all import (BnFreeze, CategoryBlock, DataBlock, ImageBlock, RandomResizedCrop,
                                   RandomSplitter, get_image_files, parent_label, vision_learner)

    from picsort.backbones import learner_architecture
    from picsort.training import body_features

    photos = make_synthetic_photos(tmp_path / "photos", per_class=4)
    dls = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
                    splitter=RandomSplitter(0.25, seed=42), get_y=parent_label,
                    item_tfms=RandomResizedCrop(64, min_scale=0.5)).dataloaders(photos, bs=4, num_workers=0)
    arch, options = learner_architecture("efficientnet_lite0")
    learn = vision_learner(dls, arch, train_bn=False, cbs=BnFreeze(), lin_ftrs=[], concat_pool=False,
                           first_bn=False, ps=0, **options)
    items = list(dls.train_ds.items)
    first = body_features(learn, items)
    assert len(learn._picsort_features) == len(items)
    assert torch.equal(body_features(learn, items), first)
    with torch.no_grad():
        next(learn.model[0].parameters()).mul_(0.5)  # the body trained: every photo is computed again
    assert not torch.allclose(body_features(learn, items), first)
    assert len(learn._picsort_features) == 2 * len(items)
