"""Local photo folders and recorded cleaning decisions give the layout the notebook trains on."""

from __future__ import annotations

import hashlib
import json

import pytest

from picsort.cleaning import apply_cleaning
from picsort.sources import class_folders, gather_from_folder
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


def test_recorded_cleaning_deletes_and_moves_by_hash(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=3)
    data = tmp_path / "data"
    gather_from_folder(source, data)
    black = sorted((data / "black").iterdir())
    decisions = tmp_path / "cleaning.json"
    decisions.write_text(json.dumps({"delete": {black[0].stem: "not a bear"},
                                     "move": {black[1].stem: "grizzly"}, }))
    assert apply_cleaning(data, decisions) == {"deleted": 1, "moved": 1, "not found": 0}
    assert not black[0].exists() and (data / "grizzly" / black[1].name).exists()
    assert apply_cleaning(data, decisions) == {"deleted": 0, "moved": 1, "not found": 1}  # same end state
