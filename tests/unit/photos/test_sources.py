"""Local photo folders, the app's label store and its zip give the layout the notebook trains on."""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from pathlib import Path

import pytest

from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.sources import (
    class_folders,
    gather_from_folder,
    gather_labels,
    label_store_folder,
    labels_to_review,
)
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


def test_a_photo_cut_short_is_not_gathered(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=3)
    whole = (source / "black" / "000.jpg").read_bytes()
    (source / "black" / "cut.jpg").write_bytes(whole[: len(whole) // 2])  # a header that reads, half a picture
    assert gather_from_folder(source, tmp_path / "data") == {"black": 3, "grizzly": 3, "teddy": 3}


def test_gather_from_folder_names_missing_classes(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=2)
    with pytest.raises(FileNotFoundError, match="polar") as raised:
        gather_from_folder(source, tmp_path / "data", classes=["black", "polar"])
    # ... and how to train the categories the folder has, without editing the notebook
    assert "PICSORT_CATEGORIES=black,grizzly,teddy" in str(raised.value)


def test_categories_from_text_reads_names_and_search_terms():
    from picsort.photos.sources import categories_from_text

    assert categories_from_text("church, gas_pump=gas  pump") == {"church": "church", "gas_pump": "gas pump"}
    assert categories_from_text("golf_ball,parachute,") == {"golf_ball": "golf ball", "parachute": "parachute"}


@pytest.mark.parametrize("text, problem", [("church", "at least two"), ("a,a", "more than once"),
                                           ("a,../etc", "must not contain '/'"), ("a,b\nc", "printable"),
                                           ("a,none", "none of the classes"), ("a,=term", "")])
def test_categories_from_text_refuses_what_cannot_be_a_folder(text, problem):
    from picsort.photos.sources import categories_from_text

    with pytest.raises(ValueError, match="PICSORT_CATEGORIES") as raised:
        categories_from_text(text)
    assert problem in str(raised.value)


def test_a_folder_without_class_folders_says_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="sub-folder"):
        class_folders(tmp_path / "nowhere")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no sub-folders with images"):
        class_folders(tmp_path / "flat")


def test_label_store_folder_is_a_data_source(tmp_path):
    from picsort.photos.labels import LabelStore

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
    from picsort.photos.labels import LabelStore

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
    assert sorted(p.name for p in folder.rglob("*")) == [".refused.json", "manifest.jsonl"]
    assert not (tmp_path / "evil.jpg").exists() and not list(tmp_path.rglob("evil2.jpg"))
    report = gather_labels(zipped, data)
    assert report.counts == {} and len(report.refused) == 3
    assert {reason.split(":")[0] for reason in report.refused} == {
        "../evil.jpg", "black/../../evil2.jpg", ".hidden/x.jpg"}
    with zipfile.ZipFile(tmp_path / "notes.zip", "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match="no manifest.jsonl"):
        label_store_folder(tmp_path / "notes.zip")


# --- hostile labels zips: data, never instructions -----------------------------------------------------------

def _entry(digest: str, label: str, path: str) -> str:
    return json.dumps({"id": digest[:8], "sha256": digest, "label": label, "predicted": None,
                       "probabilities": None, "original_name": None, "time": "2026-12-02T00:00:00Z",
                       "path": path}) + "\n"


def _honest_zip(photos, tmp_path, name="honest.zip", extra=()) -> tuple:
    """A labels zip as the app writes it (one black, one grizzly photo), plus `extra` (member, bytes) pairs."""
    zipped = tmp_path / name
    lines, members = "", []
    for label in ("black", "grizzly"):
        content = _photo(photos, label)
        digest = hashlib.sha256(content).hexdigest()
        lines += _entry(digest, label, f"{label}/{digest}.jpg")
        members.append((f"{label}/{digest}.jpg", content))
    with zipfile.ZipFile(zipped, "w") as archive:
        for member, content in [*members, *extra]:
            if member != "manifest.jsonl":
                archive.writestr(member, content)
        archive.writestr("manifest.jsonl", lines + "".join(
            line for member, line in extra if member == "manifest.jsonl"))
    return zipped, lines


def _files_outside(root, *allowed) -> list:
    """Files under `root` that are not inside one of the `allowed` folders."""
    return sorted(str(f.relative_to(root)) for f in root.rglob("*")
                  if f.is_file() and not any(a in f.parents for a in allowed))


@pytest.mark.parametrize("path", ["/tmp/planted-by-picsort-test.py", "../../../planted.py",
                                  "black/../../planted.py", "startup/00-picsort.py"])
def test_a_manifest_path_cannot_name_a_place_outside_the_store(labelled, tmp_path, path):
    """The issue's exploit: an entry whose path points outside the store, e.g. at IPython's startup folder."""
    photos, _, data = labelled
    content = b"print('planted')\n"
    digest = hashlib.sha256(content).hexdigest()
    zipped = tmp_path / "hostile.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr(f"black/{digest}.jpg", content)  # refused as well: not an image, named for its hash
        honest = _photo(photos, "teddy")
        honest_digest = hashlib.sha256(honest).hexdigest()
        archive.writestr(f"teddy/{honest_digest}.jpg", honest)
        archive.writestr("manifest.jsonl", _entry(digest, "black", path)
                         + _entry(honest_digest, "teddy", f"teddy/{honest_digest}.jpg"))
    before = set(tmp_path.parent.iterdir())
    report = gather_labels(zipped, data)
    assert report.counts == {"teddy": 1}  # the honest photo still trains
    assert any("manifest.jsonl line 1" in reason for reason in report.refused)
    assert "refused" in str(report)
    assert not Path("/tmp/planted-by-picsort-test.py").exists()
    assert set(tmp_path.parent.iterdir()) == before
    assert _files_outside(tmp_path, data, tmp_path / "cache", tmp_path / "photos", tmp_path / "labels") == [
        "hostile.zip"]


def test_a_manifest_path_cannot_copy_a_local_file_into_the_training_data(labelled, tmp_path):
    photos, _, data = labelled
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(_photo(photos, "black", 2))  # a readable local file, even a real photo
    digest = hashlib.sha256(secret.read_bytes()).hexdigest()
    lines = _entry(digest, "black", str(secret)) + _entry(digest, "black", f"black/../../../{secret.name}")
    zipped = tmp_path / "hostile.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("manifest.jsonl", lines)
    report = gather_labels(zipped, data)
    assert report.counts == {} and len(report.refused) == 2
    assert _data_files(data) == []


def test_bytes_must_hash_to_their_name_and_be_an_image(labelled, tmp_path):
    photos, _, data = labelled
    wrong = "0" * 64
    not_image = b"#!/bin/sh\necho planted\n"
    not_image_digest = hashlib.sha256(not_image).hexdigest()
    zipped, _ = _honest_zip(photos, tmp_path, extra=[
        (f"teddy/{wrong}.jpg", _photo(photos, "teddy")),
        (f"teddy/{not_image_digest}.jpg", not_image),
        ("manifest.jsonl", _entry(wrong, "teddy", f"teddy/{wrong}.jpg")),
        ("manifest.jsonl", _entry(not_image_digest, "teddy", f"teddy/{not_image_digest}.jpg"))])
    report = gather_labels(zipped, data)
    assert report.counts == {"black": 1, "grizzly": 1}
    reasons = "\n".join(report.refused)
    assert "do not hash to its name" in reasons and "not a usable image" in reasons
    assert report.missing == 2  # their manifest lines name photos the zip did not give
    assert not (data / "teddy").exists()


def test_a_symlink_member_is_refused(labelled, tmp_path):
    photos, _, data = labelled
    content = _photo(photos, "teddy")
    digest = hashlib.sha256(content).hexdigest()
    link = zipfile.ZipInfo(f"teddy/{digest}.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    zipped, _ = _honest_zip(photos, tmp_path, extra=[(link, "/etc/passwd")])
    report = gather_labels(zipped, data)
    assert report.counts == {"black": 1, "grizzly": 1}
    assert any("is a link" in reason for reason in report.refused)


def test_a_zip_bomb_stops_at_the_size_limit(labelled, tmp_path, monkeypatch):
    import picsort.photos.sources as sources

    photos, _, data = labelled
    monkeypatch.setattr(sources, "_MAX_ZIP_BYTES", 3 * 1024 * 1024)  # the real limit is 16 GiB: same rule
    zeros = b"\0" * (2 * 1024 * 1024)
    members = [(f"black/{hashlib.sha256(zeros + bytes([i])).hexdigest()}.jpg", zeros + bytes([i]))
               for i in range(3)]
    zipped = tmp_path / "bomb.zip"
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for member, content in members:
            archive.writestr(member, content)
        archive.writestr("manifest.jsonl", "")
    assert zipped.stat().st_size < 100_000
    with pytest.raises(ValueError, match="unpacks to more than"):
        gather_labels(zipped, data)
    assert not list((tmp_path / "cache").rglob("*.jpg"))  # nothing half-unpacked left behind


def test_a_zip_of_ten_thousand_entries_is_refused_entry_by_entry(labelled, tmp_path):
    photos, _, data = labelled
    junk = [(f"black/{i:05d}.txt", b"x") for i in range(10_000)]
    zipped, _ = _honest_zip(photos, tmp_path, extra=junk)
    report = gather_labels(zipped, data)
    assert report.counts == {"black": 1, "grizzly": 1}
    assert len(report.refused) == 10_000
    assert "… and 9995 more refused" in str(report)


def test_too_many_entries_are_refused_with_a_message(labelled, tmp_path, monkeypatch):
    import picsort.photos.sources as sources

    photos, _, data = labelled
    monkeypatch.setattr(sources, "_MAX_ZIP_MEMBERS", 100)
    zipped, _ = _honest_zip(photos, tmp_path, extra=[(f"black/{i}.txt", b"x") for i in range(200)])
    with pytest.raises(ValueError, match="more than a labels zip can"):
        gather_labels(zipped, data)


def test_a_hostile_manifest_in_a_label_folder_moves_nothing_out(tmp_path):
    """Opening a store runs check(), which moves photos to where the manifest says: only inside the store."""
    from picsort.photos.labels import LabelStore

    photos = make_synthetic_photos(tmp_path / "photos", per_class=1)
    store = LabelStore(tmp_path / "labels")
    stored = store.save(_photo(photos, "black"), "black")
    digest = stored.stem
    with open(store.manifest_path, "a") as manifest:
        manifest.write(_entry(digest, "black", "../../outside.jpg"))
        manifest.write(_entry(digest, "grizzly", "/tmp/outside-picsort-test.jpg"))
    reopened = LabelStore(tmp_path / "labels")
    assert stored.is_file()
    assert not (tmp_path / "outside.jpg").exists() and not Path("/tmp/outside-picsort-test.jpg").exists()
    assert [e["label"] for e in reopened.entries()] == ["black"]
    assert len(reopened.refused_lines()) == 2


def test_an_honest_labels_zip_from_the_app_trains(labelled, tmp_path):
    photos, store, data = labelled
    for label in ("black", "grizzly", "teddy"):
        for number in range(3):
            store.save(_photo(photos, label, number), label)
    zipped = tmp_path / "labels.zip"
    with open(zipped, "wb") as file:
        store.write_zip(file)
    report = gather_labels(zipped, data)
    assert report.counts == {"black": 3, "grizzly": 3, "teddy": 3} and report.refused == []


def test_labels_wait_for_review_until_gathered(labelled):
    photos, store, data = labelled
    store.save(_photo(photos, "black"), "grizzly", predicted="black",
               probabilities={"black": 0.8, "grizzly": 0.15, "teddy": 0.05}, original_name="IMG_1.jpg")
    store.save(_photo(photos, "teddy"), NONE_LABEL, predicted="teddy",
               probabilities={"black": 0.1, "grizzly": 0.3, "teddy": 0.6})
    store.save(_photo(photos, "grizzly"), "black")  # no answer recorded
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
