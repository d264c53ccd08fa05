"""export.py: the model folder written after training, and the fastai learner loaded back from it."""

from __future__ import annotations

import importlib.util
import json

import pytest

from picsort.photos.sources import class_folders
from picsort.training.export import load_learner_checked


def test_export_writes_weights_card_and_learner(small_model, photos):
    assert {p.name for p in small_model.iterdir()} >= {"export.pkl", "model.safetensors", "model.json"}
    card = json.loads((small_model / "model.json").read_text())
    assert card["classes"] == sorted(class_folders(photos[0]))
    assert card["backbone"] == "efficientnet_lite0"
    assert card["preprocessing"]["size"] == 64 and card["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert 0 <= card["validation"]["error_rate"] <= 1
    assert card["versions"]["fastai"] and card["versions"]["torch"]


def test_loading_the_pickle_without_timm_says_what_to_install(small_model, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"pip install timm==\d"):
        load_learner_checked(small_model)
