"""copies.py: where `--copy-to` puts a classified file, and the copy (never over a different file, whole or absent)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from picsort.batch.copies import UNSURE_FOLDER, answer_folder, copy_into
from picsort.foundation.files import is_temporary
from picsort.foundation.vocabulary import NONE_LABEL

SRC = Path(__file__).resolve().parents[3] / "src"


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


def test_a_copy_is_the_whole_file_flushed_to_disk_with_the_source_s_mode_and_times(tmp_path, monkeypatch):
    source = tmp_path / "photo.jpg"
    source.write_bytes(bytes(range(256)) * 9000)  # larger than one chunk of the copy
    os.chmod(source, 0o640)
    os.utime(source, ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    copy = copy_into(str(source), tmp_path / "out")
    assert copy.read_bytes() == source.read_bytes()
    assert stat.S_IMODE(copy.stat().st_mode) == 0o640 and copy.stat().st_mtime_ns == source.stat().st_mtime_ns
    assert len(synced) == 2  # the copy's bytes, then its folder's new entry
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["photo.jpg"]


def test_a_copy_that_fails_half_way_leaves_nothing(tmp_path, monkeypatch):
    source = tmp_path / "photo.jpg"
    source.write_bytes(b"photo")

    def half_copy(src, dst, length=0):
        dst.write(b"ph")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfileobj", half_copy)
    with pytest.raises(OSError, match="No space"):
        copy_into(str(source), tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


KILLED_MID_COPY = """
import shutil, sys, time
from pathlib import Path
from picsort.batch.copies import copy_into

def half_copy(src, dst, length=0):
    dst.write(src.read(1000))
    dst.flush()
    Path(sys.argv[3]).touch()  # half written: kill me now
    time.sleep(60)

shutil.copyfileobj = half_copy
copy_into(sys.argv[1], Path(sys.argv[2]))
"""


def test_a_copy_killed_half_way_is_absent_not_half_there(tmp_path):
    """kill -9 in the middle of a copy: the photo's name is not there at all (only a hidden temporary file, which
    folder scans skip), so a resumed run copies it again, whole."""
    source, out, half = tmp_path / "photo.jpg", tmp_path / "out", tmp_path / "half-written"
    source.write_bytes(b"x" * 5000)
    process = subprocess.Popen([sys.executable, "-c", KILLED_MID_COPY, str(source), str(out), str(half)],
                               env={**os.environ, "PYTHONPATH": str(SRC)})
    try:
        deadline = time.monotonic() + 60
        while not half.exists():
            assert process.poll() is None and time.monotonic() < deadline, "the copy never started"
            time.sleep(0.01)
    finally:
        process.kill()
        process.wait()
    assert not (out / "photo.jpg").exists()
    assert all(is_temporary(p.name) for p in out.iterdir())
    assert copy_into(str(source), out).read_bytes() == source.read_bytes()  # the resumed run


def test_a_file_another_worker_names_between_the_check_and_the_copy_is_kept(tmp_path, monkeypatch):
    """Two workers copying different photos of one name into one folder: the later never replaces the earlier."""
    from picsort.batch import copies

    source = tmp_path / "mine" / "photo.jpg"
    source.parent.mkdir()
    source.write_bytes(b"my photo")
    folder = tmp_path / "sorted"
    real_copy = copies.copy_atomically

    def other_worker_first(src, target, **options):
        if not (folder / "photo.jpg").exists():
            (folder / "photo.jpg").write_bytes(b"the other worker's photo")  # lands after copy_into's check
        return real_copy(src, target, **options)

    monkeypatch.setattr(copies, "copy_atomically", other_worker_first)
    copied = copies.copy_into(str(source), folder)
    assert (folder / "photo.jpg").read_bytes() == b"the other worker's photo"
    assert copied == folder / "photo-1.jpg" and copied.read_bytes() == b"my photo"
