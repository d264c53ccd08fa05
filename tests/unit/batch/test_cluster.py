"""Tests for `picsort classify` on a Dask cluster (picsort.batch.cluster) and on fsspec URLs (s3:// through moto's server).

The cluster tests start a real `dask scheduler` and two `dask worker` processes from this venv on 127.0.0.1 (free
ports, one thread each, their working folder a temp folder, not the repository) and stop them after; the S3 tests
start `python -m moto.server` on 127.0.0.1, a real S3 API (no mock of boto). Photos: the repository's examples/ and
copies of them made here, so the tests run on a fresh clone.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from picsort.batch.sort import sort_files
from picsort.inference.classify import load_model
from rehearsal.ports import free_port
from tests.conftest import stop_process_group

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
BIN = Path(sys.executable).parent
BAD = ("empty.jpg", "text.jpg")



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


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 (`python -m moto.server`), reached through the standard AWS_* variables set
    in this process (the dask workers get them too); yields its address."""
    home = tmp_path_factory.mktemp("s3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = start([sys.executable, "-m", "moto.server", "--host", "127.0.0.1", "--port", str(port)], home)
    variables = {"AWS_ACCESS_KEY_ID": "picsort-test", "AWS_SECRET_ACCESS_KEY": "picsort-test",
                 "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, "moto's server did not start"
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as patch:
            for name, value in variables.items():
                patch.setenv(name, value)
            yield endpoint
    finally:
        stop_process_group(server)


@pytest.fixture(scope="module")
def scheduler(s3, tmp_path_factory):
    """`dask scheduler` and two `dask worker` processes (one thread each) on 127.0.0.1; yields the address.

    The scheduler gives up on a task after a second worker died running it (allowed-failures 1), as
    `picsort.batch.cluster.local_cluster` does."""
    from distributed import Client

    home = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    # The scheduler's scratch space in `home`, not in /tmp (the workers' is their --local-directory).
    processes = [start([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                        "--no-dashboard"], home, {"DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
                                                  "DASK_TEMPORARY_DIRECTORY": str(home)})]
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
            stop_process_group(process)


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
    expected = sorted(f"{'unsure' if row['unsure'] == 'true' and row['class'] != 'none' else row['class']}/"
                      f"{Path(name).name}"
                      for name, row in one_process.items() if not row["error"])
    assert copied == expected
    again = sort_files([photos], load_model(), out, recursive=True, client=client)
    assert again.already_done == 50 and again.processed == 0


def test_a_worker_killed_mid_run_loses_no_file_and_doubles_none(client, photos, one_process, tmp_path):
    pids = client.run(os.getpid)  # worker address -> its process id
    killed, listed_at_first_rows = [], []

    def kill_a_worker(report) -> None:
        if not killed:  # after the first shard's rows, while the next ones run on both workers
            listed_at_first_rows.append((report.listed, report.listing_done))
            victim = next(iter(pids.values()))
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    out = tmp_path / "results.csv"
    report = sort_files([photos], load_model(), out, recursive=True, client=client, shard_size=4, on_rows=kill_a_worker)
    assert killed and report.processed == 50 and not report.interrupted
    # The listing is streamed: the first rows came back with a few shards listed (2 per worker thread ahead).
    assert listed_at_first_rows[0][0] <= 4 * 4 + 4 and listed_at_first_rows[0][1] is False
    assert_same_rows(by_name(read_rows(out), str(photos)), one_process)  # by_name fails on a second row of a file


def test_the_command_on_a_local_cluster_stops_on_ctrl_c_and_a_rerun_on_a_running_cluster_resumes(
        scheduler, photos, one_process, tmp_path):
    out = tmp_path / "results.csv"
    command = [sys.executable, "-m", "picsort", "classify", str(photos), "--recursive", "--out", str(out)]
    # Ctrl-C as a terminal sends it: to the command and the worker processes it started (its process group).
    # SIGINT as in a terminal: a shell that ran this suite in the background ignores it, and the child would inherit that.
    process = subprocess.Popen([*command, "--workers", "2", "--shard-size", "2"], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 180
    while process.poll() is None and time.monotonic() < deadline:
        if out.exists() and out.read_text().count("\n") > 1:  # the header and a first shard's rows
            os.killpg(process.pid, signal.SIGINT)
            break
        time.sleep(0.05)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stdout + stderr
    assert "Dask cluster: 2 workers, dashboard at http://127.0.0.1:" in stderr
    kept = read_rows(out)
    assert 0 < len(kept) < 50
    again = subprocess.run([*command, "--scheduler", scheduler], cwd=tmp_path, text=True, capture_output=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert re.search(rf"already done +{len(kept)} ", again.stdout), again.stdout
    assert_same_rows(by_name(read_rows(out), str(photos)), one_process)


# 128: one shard, split into one-file shards once it has killed two workers; 1: one-file shards from the start,
# several sent to each worker at once, so files queued beside the culprit die with it.
@pytest.mark.parametrize("shard_size", [128, 1])
def test_only_the_file_that_crashes_its_workers_gets_an_error_row(client, tmp_path, shard_size):
    import cloudpickle
    from distributed.diagnostics.plugin import WorkerPlugin

    class PoisonFiles(WorkerPlugin):
        """On each worker (those restarted too): reading a file named poison*.jpg kills the process, as a
        decoder crash or the kernel's OOM killer would."""

        name = "picsort-test-poison-files"

        def setup(self, worker):
            from picsort.inference import batches

            real = batches.prepare_file

            def prepare_file(classifier, path):
                if os.path.basename(path).startswith("poison"):
                    os.kill(os.getpid(), signal.SIGKILL)
                return real(classifier, path)

            prepare_file.real = real
            batches.prepare_file = prepare_file

        def teardown(self, worker):
            from picsort.inference import batches

            batches.prepare_file = getattr(batches.prepare_file, "real", batches.prepare_file)

    for photo in sorted(EXAMPLES.glob("*.jpg")):
        (tmp_path / "photos").mkdir(exist_ok=True)
        (tmp_path / "photos" / photo.name).write_bytes(photo.read_bytes())
    (tmp_path / "photos" / "poison.jpg").write_bytes((EXAMPLES / "black-1.jpg").read_bytes())
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    client.register_plugin(PoisonFiles())
    try:
        out = tmp_path / "results.csv"
        report = sort_files([tmp_path / "photos"], load_model(), out, client=client, shard_size=shard_size)
    finally:
        client.unregister_worker_plugin(PoisonFiles.name)
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    rows = by_name(read_rows(out), str(tmp_path / "photos"))
    assert len(rows) == 7 and report.errors == 1
    assert "crashed the worker process" in rows["poison.jpg"]["error"] and rows["poison.jpg"]["class"] == ""
    assert all(row["class"] == name.split("-")[0] for name, row in rows.items() if name != "poison.jpg")


@pytest.fixture(scope="module")
def bucket(s3, photos) -> str:
    """The `photos` uploaded to a bucket of the S3 server, under a prefix; returns its URL."""
    import boto3

    api = boto3.client("s3")  # endpoint and keys from the AWS_* variables, as picsort's reading gets them
    api.create_bucket(Bucket="camera-traps")
    for path in sorted(photos.rglob("*.jpg")):
        api.upload_file(str(path), "camera-traps", f"season-1/{path.relative_to(photos).as_posix()}")
    return "s3://camera-traps/season-1"


def test_an_s3_prefix_gives_the_rows_of_the_same_photos_on_disk(bucket, one_process, tmp_path, capsys):
    from picsort.cli import main

    out = tmp_path / "results.csv"
    assert main(["classify", bucket, "--recursive", "--out", str(out)]) == 0
    assert_same_rows(by_name(read_rows(out), bucket), one_process)
    assert main(["classify", bucket, "--recursive", "--out", str(out)]) == 0  # resumed: nothing left to do
    assert " ".join(capsys.readouterr().out.split()).count("already done 50") == 1
    assert main(["classify", "s3://camera-traps/no-such-prefix", "--out", str(tmp_path / "none.csv")]) == 2
    assert "nothing at s3://camera-traps/no-such-prefix" in capsys.readouterr().err


def test_an_s3_prefix_on_separate_workers_gives_the_same_rows(client, bucket, one_process, tmp_path):
    out = tmp_path / "results.csv"
    report = sort_files([bucket], load_model(), out, recursive=True, client=client, shard_size=8)
    assert report.processed == 50
    assert_same_rows(by_name(read_rows(out), bucket), one_process)


def test_a_local_cluster_run_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch):
    """`--workers N` (connect): the workers' scratch space is a folder of the run's own, removed on close, and the
    model they are sent goes where $PICSORT_WORKER_MODELS says, not into the machine's temp folder."""
    from picsort.batch.cluster import ModelFiles, connect, model_folder

    # A temp folder of this test's (for this process and the worker processes it starts): the machine's /tmp may
    # hold a dask-scratch-space of other programs' already.
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setenv("PICSORT_WORKER_MODELS", str(tmp_path / "models"))
    assert tempfile.gettempdir() == str(temp)
    client, close = connect(workers=2)
    try:
        scratch = set(client.run(lambda dask_worker: dask_worker.local_directory).values())
        assert all(Path(folder).relative_to(temp).parts[0].startswith("picsort-dask-") for folder in scratch), scratch
        model = load_model()
        report = sort_files([EXAMPLES], model, tmp_path / "results.csv", client=client)
        assert report.processed == 6
        assert [entry.name for entry in (tmp_path / "models").iterdir()] == [
            model_folder(ModelFiles.read(model.folder).digest).name]
    finally:
        close()
    assert not any(Path(folder).exists() for folder in scratch)
    assert [name for name in os.listdir(temp)
            if name == "dask-scratch-space" or name.startswith(("picsort-model-", "picsort-dask-"))] == []


def test_options_for_one_process_are_refused_on_a_cluster(tmp_path, capsys):
    from picsort.cli import main

    out = tmp_path / "results.csv"
    assert main(["classify", str(EXAMPLES), "--out", str(out), "--workers", "2", "--threads", "2"]) == 2
    assert "--threads set one process's threads" in capsys.readouterr().err
    assert main(["classify", str(EXAMPLES), "--out", str(out), "--workers", "2", "--scheduler", "tcp://x:1"]) == 2
    assert "not both" in capsys.readouterr().err
    assert not out.exists()
