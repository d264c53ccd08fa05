"""Tests for picsort.photos.labels: layout, manifest, atomicity, crashes, undo, zip, concurrency, hostile names."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.images import UnusableImageError
from picsort.photos.labels import DiskFullError, LabelStore, LabelStoreError, ReadOnlyStoreError

REPO_ROOT = Path(__file__).resolve().parents[3]
MANIFEST_KEYS = {"id", "sha256", "label", "predicted", "probabilities", "original_name", "time", "path"}


def png(color=(200, 30, 30), size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def jpeg(color=(30, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(buf, "JPEG")
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest_lines(store: LabelStore) -> list[dict]:
    if not store.manifest_path.exists():
        return []
    return [json.loads(line) for line in store.manifest_path.read_text().splitlines()]


def all_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def image_files(root: Path) -> list[str]:
    """Stored images: files inside class folders (not the manifest or lock)."""
    return [f for f in all_files(root) if "/" in f]


@pytest.fixture
def store(tmp_path) -> LabelStore:
    return LabelStore(tmp_path / "labels", classes=["grizzly", "black", "teddy"])


# --- basic layout ------------------------------------------------------------


def test_save_writes_image_and_manifest_line(store):
    data = png()
    path = store.save(
        data,
        "grizzly",
        predicted="black",
        probabilities={"grizzly": 0.3, "black": 0.6, "teddy": 0.1},
        original_name="IMG_0001.PNG",
    )
    assert path == store.root / "grizzly" / f"{sha(data)}.png"
    assert path.read_bytes() == data
    assert image_files(store.root) == [f"grizzly/{sha(data)}.png"]

    (entry,) = manifest_lines(store)
    assert set(entry) == MANIFEST_KEYS
    assert entry["sha256"] == sha(data)
    assert entry["label"] == "grizzly"
    assert entry["predicted"] == "black"
    assert entry["probabilities"] == {"grizzly": 0.3, "black": 0.6, "teddy": 0.1}
    assert entry["original_name"] == "IMG_0001.PNG"
    assert entry["path"] == f"grizzly/{sha(data)}.png"
    assert store.root / entry["path"] == path
    when = datetime.fromisoformat(entry["time"])
    assert when.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - when) < timedelta(minutes=1)


def test_optional_fields_are_null_and_extension_follows_format(store):
    data = jpeg()
    path = store.save(data, "teddy")
    assert path.name == f"{sha(data)}.jpg"
    (entry,) = manifest_lines(store)
    assert entry["predicted"] is None
    assert entry["probabilities"] is None
    assert entry["original_name"] is None


def test_memoryview_and_numpy_probabilities(store):
    data = png()
    store.save(memoryview(data), "black", probabilities={"black": np.float32(0.75), "teddy": np.float64(0.25)})
    (entry,) = manifest_lines(store)
    assert entry["probabilities"] == {"black": 0.75, "teddy": 0.25}


def test_non_finite_probabilities_are_refused_before_writing(store):
    with pytest.raises(ValueError, match="finite"):
        store.save(png(), "black", probabilities={"black": float("nan")})
    assert not store.root.exists()


def test_store_without_classes_accepts_any_safe_label(tmp_path):
    store = LabelStore(tmp_path / "s")
    path = store.save(png(), "Brown bear (Ursus arctos)")
    assert path.parent.name == "Brown bear (Ursus arctos)"
    assert store.counts() == {"Brown bear (Ursus arctos)": 1}


# --- atomicity -----------------------------------------------------------------


def test_no_temp_files_left(store):
    for i in range(5):
        store.save(png((i, 0, 0)), "teddy")
    leftovers = [f for f in all_files(store.root) if Path(f).name.startswith(".") and f != ".lock"]
    assert leftovers == []
    assert len(image_files(store.root)) == 5


def test_failed_replace_leaves_no_image_and_no_manifest_line(store, monkeypatch):
    store.save(png((1, 1, 1)), "teddy")  # an earlier, successful save

    def broken_replace(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(os, "replace", broken_replace)
    data = png((2, 2, 2))
    with pytest.raises(OSError, match="disk on fire"):
        store.save(data, "grizzly")
    monkeypatch.undo()

    assert image_files(store.root) == [f"teddy/{sha(png((1, 1, 1)))}.png"]
    assert [e["label"] for e in manifest_lines(store)] == ["teddy"]
    assert not (store.root / "grizzly").exists()
    assert store.label_of(sha(data)) is None


def test_failed_move_keeps_the_old_label(store, monkeypatch):
    data = png()
    store.save(data, "teddy")
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("nope")))
    with pytest.raises(OSError):
        store.save(data, "black")
    monkeypatch.undo()
    assert image_files(store.root) == [f"teddy/{sha(data)}.png"]
    assert len(manifest_lines(store)) == 1
    assert store.label_of(sha(data)) == "teddy"


@pytest.mark.parametrize("already_stored", [False, True])
def test_failed_manifest_append_undoes_the_file(store, monkeypatch, already_stored):
    data = png()
    if already_stored:
        store.save(data, "teddy")
    before = image_files(store.root)

    def broken_append(self, line):
        raise OSError("manifest unwritable")

    monkeypatch.setattr(LabelStore, "_append_manifest", broken_append)
    with pytest.raises(OSError, match="manifest unwritable"):
        store.save(data, "black")
    monkeypatch.undo()
    assert image_files(store.root) == before
    assert len(manifest_lines(store)) == (1 if already_stored else 0)


def test_torn_manifest_line_does_not_corrupt_later_entries(store):
    first = png((1, 2, 3))
    store.save(first, "teddy")
    with open(store.manifest_path, "a") as f:
        f.write('{"sha256": "abc", "lab')  # what a crash mid-append could leave
    second = png((4, 5, 6))
    store.save(second, "black")
    assert [e["sha256"] for e in store.entries()] == [sha(first), sha(second)]
    assert store.label_of(sha(second)) == "black"


# --- same image twice ----------------------------------------------------------


def test_same_image_same_class_twice(store):
    data = png()
    first = store.save(data, "black", original_name="a.png")
    second = store.save(data, "black", original_name="copy of a.png")
    assert first == second
    assert image_files(store.root) == [f"black/{sha(data)}.png"]
    assert [e["original_name"] for e in manifest_lines(store)] == ["a.png", "copy of a.png"]
    assert len(store.entries()) == 1


def test_relabelling_moves_the_image(store):
    data = png()
    store.save(data, "black", predicted="black")
    moved = store.save(data, "grizzly", predicted="black")
    assert moved == store.root / "grizzly" / f"{sha(data)}.png"
    assert image_files(store.root) == [f"grizzly/{sha(data)}.png"]
    assert moved.read_bytes() == data
    assert store.label_of(sha(data)) == "grizzly"
    assert store.label_of(sha(data).upper()) == "grizzly"
    assert [e["label"] for e in manifest_lines(store)] == ["black", "grizzly"]
    (latest,) = store.entries()
    assert latest["label"] == "grizzly" and latest["path"] == f"grizzly/{sha(data)}.png"
    assert store.counts() == {"grizzly": 1, "black": 0, "teddy": 0}


def test_entries_latest_per_image_in_decision_order(store):
    a, b = png((1, 1, 1)), png((2, 2, 2))
    store.save(a, "teddy")
    store.save(b, "black")
    store.save(a, "grizzly")
    assert [(e["sha256"], e["label"]) for e in store.entries()] == [(sha(b), "black"), (sha(a), "grizzly")]
    assert store.label_of("0" * 64) is None


def test_hand_made_duplicate_copies_are_resolved(store):
    data = png()
    store.save(data, "teddy")
    (store.root / "black").mkdir()
    (store.root / "black" / f"{sha(data)}.png").write_bytes(data)
    store.save(data, "black")
    assert image_files(store.root) == [f"black/{sha(data)}.png"]


# --- hostile input -------------------------------------------------------------


@pytest.mark.parametrize(
    "label",
    ["../evil", "/etc", "a/b", "..", ".", "", "a\\b", "nul\0byte", ".hidden", "../../tmp/x",
     "manifest.jsonl", " teddy", "line\nbreak", "x" * 300],
)
def test_hostile_labels_are_refused_and_nothing_is_written(tmp_path, label):
    store = LabelStore(tmp_path / "store")  # no class list: only the safety rules apply
    data = png()
    with pytest.raises(ValueError):
        store.save(data, label)
    assert list(tmp_path.rglob("*")) == []
    assert not Path("/etc", f"{sha(data)}.png").exists()


def test_label_must_be_one_of_the_classes(store, tmp_path):
    with pytest.raises(ValueError, match="not one of the classes: grizzly, black, teddy"):
        store.save(png(), "panda")
    assert list(tmp_path.rglob("*")) == []


def test_hostile_class_names_are_refused():
    for bad in (["cat", "../dog"], ["cat", ""], ["cat", "cat"]):
        with pytest.raises(ValueError):
            LabelStore("/tmp/unused", classes=bad)
    with pytest.raises(TypeError):
        LabelStore("/tmp/unused", classes="cat")


def test_hostile_original_name_is_only_recorded(tmp_path):
    store = LabelStore(tmp_path / "store", classes=["cat"])
    data = png()
    path = store.save(data, "cat", original_name="../../etc/passwd")
    assert path == tmp_path / "store" / "cat" / f"{sha(data)}.png"
    assert manifest_lines(store)[0]["original_name"] == "../../etc/passwd"
    outside = [p for p in tmp_path.rglob("*") if not p.is_relative_to(tmp_path / "store")]
    assert outside == []


def test_non_image_is_refused_and_nothing_is_written(store, tmp_path):
    with pytest.raises(UnusableImageError, match="'notes.txt' is not an image"):
        store.save(b"just some text", "teddy", original_name="notes.txt")
    with pytest.raises(UnusableImageError, match="is empty"):
        store.save(b"", "teddy")
    assert list(tmp_path.rglob("*")) == []


def test_bad_label_is_reported_before_bad_image(store, tmp_path):
    with pytest.raises(ValueError, match="class name '../evil'") as info:
        store.save(b"not an image", "../evil")
    assert not isinstance(info.value, UnusableImageError)
    assert list(tmp_path.rglob("*")) == []


# --- counts --------------------------------------------------------------------


def test_counts(store):
    assert store.counts() == {"grizzly": 0, "black": 0, "teddy": 0}
    for i in range(3):
        store.save(png((i, 9, 9)), "teddy")
    store.save(jpeg(), "grizzly")
    # Hidden files (e.g. an in-flight temp file) and non-images don't count;
    # an image someone dropped into a new folder does.
    (store.root / "teddy" / ".abc.png.tmp").write_bytes(b"x")
    (store.root / "teddy" / "notes.txt").write_text("x")
    (store.root / "panda").mkdir()
    (store.root / "panda" / "p.JPG").write_bytes(jpeg())
    assert store.counts() == {"grizzly": 1, "black": 0, "teddy": 3, "panda": 1}


# --- several processes at once ------------------------------------------------

WORKER = textwrap.dedent(
    """
    import io, sys, time
    from pathlib import Path
    from PIL import Image
    from picsort.photos.labels import LabelStore

    root, worker, count, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
    SHARED = int(sys.argv[5])

    def png(color):
        buf = io.BytesIO()
        Image.new("RGB", (16, 16), color).save(buf, "PNG")
        return buf.getvalue()

    store = LabelStore(root, classes=["cat", "dog"])
    own = [png((worker * 50, i * 10, 7)) for i in range(count)]
    # Every worker keeps relabelling these: the hot spot for lost or doubled files.
    shared = [png((1, 2, k)) for k in range(SHARED)]
    deadline = time.monotonic() + 60
    while not go.exists():  # start together to maximise contention
        if time.monotonic() > deadline:
            sys.exit("never told to go")
        time.sleep(0.001)
    for i, data in enumerate(own):
        store.save(data, ("cat", "dog")[i % 2], original_name=f"w{worker}-{i}.png")
        for k, data in enumerate(shared):
            store.save(data, ("cat", "dog")[(worker + i + k) % 2], original_name=f"shared{k}.png")
    """
)


def test_concurrent_writers_in_separate_processes(tmp_path):
    workers, per_worker, shared = 4, 20, 3
    root, go = tmp_path / "store", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")]))}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(root), str(w), str(per_worker), str(go), str(shared)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    time.sleep(0.5)  # let them all import and wait at the gate
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err

    store = LabelStore(root, classes=["cat", "dog"])
    raw_lines = store.manifest_path.read_text().splitlines()
    assert len(raw_lines) == workers * per_worker * (1 + shared)  # one line per save, none lost or merged
    entries = [json.loads(line) for line in raw_lines]  # every line valid JSON
    assert all(set(e) == MANIFEST_KEYS for e in entries)

    unique = {e["sha256"] for e in entries}
    assert len(unique) == workers * per_worker + shared
    files = image_files(root)
    assert len(files) == len(unique)  # every image present exactly once
    latest = {e["sha256"]: e for e in entries}
    for digest, entry in latest.items():
        assert f"{entry['label']}/{digest}.png" in files
        assert store.label_of(digest) == entry["label"]
    assert [Path(f).name for f in all_files(root) if Path(f).name.startswith(".")] == [".lock"]
    assert sum(store.counts().values()) == workers * per_worker + shared


def test_a_model_whose_classes_include_none_is_refused(tmp_path):
    with pytest.raises(ValueError, match="'none' is kept for photos that are none of the classes"):
        LabelStore(tmp_path / "s", classes=["bear", "none"])


# --- none of these ---------------------------------------------------------------


def test_none_of_these_photos_are_kept_apart(store):
    data = png()
    path = store.save(data, NONE_LABEL, predicted="grizzly", probabilities={"grizzly": 0.58, "black": 0.3,
                                                                             "teddy": 0.12})
    assert path == store.root / "none" / f"{sha(data)}.png"
    assert store.label_of(sha(data)) == NONE_LABEL
    assert store.counts() == {"grizzly": 0, "black": 0, "teddy": 0, "none": 1}
    store.save(data, "teddy")  # changed my mind: it is a teddy after all
    assert image_files(store.root) == [f"teddy/{sha(data)}.png"]


# --- undo ----------------------------------------------------------------------


def test_undo_of_a_first_label_removes_the_photo(store):
    data = png()
    store.save(data, "teddy", original_name="truck.png")
    undone = store.undo()
    assert undone["label"] == "teddy" and undone["original_name"] == "truck.png"
    assert image_files(store.root) == []
    assert store.label_of(sha(data)) is None
    assert store.entries() == []
    assert store.counts() == {"grizzly": 0, "black": 0, "teddy": 0}
    assert store.undo() is None


def test_undo_of_a_relabel_restores_the_previous_label(store):
    data = png()
    store.save(data, "grizzly", predicted="grizzly", probabilities={"grizzly": 0.9, "black": 0.05, "teddy": 0.05})
    store.save(data, "black")
    assert store.undo()["label"] == "black"
    assert image_files(store.root) == [f"grizzly/{sha(data)}.png"]
    (entry,) = store.entries()
    assert entry["label"] == "grizzly" and entry["probabilities"]["grizzly"] == 0.9
    assert store.undo()["label"] == "grizzly"  # and once more: the photo leaves the store
    assert image_files(store.root) == []
    assert store.undo() is None


def test_undo_takes_back_only_this_windows_labels(store):
    other_window = LabelStore(store.root, classes=store.classes)
    mine, theirs = png((1, 1, 1)), png((2, 2, 2))
    store.save(mine, "black")
    other_window.save(theirs, "teddy")
    assert store.undo()["sha256"] == sha(mine)
    assert image_files(store.root) == [f"teddy/{sha(theirs)}.png"]
    assert store.undo() is None
    # a fresh window (a new kernel) has nothing to undo
    assert LabelStore(store.root, classes=store.classes).undo() is None


def test_undo_keeps_a_later_label_someone_else_gave(store):
    other_window = LabelStore(store.root, classes=store.classes)
    data = png()
    store.save(data, "grizzly")
    other_window.save(data, "black")
    store.undo()
    assert store.label_of(sha(data)) == "black"
    assert image_files(store.root) == [f"black/{sha(data)}.png"]


# --- taking the labels away as a zip ---------------------------------------------


def test_write_zip_holds_the_photos_in_their_folders_and_the_manifest(store):
    a, b, c = png((1, 1, 1)), jpeg(), png((3, 3, 3))
    store.save(a, "grizzly")
    store.save(b, NONE_LABEL)
    store.save(c, "teddy")
    store.undo()  # c leaves the store, so it must not be in the zip
    buffer = io.BytesIO()
    assert store.write_zip(buffer) == 2
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        assert sorted(archive.namelist()) == sorted([f"grizzly/{sha(a)}.png", f"none/{sha(b)}.jpg", "manifest.jsonl"])
        assert archive.read(f"grizzly/{sha(a)}.png") == a
        assert archive.read("manifest.jsonl") == store.manifest_path.read_bytes()


def test_write_zip_of_an_empty_store(tmp_path):
    buffer = io.BytesIO()
    assert LabelStore(tmp_path / "nothing-yet").write_zip(buffer) == 0
    assert zipfile.ZipFile(buffer).namelist() == ["manifest.jsonl"]


# --- crashes: a process killed at the worst moment, then the store opened again --

CRASH = textwrap.dedent(
    """
    import io, os, signal, sys
    from PIL import Image
    import picsort.foundation.files
    from picsort.photos.labels import LabelStore

    root, moment = sys.argv[1], sys.argv[2]
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buf, "PNG")
    data = buf.getvalue()
    store = LabelStore(root, classes=["grizzly", "black", "teddy"])
    if moment in ("mid-relabel", "mid-undo"):
        store.save(data, "grizzly")

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if moment == "writing the image":
        picsort.foundation.files.os.replace = die
    elif moment == "mid-undo":
        LabelStore._apply = die
    else:
        LabelStore._append_manifest = die
    if moment == "mid-undo":
        store.undo()
    else:
        store.save(data, "black")
    """
)


@pytest.mark.parametrize(
    ("moment", "label", "files", "repair"),
    [("writing the image", None, [], "temporary files removed"),  # only a hidden temporary file was written
     ("image written, line not", "black", ["black"], "manifest lines added"),  # saved: keep it, record it
     ("mid-relabel", "grizzly", ["grizzly"], "images moved"),  # moved to black, no line: the manifest wins
     ("mid-undo", None, [], "images removed")],  # undo recorded, photo not yet removed: the manifest wins
)
def test_the_store_repairs_itself_when_opened_after_a_crash(tmp_path, moment, label, files, repair):
    root = tmp_path / "store"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", CRASH, str(root), moment], env=env, capture_output=True,
                          timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    data = png((200, 30, 30))

    store = LabelStore(root, classes=["grizzly", "black", "teddy"])
    assert store.label_of(sha(data)) == label
    assert image_files(root) == [f"{folder}/{sha(data)}.png" for folder in files]
    assert [f for f in all_files(root) if Path(f).name.startswith(".")] == [".lock"]  # no temporary file left
    for entry in store.entries():  # every line points at its image, every image has a line
        assert (root / entry["path"]).read_bytes() == data
    assert len(store.entries()) == len(files)
    assert {name: count for name, count in store.repairs.items() if count} == {repair: 1}
    assert LabelStore(root).repairs == dict.fromkeys(store.repairs, 0)  # nothing left to repair


# --- a disk that refuses --------------------------------------------------------

DISK = textwrap.dedent(
    """
    import io, os, subprocess, sys
    from PIL import Image
    from picsort.photos.labels import LabelStore, LabelStoreError

    mount, state = sys.argv[1], sys.argv[2]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", mount], check=True)
    store = LabelStore(mount + "/labels", classes=["black", "grizzly"])
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(buf, "PNG")  # ~12 KB: room for a few
    if state == "full":
        with open(mount + "/filler", "wb") as filler:
            try:
                filler.write(b"x" * 1_000_000)
            except OSError:
                pass
    else:
        store.save(buf.getvalue(), "black")
        subprocess.run(["mount", "-o", "remount,ro", mount], check=True)
        # opening a store on a read-only disk works (reading needs no writes, repairs are skipped)
        assert [e["label"] for e in LabelStore(mount + "/labels").entries()] == ["black"]
        buf = io.BytesIO()
        Image.effect_noise((64, 64), 90).convert("RGB").save(buf, "PNG")
    try:
        store.save(buf.getvalue(), "grizzly")
    except LabelStoreError as exc:
        print(type(exc).__name__)
        print(exc)
        print(sorted(os.listdir(mount + "/labels")))
    """
)


@pytest.mark.parametrize(("state", "error", "message"), [
    ("full", DiskFullError, "The disk is full: this label was not saved"),
    ("read-only", ReadOnlyStoreError, "cannot be written to (it is read-only): this label was not saved"),
])
def test_a_full_or_read_only_disk_gets_its_own_message(tmp_path, state, error, message):
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small private disk")
    mount = tmp_path / "disk"
    mount.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    # A private mount namespace: the small disk vanishes with the process, whatever happens.
    proc = subprocess.run(["unshare", "--map-root-user", "--mount", sys.executable, "-c", DISK, str(mount), state],
                          env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and "unshare" in proc.stderr and "Operation not permitted" in proc.stderr:
        pytest.skip(f"this machine does not allow private mounts: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    name, text, folders = proc.stdout.splitlines()
    assert name == error.__name__ and issubclass(error, LabelStoreError)
    assert message in text
    assert "grizzly" not in folders  # nothing half-saved left behind


def test_a_store_with_a_limit_refuses_a_new_photo_past_it_and_names_itself_without_its_path(tmp_path):
    store = LabelStore(tmp_path / "mine", ["black", "grizzly"], shown_as="your Teach folder", max_photos=2)
    first, second, third = jpeg((10, 10, 10)), jpeg((100, 100, 100)), jpeg((200, 200, 200))
    store.save(first, "black")
    store.save(second, "black")
    with pytest.raises(LabelStoreError, match="^Your Teach folder holds at most 2 photos: this one was not saved"
                       ) as refused:
        store.save(third, "grizzly")
    assert str(tmp_path) not in str(refused.value)
    store.save(second, "grizzly")  # a photo held already may be relabelled
    assert store.counts() == {"black": 1, "grizzly": 1}
    store.remove(hashlib.sha256(first).hexdigest())  # and one removed makes room
    store.save(third, "grizzly")
    assert store.counts() == {"black": 0, "grizzly": 2}
