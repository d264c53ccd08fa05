"""Tests for the `picsort classify` command (picsort.cli): what a user running it sees, end to end."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from picsort.batch.results import results_header
from picsort.batch.sort import UNSURE_FOLDER, classify_files, find_images
from picsort.cli import main
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference.classify import load_model
from picsort.photos.images import UnusableImageError
from tests.conftest import IN_CI, stop_process_group

REPO = Path(__file__).resolve().parents[2]
GOOD_TOP = ("a.jpg", "b.jpg", "c.jpg")  # real photos directly in the folder
GOOD_NESTED = ("sub/d.jpg", "sub/deeper/e.jpg")
BAD = {"empty.jpg": "is empty", "text.jpg": "is not an image", "truncated.jpg": "is damaged or incomplete"}


def source_photos(photos, count: int) -> list[Path]:
    """`count` photos from the fixture's class folders, taken round-robin so every class is in."""
    folder, _ = photos
    by_class = [sorted(d.glob("*.jpg")) for d in sorted(folder.iterdir()) if d.is_dir()]
    mixed = [files[i] for i in range(max(map(len, by_class))) for files in by_class if i < len(files)]
    assert len(mixed) >= count
    return mixed[:count]


@pytest.fixture(scope="module")
def mixed(photos, tmp_path_factory) -> Path:
    """A folder of real photos (some nested), bad files named .jpg, and a .txt a scan must ignore."""
    root = tmp_path_factory.mktemp("mixed")
    for name, source in zip(GOOD_TOP + GOOD_NESTED, source_photos(photos, 5)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, root / name)
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a picture, just words\n")
    whole = (root / "a.jpg").read_bytes()
    (root / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("a file a folder scan must leave alone\n")
    return root


def run(*args, capsys=None) -> tuple[int, str]:
    """Run the CLI in this process (the model stays loaded); returns (exit status, stdout)."""
    status = main(["classify", *map(str, args)])
    return status, (capsys.readouterr().out if capsys else "")


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def cli(*args, cwd=None, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m picsort` in a fresh process."""
    return subprocess.run([sys.executable, "-m", "picsort", *map(str, args)], capture_output=True, text=True,
                          env=subprocess_env(), cwd=cwd, timeout=300, **kwargs)


def read_rows(out: Path) -> list[dict]:
    with open(out, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def names(rows, root: Path) -> list[str]:
    return sorted(Path(row["path"]).relative_to(root).as_posix() for row in rows)


# ---- the CSV -----------------------------------------------------------------------------------------------


def test_rows_one_per_image_file_with_the_right_columns(mixed, tmp_path, capsys):
    model = load_model()
    out = tmp_path / "results.csv"
    status, summary = run(mixed, "--out", out, capsys=capsys)
    assert status == 0
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["path", "class", "closest", "probability", *(f"p_{c}" for c in model.classes), "unsure",
                      "none_of_these", "error"]
    assert header == results_header(model.classes)
    rows = read_rows(out)
    # Not recursive: the top level's images and bad .jpg files; notes.txt and the sub-folders are left out.
    assert names(rows, mixed) == sorted(GOOD_TOP + tuple(BAD))
    for row in rows:
        name = Path(row["path"]).name
        if name in BAD:
            assert BAD[name] in row["error"] and name in row["error"]
            assert row["class"] == row["closest"] == row["probability"] == ""
            assert row["unsure"] == row["none_of_these"] == "false"
            assert all(row[f"p_{c}"] == "" for c in model.classes)
            continue
        assert row["error"] == ""
        probabilities = {c: float(row[f"p_{c}"]) for c in model.classes}
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert row["closest"] == max(probabilities, key=probabilities.get)
        assert row["class"] == (NONE_LABEL if row["none_of_these"] == "true" else row["closest"])
        assert float(row["probability"]) == probabilities[row["closest"]]
        assert row["unsure"] == ("true" if float(row["probability"]) < model.threshold else "false")
    assert "errors" in summary and "3" in summary.split("errors")[1].split("\n")[0]


def test_recursive_adds_the_sub_folders(mixed, tmp_path):
    flat, deep = tmp_path / "flat.csv", tmp_path / "deep.csv"
    assert run(mixed, "--out", flat)[0] == 0
    assert run(mixed, "--recursive", "--out", deep)[0] == 0
    assert names(read_rows(flat), mixed) == sorted(GOOD_TOP + tuple(BAD))
    assert names(read_rows(deep), mixed) == sorted(GOOD_TOP + GOOD_NESTED + tuple(BAD))


def test_scan_order_is_sorted_and_files_named_directly_are_always_tried(mixed, tmp_path):
    found = list(find_images([mixed], recursive=True))
    assert found == list(find_images([mixed], recursive=True))
    assert [Path(p).relative_to(mixed).as_posix() for p in found] == [
        "a.jpg", "b.jpg", "c.jpg", "empty.jpg", "sub/d.jpg", "sub/deeper/e.jpg", "text.jpg", "truncated.jpg"]
    out = tmp_path / "named.csv"
    # The .txt is tried because it was named; the photo named twice (file and folder) gets one row.
    assert run(mixed / "notes.txt", mixed / "a.jpg", mixed, "--out", out)[0] == 0
    rows = read_rows(out)
    assert [Path(r["path"]).name for r in rows][:2] == ["notes.txt", "a.jpg"]
    assert len(rows) == len(GOOD_TOP) + len(BAD) + 1
    assert "is not an image" in rows[0]["error"]


def test_threshold_option_decides_unsure(mixed, tmp_path):
    never, between = tmp_path / "never.csv", tmp_path / "between.csv"
    assert run(mixed, "--threshold", "0", "--out", never)[0] == 0
    rows = [r for r in read_rows(never) if not r["error"]]
    assert {r["unsure"] for r in rows} == {"false"}
    lowest, highest = sorted({float(r["probability"]) for r in rows})[:2]  # a threshold between two photos
    assert run(mixed, "--threshold", str((lowest + highest) / 2), "--out", between)[0] == 0
    unsure = {r["path"]: r["unsure"] for r in read_rows(between) if not r["error"]}
    assert unsure == {r["path"]: "true" if float(r["probability"]) <= lowest else "false" for r in rows}


def test_cli_probabilities_are_the_apps(mixed, tmp_path):
    """The CSV, the streaming API and `Classifier.predict` (the app's path) agree for every file.

    One image at a time on the same torch threads they are bit for bit the same. In bigger batches
    (or on other thread counts) torch picks other float32 kernels, which moves probabilities by up to
    ~2e-6 (measured on this model): hence the looser bound there.
    """
    model = load_model()
    threads = str(torch.get_num_threads())
    single_out, batched_out = tmp_path / "single.csv", tmp_path / "batched.csv"
    assert run(mixed, "-r", "--batch-size", "1", "--threads", threads, "--out", single_out)[0] == 0
    assert run(mixed, "-r", "--batch-size", "3", "--out", batched_out)[0] == 0
    streamed = dict(classify_files(find_images([mixed], recursive=True), model, batch_size=1))
    batched = {row["path"]: row for row in read_rows(batched_out)}
    for row in read_rows(single_out):
        path = row["path"]
        assert batched[path]["error"] == row["error"]
        if row["error"]:
            assert isinstance(streamed[path], UnusableImageError) and str(streamed[path]) == row["error"]
            with pytest.raises(UnusableImageError):
                model.predict(path)
            continue
        single = model.predict(path)
        assert streamed[path].probabilities == single.probabilities  # exactly
        assert single.label == row["class"] == batched[path]["class"]
        for name in model.classes:
            assert float(row[f"p_{name}"]) == pytest.approx(single.probabilities[name], abs=1e-8)  # 8 decimals
            assert float(batched[path][f"p_{name}"]) == pytest.approx(single.probabilities[name], abs=1e-5)


def test_rerun_skips_the_files_already_in_the_csv(mixed, tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert run(mixed, "--out", out, capsys=capsys)[0] == 0
    first = out.read_text()
    status, summary = run(mixed, "--recursive", "--out", out, capsys=capsys)
    assert status == 0
    done = [line for line in summary.splitlines() if "already done" in line]
    assert done and done[0].split()[2] == str(len(GOOD_TOP) + len(BAD))
    text = out.read_text()
    assert text.startswith(first) and text.count("path,class,") == 1  # appended, header once
    rows = read_rows(out)
    assert len({r["path"] for r in rows}) == len(rows) == len(GOOD_TOP + GOOD_NESTED) + len(BAD)
    # A third run has nothing left to do.
    status, summary = run(mixed, "--recursive", "--out", out, capsys=capsys)
    assert status == 0 and out.read_text() == text
    assert summary.splitlines()[0].startswith("0 files")


def test_a_half_written_last_row_is_dropped_and_redone(mixed, tmp_path):
    out = tmp_path / "results.csv"
    assert run(mixed, "--out", out)[0] == 0
    complete = out.read_text()
    last = complete.splitlines()[-1]
    # What a kill in the middle of a write leaves: the last row cut off, no newline.
    out.write_text(complete[: -len(last) - 1] + last[: len(last) // 2])
    assert run(mixed, "--out", out)[0] == 0
    rows = read_rows(out)
    assert len(rows) == len({r["path"] for r in rows}) == len(GOOD_TOP) + len(BAD)
    assert sorted(out.read_text().splitlines()) == sorted(complete.splitlines())


def test_a_csv_from_another_model_is_refused(mixed, tmp_path, capsys):
    out = tmp_path / "other.csv"
    out.write_text("path,class,probability,p_cat,p_dog,unsure,error\n")
    assert main(["classify", str(mixed), "--out", str(out)]) == 2
    assert "another model" in capsys.readouterr().err


def test_a_killed_run_keeps_whole_rows_and_resumes(photos, tmp_path):
    """SIGKILL mid-run: every finished row is complete; the re-run fills in the rest, each file once."""
    folder = tmp_path / "many"
    folder.mkdir()
    sources = sorted(photos[0].glob("*/*.jpg"))
    for number in range(120):  # links, not copies: many distinct paths, little disk
        target = folder / f"{number:04d}.jpg"
        source = sources[number % len(sources)]
        try:
            target.symlink_to(source)
        except OSError:
            shutil.copyfile(source, target)
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "picsort", "classify", str(folder), "--batch-size", "2", "--out", str(out)]
    process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") > 6:
                break
            time.sleep(0.05)
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()!r}"
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()
    data = out.read_bytes().decode()
    finished = data[: data.rfind("\n") + 1]
    width = len(results_header(load_model().classes))
    rows = list(csv.reader(finished.splitlines()))
    assert rows[0] == results_header(load_model().classes)
    assert 6 <= len(rows) - 1 < 120
    assert all(len(row) == width and row[1] and row[-1] == "" for row in rows[1:])

    result = cli("classify", folder, "--batch-size", "8", "--out", out)
    assert result.returncode == 0, result.stderr
    final = read_rows(out)
    assert sorted(Path(r["path"]).name for r in final) == [f"{n:04d}.jpg" for n in range(120)]
    assert all(r["class"] and not r["error"] for r in final)
    done = [line for line in result.stdout.splitlines() if "already done" in line][0]
    assert int(done.split()[2]) == len(rows) - 1


# ---- copying ---------------------------------------------------------------------------------------------------


def test_copy_to_sorts_copies_into_class_folders(mixed, tmp_path, capsys):
    model = load_model()
    sorted_dir = tmp_path / "sorted"
    # A different file already sitting where one copy would go must survive.
    folders = [*model.classes, UNSURE_FOLDER, NONE_LABEL]
    for name in folders:
        (sorted_dir / name).mkdir(parents=True)
        (sorted_dir / name / "a.jpg").write_bytes(b"somebody else's file")
    before = {p: p.read_bytes() for p in mixed.rglob("*") if p.is_file()}
    out = tmp_path / "results.csv"
    assert run(mixed, "-r", "--out", out, "--copy-to", sorted_dir, capsys=capsys)[0] == 0
    assert {p: p.read_bytes() for p in mixed.rglob("*") if p.is_file()} == before  # originals untouched
    for name in folders:
        assert (sorted_dir / name / "a.jpg").read_bytes() == b"somebody else's file"
    copies = [p for p in sorted_dir.rglob("*") if p.is_file() and p.read_bytes() != b"somebody else's file"]
    assert not [p for p in sorted_dir.rglob(".*")]  # no partial copies left behind
    assert len(copies) == len(GOOD_TOP + GOOD_NESTED)  # bad files are not copied
    for row in read_rows(out):
        if row["error"]:
            continue
        kind = NONE_LABEL if row["none_of_these"] == "true" else UNSURE_FOLDER if row["unsure"] == "true" else None
        folder = sorted_dir / (kind or row["class"])
        source = Path(row["path"])
        matches = [p for p in folder.iterdir() if p.read_bytes() == source.read_bytes()]
        assert len(matches) == 1
        if source.name == "a.jpg":
            assert matches[0].name == "a-1.jpg"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs: room for one example photo (38-51 KB) and not two. Needs root (mount)."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode:
        reason = f"needs a tmpfs mount (root): {mounted.stderr.strip()}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_stops_copy_to_without_leaving_half_copies(small_disk, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for example in sorted((REPO / "examples").glob("*.jpg")):
        shutil.copyfile(example, photos / example.name)
    status = main(["classify", str(photos), "--out", str(tmp_path / "results.csv"), "--copy-to", str(small_disk)])
    assert status == 1
    assert "No space left on device" in capsys.readouterr().err
    left = [path for path in small_disk.rglob("*") if path.is_file()]
    assert not [path for path in left if path.name.startswith(".")]  # no hidden half copy
    assert left  # the copies that fitted are there, whole
    for copy in left:
        assert copy.read_bytes() == (photos / copy.name).read_bytes()


def test_copy_to_inside_the_scanned_folder_is_not_scanned_again(mixed, tmp_path):
    scanned = tmp_path / "scanned"
    shutil.copytree(mixed, scanned)
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    assert run(scanned, "-r", "--out", first, "--copy-to", scanned / "sorted")[0] == 0
    assert run(scanned, "-r", "--out", second, "--copy-to", scanned / "sorted")[0] == 0
    assert len(read_rows(first)) == len(read_rows(second)) == len(GOOD_TOP + GOOD_NESTED) + len(BAD)


# ---- the command itself --------------------------------------------------------------------------------------


def test_help():
    top = cli("--help")
    assert top.returncode == 0 and "classify" in top.stdout
    classify = cli("classify", "--help")
    assert classify.returncode == 0
    for text in ("--out", "--batch-size", "--threshold", "--recursive", "--copy-to", "--model", "examples:"):
        assert text in classify.stdout


def test_usage_errors_exit_2_with_a_message(tmp_path):
    missing = tmp_path / "no-such-folder"
    result = cli("classify", missing, "--out", tmp_path / "r.csv")
    assert result.returncode == 2
    assert str(missing) in result.stderr and "Traceback" not in result.stderr
    no_model = cli("classify", tmp_path, "--model", tmp_path / "no-model", "--out", tmp_path / "r.csv")
    assert no_model.returncode == 2
    assert "no-model" in no_model.stderr and "Traceback" not in no_model.stderr
    empty_model = tmp_path / "empty-model"
    empty_model.mkdir()
    broken = cli("classify", tmp_path, "--model", empty_model, "--out", tmp_path / "r.csv")
    assert broken.returncode == 2 and "model.json" in broken.stderr and "Traceback" not in broken.stderr
    assert cli("classify", tmp_path, "--threshold", "2", "--out", tmp_path / "r.csv").returncode == 2
    assert not (tmp_path / "r.csv").exists()


# ---- starting quickly, from anywhere -------------------------------------------------------------------------


def test_help_does_not_load_torch():
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "picsort", "classify", "--help"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 0 and "--out" in result.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "picsort.cli" in imported  # the timing really covered picsort
    assert not {name for name in imported if name.split(".")[0] in ("torch", "picsort.batch.sort", "picsort.inference.classify")}


@pytest.mark.parametrize("editable", [True, False], ids=["pip install -e .", "pip install ."])
def test_the_installed_command_runs_from_any_folder_even_beside_a_clone_named_picsort(tmp_path, editable):
    """`pip install -e .` (README's way) and a regular install both give `picsort`, run from a folder holding a
    clone named picsort (whose model/ once shadowed picsort.inference.model); tried in throw-away venvs that borrow the
    shared packages. A regular install is built from a copy of the tracked files, removed before the run:
    it must use only what it installed (the shipped model, the examples)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shared = subprocess.run([sys.executable, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "shared-packages.pth").write_text(shared + "\n")  # torch & co. without copying them
    source = REPO
    if not editable:  # building writes build/ and an egg-info beside the sources: a copy, not the checkout
        source = tmp_path / "source"
        tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
        for name in filter(None, tracked.decode().split("\0")):
            if (REPO / name).is_file():
                (source / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, source / name)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-build-isolation", "--no-index", *(["-e"] if editable else []), str(source)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    if not editable:
        shutil.rmtree(source)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "picsort" / "model").mkdir(parents=True)  # a clone named picsort, as ~/picsort seen from ~
    photos = tmp_path / "photos"
    shutil.copytree(REPO / "examples", photos)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    command = subprocess.run([str(venv / "bin" / "picsort"), "classify", str(photos), "--out", "results.csv"],
                             capture_output=True, text=True, cwd=elsewhere, env=env, timeout=300)
    assert command.returncode == 0, command.stderr
    rows = read_rows(elsewhere / "results.csv")
    assert {Path(row["path"]).name: row["class"] for row in rows} == {
        photo.name: photo.name.split("-")[0] for photo in photos.glob("*.jpg")}
    module = subprocess.run([str(python), "-m", "picsort", "--help"], capture_output=True, text=True,
                            cwd=elsewhere, env=env, timeout=120)
    assert module.returncode == 0 and "classify" in module.stdout
    shipped = subprocess.run([str(python), "-c", "from picsort.foundation.folders import MODEL_DIR, APP_DIR; "
                              "print(MODEL_DIR); print((APP_DIR / 'app.ipynb').is_file())"],
                             capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120)
    model_dir, app_found = shipped.stdout.split()
    assert Path(model_dir) == (REPO / "model" if editable else venv / "share" / "picsort" / "model")
    assert app_found == "True"


# ---- --out is never someone else's file ------------------------------------------------------------------------


@pytest.mark.parametrize("content", [b"remember to buy milk", b"name,age\nann,31\nbob,4",
                                     b"path,class,probability,p_cat,p_dog,unsure,none_of_these,error\n"])
def test_an_out_file_that_is_not_ours_is_left_exactly_as_it_was(mixed, tmp_path, capsys, content):
    out = tmp_path / "notes.txt"
    out.write_bytes(content)
    assert main(["classify", str(mixed / "a.jpg"), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert str(out) in error and "new --out file" in error and "Traceback" not in error
    assert out.read_bytes() == content


def test_an_empty_out_file_gets_the_results(mixed, tmp_path):
    out = tmp_path / "results.csv"
    out.touch()
    assert run(mixed / "a.jpg", "--out", out)[0] == 0
    assert [Path(row["path"]).name for row in read_rows(out)] == ["a.jpg"]


# ---- every file accounted for, special files included ------------------------------------------------------------


def test_a_folder_scan_reports_what_it_left_out_and_named_files_always_get_a_row(mixed, tmp_path, capsys):
    folder = tmp_path / "odd"
    folder.mkdir()
    shutil.copyfile(mixed / "a.jpg", folder / "photo.jpg")
    shutil.copyfile(mixed / "a.jpg", folder / "jpeg-without-extension")
    for name in ("a.pdf", "b.pdf", "notes.txt", "drawing.svg"):
        (folder / name).write_text("not a photo")
    out = tmp_path / "results.csv"
    status, summary = run(folder, "--out", out, capsys=capsys)
    assert status == 0
    assert "skipped 5 files that are not images: 2 .pdf, 1 .svg, 1 .txt, 1 no extension" in summary
    assert [Path(row["path"]).name for row in read_rows(out)] == ["photo.jpg"]
    # Named one by one, they are all tried: the JPEG without an extension is classified, the PDF gets its reason.
    assert run(folder / "jpeg-without-extension", folder / "a.pdf", "--out", out)[0] == 0
    rows = {Path(row["path"]).name: row for row in read_rows(out)}
    assert rows["jpeg-without-extension"]["class"] and not rows["jpeg-without-extension"]["error"]
    assert "is not an image" in rows["a.pdf"]["error"]


def test_special_files_named_like_photos_get_error_rows_without_hanging(mixed, tmp_path):
    folder = tmp_path / "special"
    folder.mkdir()
    shutil.copyfile(mixed / "a.jpg", folder / "a.jpg")
    os.mkfifo(folder / "pipe.jpg")  # reading it would wait forever for a writer
    (folder / "zero.jpg").symlink_to("/dev/zero")  # reading it would never end
    out = tmp_path / "results.csv"
    result = cli("classify", folder, "--out", out)  # (cli's timeout ends a hang as a failure)
    assert result.returncode == 0, result.stderr
    rows = {Path(row["path"]).name: row for row in read_rows(out)}
    assert rows["a.jpg"]["class"]
    for name in ("pipe.jpg", "zero.jpg"):
        assert "not a regular file" in rows[name]["error"], rows[name]


def test_ctrl_c_stops_at_once_and_keeps_the_finished_rows(mixed, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for number in range(400):
        (folder / f"{number:04d}.jpg").symlink_to(mixed / "a.jpg")
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "picsort", "classify", str(folder), "--batch-size", "2", "--out", str(out)]
    # As in a terminal: a shell that ran this suite in the background ignores SIGINT, and the child would inherit that.
    process = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") > 4:
                break
            time.sleep(0.05)
        assert process.poll() is None, "the run ended before it could be interrupted"
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130
    assert "interrupted: the finished rows are in" in err and "Traceback" not in err
    rows = read_rows(out)
    assert 4 <= len(rows) < 400 and all(row["class"] for row in rows)
    assert out.read_bytes().endswith(b"\n")


# ---- cells a spreadsheet reads, names no CSV expects -------------------------------------------------------------


def test_formula_names_are_neutralised_and_odd_names_resume(mixed, tmp_path, monkeypatch):
    folder = tmp_path / "odd-names"
    folder.mkdir()
    names = ['=HYPERLINK("x")a.jpg', "+1.jpg", "-2.jpg", "@3.jpg", "line\nbreak.jpg", "'quoted.jpg",
             os.fsdecode(b"caf\xe9.jpg")]  # not UTF-8: Linux allows any bytes in a name
    for name in names:
        shutil.copyfile(mixed / "a.jpg", folder / name)
    monkeypatch.chdir(folder)  # relative paths, so the path cells start with the names' first characters
    out = tmp_path / "results.csv"
    assert run("--out", out, "--", *names)[0] == 0
    data = out.read_bytes()
    lines = data.decode("utf-8").splitlines()  # valid UTF-8 whatever the names (pandas reads it)
    assert len(lines) == 1 + len(names)  # one physical line per row: the newline in a name is escaped
    cells = [row[0] for row in csv.reader(lines[1:])]
    assert cells == ["'=HYPERLINK(\"x\")a.jpg", "'+1.jpg", "'-2.jpg", "'@3.jpg", "line\\nbreak.jpg",
                     "''quoted.jpg", "caf\\xe9.jpg"]
    # Cut in the middle of the row of the file whose name has a newline, then resume: every file once.
    at = data.index(b"line\\nbreak.jpg")
    out.write_bytes(data[: at + 5])
    assert run("--out", out, "--", *names)[0] == 0
    again = out.read_bytes().decode().splitlines()
    assert sorted(again) == sorted(lines)
    assert run("--out", out, "--", *names)[0] == 0
    assert out.read_bytes().decode().splitlines() == again  # all done already: the escaped names resume


def test_a_model_with_an_unsafe_class_name_is_refused(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    card = json.loads((REPO / "model" / "model.json").read_text())
    card["classes"] = ["../evil", *card["classes"][1:]]
    (model / "model.json").write_text(json.dumps(card))
    for name in ("model.safetensors", "reference.safetensors"):
        (model / name).symlink_to(REPO / "model" / name)
    sorted_dir = tmp_path / "sorted"
    result = cli("classify", REPO / "examples", "--model", model, "--out", tmp_path / "r.csv", "--copy-to", sorted_dir)
    assert result.returncode == 2 and "'../evil'" in result.stderr and "Traceback" not in result.stderr
    assert not sorted_dir.exists() and not (tmp_path / "r.csv").exists()


def test_a_model_folder_that_cannot_be_served_is_refused_in_one_line_at_once(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    for name in ("model.safetensors", "reference.safetensors"):
        shutil.copyfile(REPO / "model" / name, model / name)
    card = json.loads((REPO / "model" / "model.json").read_text())
    card["architecture"] = {"library": "torchvision", "name": "vit_h_14"}  # gigabytes, were it built
    (model / "model.json").write_text(json.dumps(card))
    result = cli("classify", REPO / "examples", "--model", model, "--out", tmp_path / "r.csv")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "architecture is" in result.stderr
    assert "picsort builds only timm efficientnet_lite0" in result.stderr
    (model / "model.json").unlink()
    os.mkfifo(model / "model.json")  # no writer: reading it would wait for ever
    result = subprocess.run([sys.executable, "-m", "picsort", "classify", str(REPO / "examples"), "--model",
                             str(model), "--out", str(tmp_path / "r.csv")], capture_output=True, text=True,
                            env={**subprocess_env(), "PICSORT_MODEL_DIR": ""}, timeout=60)
    assert result.returncode == 2 and "model.json is a FIFO" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.csv").exists()


def test_picsort_app_serves_the_page_with_the_offline_template_from_any_folder(tmp_path):
    """`picsort app` runs Voila on app.ipynb with the template that loads nothing from the internet."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PICSORT_LABELS_DIR": str(tmp_path / "labels")}
    process = subprocess.Popen([sys.executable, "-m", "picsort", "app", "--no-browser", f"--port={port}",
                                "--Voila.ip=127.0.0.1"], cwd=tmp_path, env={**env, "PYTHONPATH": str(REPO / "src")},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline, page = time.monotonic() + 120, None
        while time.monotonic() < deadline and page is None:
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
                    page = response.read().decode()
            except OSError:
                time.sleep(0.5)
        assert page is not None, "the app did not answer within 120 s"
        assert "voila" in page.lower()
        assert "cdn.jsdelivr.net" not in page and "fontawesome" not in page
    finally:
        stop_process_group(process)


def test_picsort_train_opens_train_ipynb_in_jupyterlab_as_root_too(tmp_path):
    """README's train step. Plain `jupyter lab` refuses to start as root (containers, cloud shells, this machine)."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    home = tmp_path / "home"  # JupyterLab's settings, workspaces and runtime files: nowhere but here
    home.mkdir()
    token = "picsort-test"
    env = {**os.environ, "HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / "config"),
           "JUPYTER_DATA_DIR": str(home / "data"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTER_TOKEN": token, "PYTHONPATH": str(REPO / "src")}
    log = tmp_path / "lab.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "picsort", "train", "--no-browser", f"--port={port}",
                                    "--ServerApp.ip=127.0.0.1"], cwd=tmp_path, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, notebook = time.monotonic() + 120, None
        while time.monotonic() < deadline and notebook is None:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                address = f"http://127.0.0.1:{port}/api/contents/train.ipynb?content=0&token={token}"
                with urllib.request.urlopen(address, timeout=60) as response:
                    notebook = json.load(response)
            except OSError:
                time.sleep(0.5)
        assert notebook is not None, f"JupyterLab did not answer within 120 s:\n{log.read_text()[-3000:]}"
        assert notebook["type"] == "notebook"  # served from the repository, though started in another folder
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab/tree/train.ipynb?token={token}", timeout=60) as page:
            assert page.status == 200 and "JupyterLab" in page.read().decode()
        said = log.read_text()
        assert f"http://127.0.0.1:{port}/lab" in said  # the address the person opens, printed as usual
        assert "Running as root is not recommended" not in said
    finally:
        stop_process_group(process)


def test_picsort_train_says_what_to_install_where_the_training_libraries_are_missing(tmp_path):
    """As in a Binder image, which has only the app's libraries; here a Python that sees no installed package."""
    result = subprocess.run([sys.executable, "-S", "-m", "picsort", "train", "--no-browser"], cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "train.ipynb needs jupyterlab and fastai" in result.stderr
    assert "pip install -r requirements.txt" in result.stderr and "Traceback" not in result.stderr


def test_version_is_the_installed_package_s(tmp_path):
    import importlib.metadata

    result = subprocess.run([sys.executable, "-m", "picsort", "--version"], capture_output=True, text=True,
                            env=subprocess_env(), cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"picsort {importlib.metadata.version('picsort')}\n"
