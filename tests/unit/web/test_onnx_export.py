"""picsort.web.onnx_export: the ONNX graph gives torch's answers (onnxruntime on CPU, as the page's WASM runs it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from picsort.inference.classify import Classifier, load_model
from picsort.inference.none_of_these import NoneOfTheseCheck
from picsort.web.onnx_export import INPUT_NAME, OUTPUT_NAMES, onnx_bytes

ort = pytest.importorskip("onnxruntime")  # requirements-dev.txt has it

EXAMPLES = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.jpg"))


@pytest.fixture(scope="module")
def shipped():
    classifier = load_model()
    session = ort.InferenceSession(onnx_bytes(classifier), providers=["CPUExecutionProvider"])
    return classifier, session


def model_views(classifier: Classifier, files) -> np.ndarray:
    """The example photos as the graph takes them: uint8 model views, N×size×size×3."""
    return np.stack([np.asarray(classifier.model_view(classifier.to_image(file)), dtype=np.uint8) for file in files])


def torch_scores(classifier: Classifier, views: np.ndarray):
    batch = classifier.to_batch([torch.addcmul(classifier._shift, torch.from_numpy(view).permute(2, 0, 1),
                                               classifier._scale) for view in views])
    return [tensor.numpy() for tensor in classifier.scores(batch)]


def test_the_graph_gives_torch_answers_on_the_example_photos(shipped):
    classifier, session = shipped
    views = model_views(classifier, EXAMPLES)
    assert [output.name for output in session.get_outputs()] == list(OUTPUT_NAMES)
    onnx_outputs = session.run(None, {INPUT_NAME: views})  # six photos in one batch: the batch size is free
    for name, ours, theirs in zip(OUTPUT_NAMES, onnx_outputs, torch_scores(classifier, views)):
        assert ours.shape == theirs.shape, name
        assert np.abs(ours - theirs).max() < 1e-4, name
    # The answers themselves: every example is its own class and none is "none of these".
    for file, row, similarity, resemblance in zip(EXAMPLES, *onnx_outputs):
        assert classifier.classes[int(row.argmax())] == file.stem.split("-")[0]
        assert not classifier.none_of_these.is_none_of_these(float(similarity), float(resemblance))


def test_one_photo_at_a_time_as_the_page_sends_them(shipped):
    classifier, session = shipped
    views = model_views(classifier, EXAMPLES[:2])
    together = session.run(None, {INPUT_NAME: views})[0]
    alone = np.concatenate([session.run(None, {INPUT_NAME: views[i:i + 1]})[0] for i in range(2)])
    assert np.abs(together - alone).max() < 1e-5


def test_noise_is_answered_as_torch_answers_it(shipped):
    classifier, session = shipped
    views = np.random.default_rng(0).integers(0, 256, (2, classifier.size, classifier.size, 3), dtype=np.uint8)
    for ours, theirs in zip(session.run(None, {INPUT_NAME: views}), torch_scores(classifier, views)):
        assert np.abs(ours - theirs).max() < 1e-4


def test_a_model_without_a_none_of_these_check_gives_ones(shipped):
    classifier, _ = shipped
    bare = Classifier.from_network(classifier.network, classifier.card, NoneOfTheseCheck(None))
    session = ort.InferenceSession(onnx_bytes(bare), providers=["CPUExecutionProvider"])
    probabilities, similarity, resemblance = session.run(None, {INPUT_NAME: model_views(bare, EXAMPLES[:1])})
    assert probabilities.shape == (1, len(bare.classes)) and abs(float(probabilities.sum()) - 1) < 1e-5
    assert similarity.tolist() == [1.0] and resemblance.tolist() == [1.0]


def test_the_reference_stays_half_precision_in_the_file(shipped):
    classifier, _ = shipped
    import onnx

    model = onnx.load_from_string(onnx_bytes(classifier))
    halves = [init for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT16]
    sizes = sorted(int(np.prod(init.dims)) for init in halves)
    reference = classifier.none_of_these.reference
    assert int(reference.numel()) in sizes and int(classifier.none_of_these.imagenet.weight.numel()) in sizes
