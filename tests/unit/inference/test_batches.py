"""Tests for picsort.inference.batches: files through the classify path, decoded ahead on threads, in bounded batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from picsort.inference.batches import classify_batches, classify_files
from picsort.inference.classify import load_model
from picsort.photos.images import UnusableImageError
from tests.conftest import EXAMPLES


def test_streaming_reads_paths_lazily_and_keeps_order(examples_and_bad_files):
    """classify_batches pulls paths a couple of batches ahead, never the whole list."""
    model = load_model()
    pulled = []

    def paths():
        for number in range(1000):
            pulled.append(number)
            yield str(examples_and_bad_files / "a.jpg") if number % 2 else str(examples_and_bad_files / "empty.jpg")

    batches = classify_batches(paths(), model, batch_size=4)
    first = next(batches)
    assert len([r for _, r in first if not isinstance(r, UnusableImageError)]) == 4
    assert len(pulled) <= 3 * 4 + 8  # two batches ahead (plus bad files riding along), not 1000
    batches.close()
    files = [examples_and_bad_files / name for name in ("empty.jpg", "a.jpg", "text.jpg")]
    results = list(classify_files(files, model, batch_size=2))
    assert [Path(p).name for p, _ in results] == ["empty.jpg", "a.jpg", "text.jpg"]
    # Only bad files: they still come out in bounded batches (so the CLI saves their rows as it goes).
    assert [len(b) for b in classify_batches([examples_and_bad_files / "text.jpg"] * 10, model, batch_size=2)] == [4, 4, 2]


def test_decoding_threads_change_no_answer(examples_and_bad_files):
    model = load_model()
    files = sorted(examples_and_bad_files.glob("*.jpg")) * 3
    on_threads = list(classify_files(files, model, batch_size=4, workers=2))
    inline = list(classify_files(files, model, batch_size=4, workers=0))
    assert [path for path, _ in on_threads] == [str(file) for file in files]
    for (_, threaded), (_, alone) in zip(on_threads, inline):
        if isinstance(alone, UnusableImageError):
            assert str(threaded) == str(alone)
        else:
            assert threaded.probabilities == alone.probabilities  # exactly: the same batches, the same passes


def test_a_file_that_breaks_the_decoder_gets_an_error_naming_it_and_the_run_goes_on(examples_and_bad_files, monkeypatch):
    model = load_model()
    real = model.decode

    def decode(item, name=None):
        if str(item).endswith("b.jpg"):
            raise MemoryError("the decoder ran out of memory")  # not one of the decoders' usual complaints
        return real(item, name)

    monkeypatch.setattr(model, "decode", decode)
    (_, a), (_, b), (_, c) = classify_files([examples_and_bad_files / name for name in ("a.jpg", "b.jpg", "c.jpg")], model)
    assert isinstance(b, UnusableImageError)
    assert str(b) == "'b.jpg' could not be used (MemoryError: the decoder ran out of memory)"
    assert not isinstance(a, UnusableImageError) and not isinstance(c, UnusableImageError)


@pytest.mark.parametrize("arguments, words", [({"batch_size": 0}, "batch_size must be at least 1"),
                                              ({"workers": -1}, "workers must be 0 or more")])
def test_impossible_settings_are_refused_by_name(examples_and_bad_files, arguments, words):
    with pytest.raises(ValueError, match=words):
        next(classify_batches([examples_and_bad_files / "a.jpg"], load_model(), **arguments))


def test_pooled_body_features_are_the_average_pooled_feature_maps_of_each_photo():
    import torch

    from picsort.inference.batches import pooled_body_features
    from picsort.inference.none_of_these import average_pooled, pooled

    model = load_model()
    files = sorted(EXAMPLES.glob("*.jpg"))[:3]
    tensors = [model.prepare(str(file)).tensor for file in files]
    features = pooled_body_features(model, tensors)
    with torch.inference_mode():
        (maps,) = model.feature_maps(model.to_batch(tensors))
    assert features.shape == (3, maps.shape[1]) and torch.allclose(features, maps.float().mean(dim=(2, 3)))
    assert torch.equal(average_pooled(maps), features)
    assert torch.allclose(pooled(maps), torch.nn.functional.normalize(features, dim=1))
    # one photo at a time (Teach mode) gives what a batch (picsort teach) gives
    assert torch.allclose(pooled_body_features(model, tensors[1:2])[0], features[1], atol=1e-5)
