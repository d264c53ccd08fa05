"""copies.py: where `--copy-to` puts a classified file, and the copy (never over a different file, never half)."""

from __future__ import annotations

import shutil

import pytest

from picsort.batch.copies import UNSURE_FOLDER, answer_folder, copy_into
from picsort.foundation.vocabulary import NONE_LABEL


def test_the_folder_is_the_class_unless_unsure_or_none_of_these(make_prediction):
    classes = ["grizzly", "teddy"]
    assert answer_folder(make_prediction(classes)) == "grizzly"
    assert answer_folder(make_prediction(classes, unsure=True)) == UNSURE_FOLDER
    assert answer_folder(make_prediction(classes, unsure=True), "maybe") == "maybe"
    assert answer_folder(make_prediction(classes, unsure=True, none_of_these=True)) == NONE_LABEL


def test_a_different_file_of_the_same_name_is_kept_and_the_same_file_is_not_copied_twice(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "photo.jpg", tmp_path / "b" / "photo.jpg"
    first.write_bytes(b"first photo")
    second.write_bytes(b"second photo")
    out = tmp_path / "sorted" / "grizzly"
    assert copy_into(str(first), out) == out / "photo.jpg"
    assert copy_into(str(second), out) == out / "photo-1.jpg"
    assert copy_into(str(first), out) == out / "photo.jpg"  # a resumed run: already there
    assert sorted(p.name for p in out.iterdir()) == ["photo-1.jpg", "photo.jpg"]
    assert (out / "photo.jpg").read_bytes() == b"first photo" and (out / "photo-1.jpg").read_bytes() == b"second photo"


def test_a_copy_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"photo")

    def half_copy(src, dst):
        open(dst, "wb").write(b"ph")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", half_copy)
    with pytest.raises(OSError, match="No space"):
        copy_into(str(source), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []
