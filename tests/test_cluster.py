"""Tests for `picsort classify` on a Dask cluster (picsort.cluster) and on fsspec URLs (s3:// through moto's server).

The cluster tests start a real `dask scheduler` and two `dask worker` processes from this venv on 127.0.0.1 (free
ports, one thread each, their working folder a temp folder, not the repository) and stop them after; the S3 tests
start `python -m moto.server` on 127.0.0.1, a real S3 API (no mock of boto). Photos: the repository's examples/ and
copies of them made here, so the tests run on a fresh clone.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from picsort.bulk import sort_files
from picsort.classify import load_model

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
BAD = ("empty.jpg", "text.jpg")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_photos(folder: Path, copies: int) -> Path:
    """The six example photos `copies` times under new names (every other one mirrored, so answers differ), in
    two sub-folders, and two bad files named .jpg."""
    for number in range(copies):
        for photo in sorted(EXAMPLES.glob("*.jpg")):
            target = folder / f"set{number % 2}" / f"{photo.stem}-{number:03d}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            if number % 2:
                Image.open(photo).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(target, quality=92)
            else:
                target.write_bytes(photo.read_bytes())
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "text.jpg").write_text("not a picture\n")
    return folder


def read_rows(out: Path) -> list[dict]:
    with open(out, newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def by_name(rows: list[dict], root: str) -> dict[str, dict]:
    """Rows by path relative to `root` (a folder or a URL prefix); fails if a file has two rows."""
    keyed = {row["path"][len(root):].lstrip("/"): row for row in rows}
    assert len(keyed) == len(rows), "a file has more than one row"
    return keyed


def assert_same_rows(ours: dict[str, dict], reference: dict[str, dict]) -> None:
    """The same files, answers, flags and errors; probabilities within 1e-5 (float sums in another order)."""
    assert sorted(ours) == sorted(reference)
    for name, row in ours.items():
        expected = reference[name]
        for column, value in row.items():
            if column == "path":
                continue
            if column == "probability" or column.startswith("p_"):
                assert (value == "") == (expected[column] == ""), (name, column)
                if value:
                    assert abs(float(value) - float(expected[column])) < 1e-5, (name, column, value, expected[column])
            else:
                assert value == expected[column], (name, column)


def start(command: list[str], cwd: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=open(cwd / f"{Path(command[0]).name}-{time.monotonic_ns()}.log", "w"),
                            start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    """End a process started in a session of its own and what it started (a worker's nanny and worker)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (one thread each) on 127.0.0.1; yields the address.

    The scheduler gives up on a task after a second worker died running it (allowed-failures 1), as
    `picsort.cluster.local_cluster` does."""
    from distributed import Client

    home = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    processes = [start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                        "--no-dashboard"], home, {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})]
    try:
        for number in range(2):
            folder = home / f"worker{number}"
            folder.mkdir()
            processes.append(start([str(BIN / "dask"), "worker", address, "--nthreads", "1", "--host", "127.0.0.1",
                                    "--no-dashboard", "--local-directory", str(folder)], folder))
        with Client(address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
        yield address
    finally:
        for process in reversed(processes):
            stop(process)


@pytest.fixture
def client(scheduler):
    from distributed import Client

    with Client(scheduler, timeout="30s") as client:
        client.wait_for_workers(2, timeout=120)  # a worker killed by a test before is back
        yield client


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photos(tmp_path_factory.mktemp("photos"), copies=8)  # 48 photos and 2 bad files


@pytest.fixture(scope="module")
def one_process(photos, tmp_path_factory) -> dict[str, dict]:
    """The single-process rows for `photos`: what every cluster run must give."""
    out = tmp_path_factory.mktemp("one") / "results.csv"
    sort_files([photos], load_model(), out, recursive=True)
    return by_name(read_rows(out), str(photos))


def test_classify_on_one_process_never_imports_dask(tmp_path):
    """Dask is for --workers/--scheduler only: the everyday command stays as light as it was."""
    code = ("import sys; from picsort.cli import main; status = main(['classify', sys.argv[1], '--out', sys.argv[2]]); "
            "print('imported:', sorted(name for name in ('dask', 'distributed') if name in sys.modules), status)")
    done = subprocess.run([sys.executable, "-c", code, str(EXAMPLES), str(tmp_path / "out.csv")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert done.stdout.splitlines()[-1] == "imported: [] 0", done.stdout + done.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") == 1 + 6  # the header and the six example photos


def test_separate_workers_give_the_rows_and_copies_of_one_process(client, photos, one_process, tmp_path):
    out, copies = tmp_path / "results.csv", tmp_path / "sorted"
    report = sort_files([photos], load_model(), out, recursive=True, copy_to=copies, client=client, shard_size=8)
    assert_same_rows(by_name(read_rows(out), str(photos)), one_process)
    assert report.processed == 50 and report.errors == 2 and report.copied == 48 and report.listing_done
    copied = sorted(path.relative_to(copies).as_posix() for path in copies.rglob("*.jpg"))
    expected = sorted(f"{row['class'] if row['unsure'] == 'false' else 'unsure'}/{Path(name).name}"
                      for name, row in one_process.items() if not row["error"])
    assert copied == expected
    again = sort_files([photos], load_model(), out, recursive=True, client=client)
    assert again.already_done == 50 and again.processed == 0


def test_a_worker_killed_mid_run_loses_no_file_and_doubles_none(client, photos, one_process, tmp_path):
    pids = client.run(os.getpid)  # worker address -> its process id
    killed = []

    def kill_a_worker(report) -> None:
        if not killed:  # after the first shard's rows, while the next ones run on both workers
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    out = tmp_path / "results.csv"
    report = sort_files([photos], load_model(), out, recursive=True, client=client, shard_size=4, on_rows=kill_a_worker)
    assert killed and report.processed == 50 and not report.interrupted
    assert_same_rows(by_name(read_rows(out), str(photos)), one_process)  # by_name fails on a second row of a file
