"""Export writes what serving needs, and the fastai-free classify path gives fastai's answers."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from picsort.classify import FORWARD_CHUNK, Classifier, load_model
from picsort.model import MODEL_DIR, ModelFolderError, load_learner_checked, read_card
from picsort.sources import class_folders


def test_export_writes_weights_card_and_learner(small_model, photos):
    assert {p.name for p in small_model.iterdir()} >= {"export.pkl", "model.safetensors", "model.json"}
    card = json.loads((small_model / "model.json").read_text())
    assert card["classes"] == sorted(class_folders(photos[0]))
    assert card["backbone"] == "efficientnet_lite0"
    assert card["preprocessing"]["size"] == 64 and card["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert 0 <= card["validation"]["error_rate"] <= 1
    assert card["versions"]["fastai"] and card["versions"]["torch"]


def test_classifier_matches_learn_predict(small_model, photos):
    learn = load_learner_checked(small_model)
    classifier = Classifier(small_model)
    files = [f for fs in class_folders(photos[0]).values() for f in fs[:4]]
    for file in files:
        _, _, fastai_probabilities = learn.predict(file)
        ours = classifier.predict(file)
        for name, expected in zip(learn.dls.vocab, fastai_probabilities.tolist()):
            assert ours.probabilities[name] == pytest.approx(expected, abs=1e-4)


def test_an_image_gets_the_same_answer_alone_or_in_a_large_drop(small_model, photos):
    """Batches run FORWARD_CHUNK images per pass; where an image lands in the drop must not change its answer."""
    classifier = Classifier(small_model)
    files = [f for fs in class_folders(photos[0]).values() for f in fs]
    files = (files * (2 * FORWARD_CHUNK + 3))[:2 * FORWARD_CHUNK + 3]  # a last pass that is not full
    together = classifier.predict_batch(files)
    assert len(together) == len(files)
    for file, prediction in zip(files, together):
        alone = classifier.predict(file)
        assert prediction.label == alone.label
        for name in classifier.classes:
            assert prediction.probabilities[name] == pytest.approx(alone.probabilities[name], abs=1e-5)


def test_shipped_model_matches_learn_predict_on_every_real_photo(real_photos):
    """The app's preprocessing equals the learner's on all development photos (within 1e-4)."""
    learn = load_learner_checked(MODEL_DIR)
    classifier = load_model(MODEL_DIR)
    files = [f for fs in class_folders(real_photos).values() for f in fs]
    with learn.no_bar():
        fastai_probabilities, _ = learn.get_preds(dl=learn.dls.test_dl(files, num_workers=0))
    ours = []
    for start in range(0, len(files), 32):
        ours += classifier.predict_batch(files[start:start + 32])
    ours = torch.tensor([[p.probabilities[c] for c in learn.dls.vocab] for p in ours])
    assert (ours - fastai_probabilities).abs().max().item() < 1e-4
    # and learn.predict itself, the course's call, on a few
    for file in files[::50]:
        assert classifier.predict(file).label == learn.predict(file)[0]


def test_shipped_card_describes_the_shipped_weights():
    card = read_card(MODEL_DIR)
    assert card["classes"] == ["black", "grizzly", "teddy"]
    assert (MODEL_DIR / "model.safetensors").exists() and (MODEL_DIR / "export.pkl").exists()
    network = load_model(MODEL_DIR).network
    assert network[1][-1].out_features == len(card["classes"])


def test_missing_model_folder_says_what_to_do(tmp_path):
    with pytest.raises(ModelFolderError, match="train.ipynb"):
        Classifier(tmp_path)


def test_loading_the_pickle_without_timm_says_what_to_install(small_model, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "timm" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"pip install timm==\d"):
        load_learner_checked(small_model)


def test_explain_gives_a_heatmap_the_size_of_the_picture(small_model, photos):
    classifier = Classifier(small_model)
    image = classifier.to_image(next(iter(class_folders(photos[0]).values()))[0])
    heatmap = classifier.heatmap(image)
    assert heatmap.shape == (image.height, image.width)
    assert 0 <= heatmap.min() and heatmap.max() <= 1 and heatmap.max() > 0
    overlay = classifier.explain(image)
    assert overlay.size == image.size and overlay.tobytes() != image.tobytes()


def test_plain_torch_lite0_equals_timm_on_the_shipped_weights():
    from safetensors.torch import load_file

    from picsort.model import WEIGHTS_NAME, build_network

    card = read_card(MODEL_DIR)
    weights = load_file(MODEL_DIR / WEIGHTS_NAME)
    plain, with_timm = build_network(card).eval(), build_network(card, use_timm=True).eval()
    plain.load_state_dict(weights)
    with_timm.load_state_dict(weights)
    batch = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        assert torch.allclose(plain(batch), with_timm(batch), atol=1e-5)


def test_serving_imports_neither_fastai_nor_timm():
    import subprocess
    import sys

    code = ("import sys; from picsort.classify import load_model; load_model(); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'fastai', 'timm', 'torchvision'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
