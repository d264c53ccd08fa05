"""train.ipynb's helpers: enough photos per category, a batch that fits them, the logistic-regression head."""

from __future__ import annotations

import ast
import enum
import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from picsort.training.notebook import (
    MIN_PHOTOS_PER_CATEGORY,
    NotEnoughPhotosError,
    fitting_batch_size,
    logistic_head,
    photos_per_category,
)
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
    from fastai.vision.all import (
        BnFreeze,
        CategoryBlock,
        DataBlock,
        ImageBlock,
        RandomResizedCrop,
        RandomSplitter,
        get_image_files,
        parent_label,
        vision_learner,
    )

    from picsort.inference.backbones import learner_architecture
    from picsort.training.notebook import body_features

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


# --- the DataBlock: train.ipynb writes it out, tests and benchmarks call training_datablock -------------------

NOTEBOOK = Path(__file__).resolve().parents[3] / "train.ipynb"


def notebook_datablock(size: int, replace: tuple[str, str] = ("", "")):
    """The DataBlock train.ipynb trains with, built by running its own statements: the `DataBlock(...)`
    assignment and every later `<that name> = ...` up to the first `vision_learner(...)` (the cells that only
    show other resizes change it too, as they do in a run), with IMAGE_SIZE = `size`. `replace`: a change to the
    cells' text first (to check that a changed recipe is noticed)."""
    import fastai.vision.all as fastai_names

    namespace = {name: getattr(fastai_names, name) for name in dir(fastai_names) if not name.startswith("_")}
    namespace["IMAGE_SIZE"] = size
    name = None
    for cell in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] != "code":
            continue
        source = "".join(line for line in cell["source"] if not line.lstrip().startswith(("%", "!")))
        for statement in ast.parse(source.replace(*replace)).body:
            calls = [node.func.id for node in ast.walk(statement)
                     if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
            if name is not None and "vision_learner" in calls:
                return namespace[name]
            if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                    and isinstance(statement.targets[0], ast.Name)):
                continue
            target = statement.targets[0].id
            if name is None and isinstance(statement.value, ast.Call) and getattr(statement.value.func, "id", "") \
                    == "DataBlock":
                name = target
            if target == name:
                exec(compile(ast.Module([statement], []), str(NOTEBOOK), "exec"), namespace)
    raise AssertionError(f"{NOTEBOOK.name}: no DataBlock(...) assignment before a vision_learner(...) call")


def recipe(value):
    """What a DataBlock's transforms were built with, as plain values to compare (the random state a transform
    keeps after a draw aside: nothing is drawn before dataloaders)."""
    if isinstance(value, functools.partial):
        return value.func.__qualname__, recipe(value.keywords)
    if isinstance(value, dict):
        return {key: recipe(item) for key, item in value.items() if not key.startswith("_")}
    if isinstance(value, (list, tuple)):
        return [recipe(item) for item in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, enum.Enum):
        return repr(value)
    if isinstance(value, type) or callable(value) and hasattr(value, "__qualname__"):
        return value.__qualname__
    if hasattr(value, "__dict__"):
        return type(value).__qualname__, recipe(vars(value))
    return value


def test_the_notebook_trains_with_the_datablock_tests_and_benchmarks_use(tmp_path):
    from picsort.training.notebook import training_datablock

    data = make_synthetic_photos(tmp_path / "data", per_class=5)
    ours, notebook = training_datablock(64), notebook_datablock(64)
    for part in ("type_tfms", "getters", "item_tfms", "batch_tfms"):
        assert recipe(getattr(notebook, part)) == recipe(getattr(ours, part)), part
    ours, notebook = ours.datasets(data), notebook.datasets(data)
    assert list(notebook.vocab) == list(ours.vocab) == ["black", "grizzly", "teddy"]
    assert notebook.train.items == ours.train.items and notebook.valid.items == ours.valid.items
    assert len(ours.valid.items) == 3  # 20 % of 15
    # and a changed recipe would be noticed
    assert recipe(notebook_datablock(64, ("min_scale=0.35", "min_scale=0.5")).item_tfms) != recipe(
        training_datablock(64).item_tfms)
    assert recipe(notebook_datablock(64, ("max_lighting=0.4", "max_lighting=0.2")).batch_tfms) != recipe(
        training_datablock(64).batch_tfms)
