"""Teach mode's session: photos added by class as bytes, features kept, one removed, Train fits a Classifier."""

from __future__ import annotations

import io
import zipfile

import pytest
import torch
from PIL import Image

from picsort.app.teach_session import MIN_PHOTOS, TeachSession
from picsort.inference.classify import load_model
from picsort.photos.images import UnusableImageError
from picsort.training.notebook import NotEnoughPhotosError
from tests.conftest import make_synthetic_photos

CLASSES = ("dark", "light")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """{class: [jpeg bytes]}: coloured noise, distinct per class (black and teddy tints of conftest's set)."""
    root = make_synthetic_photos(tmp_path_factory.mktemp("photos"), classes=("dark", "mid", "light"), per_class=7)
    return {name: [file.read_bytes() for file in sorted((root / name).iterdir())] for name in CLASSES}


@pytest.fixture(scope="module")
def session_factory(tmp_path_factory):
    """TeachSession with the converted weights cached under a temp folder, never ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PICSORT_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield TeachSession
    mp.undo()


def test_photos_added_by_class_train_a_classifier_with_held_out_accuracy(session_factory, photos, tmp_path):
    session = session_factory(CLASSES)
    for name in CLASSES:
        for number, data in enumerate(photos[name][:6]):
            photo = session.add_photo(name, data, f"{name}-{number}.jpg")
            assert Image.open(io.BytesIO(photo.thumbnail)).format == "JPEG"
            assert max(Image.open(io.BytesIO(photo.thumbnail)).size) <= 96
    assert session.counts() == {"dark": 6, "light": 6} and session.shortfall() is None

    trained = session.train()
    assert trained.classifier.classes == list(CLASSES)
    for name in CLASSES:  # a photo it never saw
        assert trained.classifier.predict(photos[name][6]).label == name
    assert trained.accuracy == 1.0
    summary = trained.summary()
    assert "Trained on 12 photos (dark 6, light 6)" in summary
    assert "Held-out accuracy: 100% of 12 photos" in summary and "cross-validation" in summary
    assert 0 < trained.fitted.card["none_of_these"]["threshold"] < 1

    # The download: a zip of a model folder that load_model serves with the same answers.
    file_name, data = trained.model_zip()
    assert file_name.endswith(".zip")
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path)
    (folder,) = tmp_path.iterdir()
    assert folder.name == file_name.removesuffix(".zip")
    served = load_model(folder)
    for name in CLASSES:
        assert served.predict(photos[name][6]).label == name
        assert served.predict(photos[name][6]).probability == pytest.approx(
            trained.classifier.predict(photos[name][6]).probability, abs=1e-4)


def test_train_says_which_class_needs_how_many_more_photos(session_factory, photos):
    session = session_factory()
    assert "at least two classes" in session.shortfall()
    session.add_class("dark")
    session.add_class(" light ")  # spaces around a typed name are dropped
    assert session.classes == ["dark", "light"]
    for data in photos["dark"][:MIN_PHOTOS]:
        session.add_photo("dark", data)
    added = [session.add_photo("light", data) for data in photos["light"][:3]]
    assert "no photos" not in session.shortfall()
    assert f"at least {MIN_PHOTOS} photos" in session.shortfall() and "light has 3, add 2 more" in session.shortfall()
    with pytest.raises(NotEnoughPhotosError, match="light has 3, add 2 more"):
        session.train()
    session.remove_photo("light", added[1].id)  # a wrong one taken out
    assert session.counts() == {"dark": MIN_PHOTOS, "light": 2}
    assert "light has 2, add 3 more" in session.shortfall()


def test_bad_names_and_bad_photos_are_refused_in_plain_words(session_factory):
    session = session_factory(["dark"])
    with pytest.raises(ValueError, match="already a class called 'dark'"):
        session.add_class("dark")
    with pytest.raises(ValueError, match="kept for photos that are none of the classes"):
        session.add_class("none")
    with pytest.raises(ValueError, match="must not contain '/'"):
        session.add_class("a/b")
    with pytest.raises(UnusableImageError, match="notes.txt"):
        session.add_photo("dark", b"just some text", "notes.txt")
    with pytest.raises(ValueError, match="no class called 'cats'"):
        session.add_photo("cats", b"")
    assert session.counts() == {"dark": 0}


def test_a_session_holds_at_most_max_photos_and_max_classes_and_says_so(session_factory, photos, monkeypatch):
    import picsort.app.teach_session as teach_session

    monkeypatch.setattr(teach_session, "MAX_PHOTOS", 3)
    monkeypatch.setattr(teach_session, "MAX_CLASSES", 2)
    session = session_factory(CLASSES)
    with pytest.raises(teach_session.TooManyError, match="at most 2 classes"):
        session.add_class("mid")
    for data in photos["dark"][:3]:
        session.add_photo("dark", data)
    with pytest.raises(teach_session.TooManyError, match="at most 3 photos, and has 3; remove some to make room"):
        session.add_photo("light", photos["light"][0], "fourth.jpg")
    assert session.counts() == {"dark": 3, "light": 0}


def test_reopening_reads_each_photos_features_instead_of_decoding_it_again(session_factory, photos, tmp_path,
                                                                          monkeypatch):
    from picsort.photos.labels import LabelStore

    first = session_factory(store=LabelStore(tmp_path / "mine"))
    first.add_class("dark")
    added = [first.add_photo("dark", data, f"dark-{n}.jpg") for n, data in enumerate(photos["dark"][:3])]
    second = session_factory(store=LabelStore(tmp_path / "mine"))
    monkeypatch.setattr(second, "_features", lambda *args: pytest.fail("decoded a photo kept with its features"))
    restored, problems = second.restore()
    assert problems == [] and [photo.sha256 for _, photo in restored] == [photo.sha256 for photo in added]
    for before, (_, after) in zip(added, restored):
        assert torch.equal(before.features, after.features) and before.thumbnail == after.thumbnail
        assert (before.size, before.name) == (after.size, after.name)
    second.remove_photo("dark", restored[0][1].id)  # gone with its photo
    assert len(list((tmp_path / "mine" / ".features").iterdir())) == 2


def test_a_spoilt_features_file_costs_only_a_decode(session_factory, photos, tmp_path):
    from picsort.photos.labels import LabelStore

    first = session_factory(store=LabelStore(tmp_path / "mine"))
    first.add_class("dark")
    first.add_photo("dark", photos["dark"][0], "dark.jpg")
    (kept,) = (tmp_path / "mine" / ".features").iterdir()
    kept.write_bytes(b"not an npz")
    (_, photo), = session_factory(store=LabelStore(tmp_path / "mine")).restore()[0]
    assert torch.equal(photo.features, first.photos["dark"][0].features)


def test_photos_labelled_none_of_these_are_read_back_without_decoding_too(session_factory, photos, tmp_path,
                                                                         monkeypatch):
    from picsort.foundation.vocabulary import NONE_LABEL
    from picsort.photos.labels import LabelStore

    LabelStore(tmp_path / "mine").save(photos["light"][0], NONE_LABEL)  # labelled on the page after a Train
    first = session_factory(store=LabelStore(tmp_path / "mine"))
    assert first.restore() == ([], []) and len(first.others) == 1
    second = session_factory(store=LabelStore(tmp_path / "mine"))
    monkeypatch.setattr(second, "_features", lambda *args: pytest.fail("decoded a photo kept with its features"))
    second.restore()
    assert [torch.equal(a, b) for a, b in zip(first.others.values(), second.others.values())] == [True]
