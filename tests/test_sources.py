"""Local photo folders, the app's label store and its zip give the layout the notebook trains on."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from picsort.labels import NONE_LABEL
from picsort.sources import class_folders, gather_from_folder, gather_labels, label_store_folder, labels_to_review
from tests.conftest import make_synthetic_photos


def test_gather_from_folder_copies_per_class_named_by_content_hash(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=5)
    (source / "black" / "notes.txt").write_text("not a photo")
    (source / "black" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    counts = gather_from_folder(source, tmp_path / "data", images_per_class=3)
    assert counts == {"black": 3, "grizzly": 3, "teddy": 3}
    for file in (tmp_path / "data").glob("*/*"):
        assert file.name == hashlib.sha256(file.read_bytes()).hexdigest()[:16] + ".jpg"
    # copying again adds nothing, and the originals are untouched
    assert gather_from_folder(source, tmp_path / "data", images_per_class=3) == counts
    assert len(list((source / "black").iterdir())) == 7


def test_gather_from_folder_names_missing_classes(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=2)
    with pytest.raises(FileNotFoundError, match="polar"):
        gather_from_folder(source, tmp_path / "data", classes=["black", "polar"])


def test_a_folder_without_class_folders_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="sub-folder"):
        class_folders(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no sub-folders with images"):
        class_folders(tmp_path / "flat")


def test_label_store_folder_is_a_data_source(tmp_path):
    from picsort.labels import LabelStore

    photos = make_synthetic_photos(tmp_path / "photos", per_class=2)
    store = LabelStore(tmp_path / "labels", classes=["black", "grizzly", "teddy"])
    store.save((photos / "teddy" / "000.jpg").read_bytes(), "teddy")
    assert gather_from_folder(store.root, tmp_path / "data") == {"teddy": 1}


# --- the app's labels into the training data ---------------------------------------------------------------

def _photo(photos, name="teddy", number=0) -> bytes:
    return (photos / name / f"{number:03d}.jpg").read_bytes()


def _data_files(data) -> list[str]:
    return sorted(f"{file.parent.name}/{file.name}" for file in data.glob("*/*"))


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    from picsort.labels import LabelStore

    monkeypatch.setenv("PICSORT_CACHE", str(tmp_path / "cache"))
    photos = make_synthetic_photos(tmp_path / "photos", per_class=3)
    return photos, LabelStore(tmp_path / "labels", classes=["black", "grizzly", "teddy"]), tmp_path / "data"


def test_a_relabel_between_two_gathers_leaves_one_copy_under_the_latest_label(labelled):
    photos, store, data = labelled
    picture = _photo(photos)
    name = hashlib.sha256(picture).hexdigest()[:16] + ".jpg"
    store.save(picture, "grizzly")
    assert gather_from_folder(store.root, data) == {"grizzly": 1}  # the notebook's own call
    assert _data_files(data) == [f"grizzly/{name}"]
    store.save(picture, "black")
    assert gather_from_folder(store.root, data) == {"black": 1}
    assert _data_files(data) == [f"black/{name}"]


def test_a_relabel_also_moves_the_photo_gathered_from_another_source(labelled):
    photos, store, data = labelled
    gather_from_folder(photos, data)
    picture = _photo(photos, "teddy", 1)
    store.save(picture, "grizzly")
    report = gather_labels(store.root, data)
    name = hashlib.sha256(picture).hexdigest()[:16] + ".jpg"
    assert (data / "grizzly" / name).exists() and not (data / "teddy" / name).exists()
    assert report.removed == 1 and report.counts == {"grizzly": 1}


def test_none_of_these_photos_are_never_a_class_and_leave_the_data(labelled):
    photos, store, data = labelled
    gather_from_folder(photos, data)  # the truck was downloaded as a teddy...
    truck = _photo(photos, "teddy", 2)
    store.save(truck, NONE_LABEL, predicted="grizzly", probabilities={"black": 0.2, "grizzly": 0.58, "teddy": 0.22})
    report = gather_labels(store.root, data)
    assert report.none_of_these == 1 and report.counts == {}
    assert not (data / NONE_LABEL).exists()
    assert hashlib.sha256(truck).hexdigest()[:16] + ".jpg" not in {f.name for f in data.glob("*/*")}
    # ...and a plain class-folder source never makes "none" a class either
    (photos / NONE_LABEL).mkdir()
    (photos / NONE_LABEL / "truck.jpg").write_bytes(truck)
    assert sorted(class_folders(photos)) == ["black", "grizzly", "teddy"]


def test_an_undone_label_takes_back_only_the_copy_gathering_made(labelled):
    photos, store, data = labelled
    gather_from_folder(photos, data)
    mine, downloaded = _photo(photos, "black", 0), _photo(photos, "teddy", 0)
    name = hashlib.sha256(mine).hexdigest()[:16] + ".jpg"
    (photos / "black" / "000.jpg").unlink()  # so only the label store brings this one
    (data / "black" / name).unlink()
    store.save(mine, "grizzly")
    store.save(downloaded, "teddy")  # already in the data, under the same class
    gather_labels(store.root, data)
    assert (data / "grizzly" / name).exists()
    store.undo()
    store.undo()
    report = gather_labels(store.root, data)
    assert report.removed == 1
    assert not (data / "grizzly" / name).exists()
    assert (data / "teddy" / (hashlib.sha256(downloaded).hexdigest()[:16] + ".jpg")).exists()


def test_a_labels_zip_is_a_training_source(labelled, tmp_path):
    photos, store, data = labelled
    store.save(_photo(photos, "black"), "black")
    store.save(_photo(photos, "grizzly"), NONE_LABEL)
    zipped = tmp_path / "labels.zip"
    with open(zipped, "wb") as file:
        store.write_zip(file)
    assert gather_from_folder(zipped, data) == {"black": 1}
    assert _data_files(data) == [f"black/{hashlib.sha256(_photo(photos, 'black')).hexdigest()[:16]}.jpg"]
    assert gather_from_folder(zipped, data) == {"black": 1}  # again: unpacked once, nothing new


def test_a_hand_made_zip_cannot_write_outside_its_folder(labelled, tmp_path):
    photos, _, data = labelled
    zipped = tmp_path / "evil.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("manifest.jsonl", "")
        archive.writestr("../evil.jpg", _photo(photos))
        archive.writestr("black/../../evil2.jpg", _photo(photos))
        archive.writestr(".hidden/x.jpg", _photo(photos))
    folder = label_store_folder(zipped)
    assert sorted(p.name for p in folder.rglob("*")) == ["manifest.jsonl"]
    assert not (tmp_path / "evil.jpg").exists() and not list(tmp_path.rglob("evil2.jpg"))
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="no manifest.jsonl"):
        label_store_folder(tmp_path / "notes.zip")


def test_labels_wait_for_review_until_gathered(labelled):
    photos, store, data = labelled
    store.save(_photo(photos, "black"), "grizzly", predicted="black",
               probabilities={"black": 0.8, "grizzly": 0.15, "teddy": 0.05}, original_name="IMG_1.jpg")
    store.save(_photo(photos, "teddy"), NONE_LABEL, predicted="teddy",
               probabilities={"black": 0.1, "grizzly": 0.3, "teddy": 0.6})
    store.save(_photo(photos, "grizzly"), "black")  # no guess recorded
    pending = labels_to_review(store.root, data)
    assert [(p.label, p.predicted, p.confidence) for p in pending] == [
        ("black", None, None), ("grizzly", "black", 0.8), (NONE_LABEL, "teddy", 0.6)]
    assert pending[1].original_name == "IMG_1.jpg" and pending[1].path.read_bytes() == _photo(photos, "black")
    gather_labels(store.root, data, skip=[pending[0].sha256])  # rejected on review: stays pending
    assert [p.label for p in labels_to_review(store.root, data)] == ["black"]
    gather_labels(store.root, data)
    assert labels_to_review(store.root, data) == []
    store.save(_photo(photos, "black"), "teddy")  # relabelled in the app: to review again
    assert [(p.label, p.predicted) for p in labels_to_review(store.root, data)] == [("teddy", None)]
