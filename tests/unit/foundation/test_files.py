"""files.py: a kept file is written whole or not at all, and readable by others."""

from __future__ import annotations

import os
import stat

import pytest

from picsort.foundation.files import copy_atomically, is_temporary, write_atomically


def test_write_atomically_replaces_the_file_whole_and_others_can_read_it(tmp_path):
    path = tmp_path / "model.json"
    path.write_bytes(b"old")
    assert write_atomically(path, memoryview(b"new contents")) == path
    assert path.read_bytes() == b"new contents"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["model.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "manifest.jsonl"
    path.write_bytes(b"old")
    seen = []

    def broken_replace(source, target):
        seen.append(os.path.basename(source))
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomically(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.jsonl"]
    assert seen and all(is_temporary(name) for name in seen)  # what it writes meanwhile is named as temporary
    assert not is_temporary("manifest.jsonl") and not is_temporary(".lock")


def test_copy_atomically_replaces_the_file_whole_with_the_source_s_mode(tmp_path):
    source, path = tmp_path / "photo.jpg", tmp_path / "copy.jpg"
    source.write_bytes(b"new photo")
    os.chmod(source, 0o600)
    path.write_bytes(b"old")
    assert copy_atomically(source, path) == path
    assert path.read_bytes() == b"new photo" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.jpg", "photo.jpg"]  # no temporary file left


def test_a_copy_that_must_not_overwrite_keeps_the_file_already_there(tmp_path):
    from picsort.foundation.files import copy_atomically

    source, target = tmp_path / "new.jpg", tmp_path / "there.jpg"
    source.write_bytes(b"new photo")
    target.write_bytes(b"someone else's photo")
    with pytest.raises(FileExistsError):
        copy_atomically(source, target, overwrite=False)
    assert target.read_bytes() == b"someone else's photo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.jpg", "there.jpg"]  # no temporary left
    assert copy_atomically(source, tmp_path / "free.jpg", overwrite=False).read_bytes() == b"new photo"
