"""`picsort classify` on a Dask cluster against one process, on this machine (issue 18).

(a) Overhead: the Imagenette and bear photos through `picsort classify --workers 2` (a local cluster of two
    worker processes, one thread each) against today's single process with 2 torch threads, same files, one
    after the other in the same run: throughput ratio (goal ≥ 0.9).
(b) The same files through a `dask scheduler` and two `dask worker` processes started apart on 127.0.0.1
    (`--scheduler`): rows identical to the single process's (probabilities within 1e-5, order aside).
(c) The same again with one worker SIGKILLed a third of the way in: every file exactly one row; what it cost.
(d) Scheduler cost per task (no-op tasks through the same scheduler), the workers' cost per file (from (b)),
    the listing's and the CSV writer's rates; from them, on paper, the file rate at 10, 100 and 1,000 workers
    and the shard size that keeps the scheduler under 5 % of its time at 1,000 workers.

    python benchmarks/cluster.py              # all 4,341 photos, writes results/cluster.md
    python benchmarks/cluster.py --quick 400  # the first 400 (as links), prints only
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))  # rehearsal/
sys.path.insert(0, str(REPO / "benchmarks"))

from results_table import publish  # noqa: E402

from picsort.batch.cluster import SHARD_FILES as SHARD  # noqa: E402  (the default the runs use)
from rehearsal.ports import free_port  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
FOLDERS = [SHARED / "imagenette", SHARED / "bears"]
RESULTS = REPO / "benchmarks" / "results" / "cluster.md"
BIN = Path(sys.executable).parent



def classify(inputs: list[Path], out: Path, *options: str, on_rows=None) -> tuple[float, float]:
    """(wall seconds of the whole command, images/s its summary states) of `python -m picsort classify`.

    `on_rows(count)` is called about every 0.1 s with the CSV's rows so far."""
    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", "picsort", "classify", *map(str, inputs), "--recursive",
                                "--out", str(out), *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=out.parent, env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    while on_rows is not None and process.poll() is None:
        if out.exists():
            on_rows(out.read_bytes().count(b"\n") - 1)
        time.sleep(0.1)
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - began
    assert process.returncode == 0, stdout + stderr
    return wall, float(re.search(r"\(([\d.]+) images/s\)", stdout).group(1))


def rows_by_path(out: Path) -> dict[str, dict]:
    with open(out, newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    keyed = {row["path"]: row for row in rows}
    assert len(keyed) == len(rows), f"{out.name}: {len(rows) - len(keyed)} files have more than one row"
    return keyed


def compare(ours: Path, reference: Path) -> tuple[int, int, float]:
    """(rows, rows whose non-probability cells differ, largest probability difference) against `reference`."""
    mine, theirs = rows_by_path(ours), rows_by_path(reference)
    assert sorted(mine) == sorted(theirs), "not the same files"
    differing, largest = 0, 0.0
    for path, row in mine.items():
        expected = theirs[path]
        numbers = [name for name in row if name == "probability" or name.startswith("p_")]
        differing += any(row[name] != expected[name] for name in row if name not in numbers and name != "path")
        for name in numbers:
            if row[name] and expected[name]:
                largest = max(largest, abs(float(row[name]) - float(expected[name])))
    return len(mine), differing, largest


class SeparateCluster:
    """`dask scheduler` and two `dask worker` processes (one thread each) on 127.0.0.1, in a temp folder."""

    def __init__(self, home: Path):
        self.address = f"tcp://127.0.0.1:{free_port()}"
        log = open(home / "dask.log", "w")
        self.processes = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port",
                                            self.address.rsplit(":", 1)[1], "--no-dashboard"], cwd=home,
                                           stdout=log, stderr=log, start_new_session=True,
                                           env={**os.environ, "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1",
                                                "DASK_TEMPORARY_DIRECTORY": str(home)})]
        for number in range(2):
            folder = home / f"worker{number}"
            folder.mkdir()
            self.processes.append(subprocess.Popen(
                [str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard",
                 "--local-directory", str(folder)], cwd=folder, stdout=log, stderr=log, start_new_session=True))
        from distributed import Client

        self.client = Client(self.address, timeout="60s")
        self.client.wait_for_workers(2, timeout=120)

    def worker_pids(self) -> list[int]:
        self.client.wait_for_workers(2, timeout=120)
        return list(self.client.run(os.getpid).values())

    def close(self) -> None:
        self.client.close()
        for process in reversed(self.processes):
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _noop(number: int) -> int:
    return number


def scheduler_rate(client, tasks: int = 2000) -> float:
    """No-op tasks per second through the scheduler to the two workers and back (submitted as picsort submits)."""
    client.gather(client.map(_noop, range(50), pure=False))  # warm
    began = time.perf_counter()
    client.gather(client.map(_noop, range(tasks), pure=False))
    return tasks / (time.perf_counter() - began)


def listing_rate(inputs: list[Path]) -> float:
    from picsort.batch.sort import find_images

    began = time.perf_counter()
    count = sum(1 for _ in find_images(inputs, recursive=True))
    return count / (time.perf_counter() - began)


def csv_rate(rows: int = 20000) -> float:
    """Rows per second the client formats and writes (the shipped model's classes, one flush per shard)."""
    from picsort.batch.results import format_rows
    from picsort.inference.classify import Prediction

    classes = ["black", "grizzly", "teddy"]
    result = Prediction("black", 0.9, {"black": 0.9, "grizzly": 0.05, "teddy": 0.05})
    batch = [(f"/archive/camera-07/2026-06-01/IMG_{number:06d}.JPG", result) for number in range(SHARD)]
    with tempfile.TemporaryFile("w") as file:
        began = time.perf_counter()
        for _ in range(rows // SHARD):
            file.write(format_rows(batch, classes))
            file.flush()
        return rows // SHARD * SHARD / (time.perf_counter() - began)


def linked(inputs: list[Path], count: int, root: Path) -> list[Path]:
    """A folder of links to the first `count` photos (round the classes), for --quick."""
    from picsort.batch.sort import find_images

    for number, path in zip(range(count), find_images(inputs, recursive=True)):
        (root / f"{number:05d}-{Path(path).name}").symlink_to(path)
    return [root]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", type=int, default=0, metavar="N", help="only the first N photos; print only")
    args = parser.parse_args()
    missing = [folder for folder in FOLDERS if not folder.is_dir()]
    if missing:
        raise SystemExit(f"needs the development photos: {', '.join(map(str, missing))}")
    load_before, began = os.getloadavg(), time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        # The workers' copies of the model (picsort.batch.cluster.model_folder) go with the rest of this run's files.
        os.environ["PICSORT_WORKER_MODELS"] = str(scratch / "worker-models")
        inputs = FOLDERS
        if args.quick:
            (scratch / "photos").mkdir()
            inputs = linked(FOLDERS, args.quick, scratch / "photos")
        files = len(list(__import__("picsort.batch.sort", fromlist=["find_images"]).find_images(inputs, recursive=True)))
        print(f"{files} photos", flush=True)

        # (a) one process with 2 threads, then a local cluster of 2 single-thread workers, one after the other.
        one = scratch / "one.csv"
        one_wall, one_rate = classify(inputs, one, "--threads", "2")
        print(f"one process: {one_wall:.1f} s, {one_rate:.1f}/s", flush=True)
        local = scratch / "local.csv"
        local_wall, local_rate = classify(inputs, local, "--workers", "2")
        print(f"--workers 2: {local_wall:.1f} s, {local_rate:.1f}/s", flush=True)
        local_check = compare(local, one)

        # (b) and (c) on a scheduler and workers started apart.
        (scratch / "dask").mkdir()
        cluster = SeparateCluster(scratch / "dask")
        try:
            separate = scratch / "separate.csv"
            separate_wall, separate_rate = classify(inputs, separate, "--scheduler", cluster.address)
            print(f"--scheduler: {separate_wall:.1f} s, {separate_rate:.1f}/s", flush=True)
            separate_check = compare(separate, one)

            victim = cluster.worker_pids()[0]
            killed_at: list[int] = []

            def kill_a_third_in(rows: int) -> None:
                if not killed_at and rows >= files // 3:
                    os.kill(victim, signal.SIGKILL)
                    killed_at.append(rows)

            killed = scratch / "killed.csv"
            killed_wall, killed_rate = classify(inputs, killed, "--scheduler", cluster.address,
                                                on_rows=kill_a_third_in)
            print(f"--scheduler, a worker killed: {killed_wall:.1f} s, {killed_rate:.1f}/s", flush=True)
            killed_check = compare(killed, one)
            assert killed_at, "the run ended before a third of its rows"

            # (d) the scheduler's cost per task, and the client's own limits.
            cluster.worker_pids()  # both workers back
            tasks_per_s = scheduler_rate(cluster.client)
        finally:
            cluster.close()
    list_per_s, csv_per_s = listing_rate(inputs), csv_rate()
    load_after, minutes = os.getloadavg(), (time.perf_counter() - began) / 60

    per_worker = separate_rate / 2  # files/s one single-thread worker process classifies
    scheduler_share = per_worker / SHARD / tasks_per_s  # scheduler seconds per second, per worker, at SHARD
    lines = [
        f"# picsort classify on a Dask cluster ({files} photos: Imagenette and bears, "
        f"{'the first ' + str(args.quick) + ', ' if args.quick else ''}224×224 to 12 MP JPEG)",
        "",
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; `python "
        f"benchmarks/cluster.py{' --quick ' + str(args.quick) if args.quick else ''}`, {minutes:.0f} minutes. "
        f"Load average {load_before[0]:.1f} before and {load_after[0]:.1f} after on a 2-core machine"
        + (": **the machine was shared with other jobs during this run**, so the rates are low and noisy, "
           "and the runs, one after the other, did not see the same load." if max(load_before[0], load_after[0]) > 2.5
           else ".") + " Images/s as each command's summary states it (from the start of the classifying, "
        "after the model is loaded and the cluster is up); wall = the whole command.",
        "",
        "## (a) Overhead: a local cluster of 2 worker processes against one process",
        "",
        "| command | images/s | wall (s) | vs one process (images/s) | rows like one process |",
        "|---|---|---|---|---|",
        f"| `picsort classify … --threads 2` (one process, 2 decode threads) | {one_rate:.1f} | {one_wall:.1f} | 1 "
        "| – |",
        f"| `picsort classify … --workers 2` (2 processes × 1 thread) | {local_rate:.1f} | {local_wall:.1f} | "
        f"**{local_rate / one_rate:.2f}** | {local_check[0] - local_check[1]}/{local_check[0]}, "
        f"max Δp {local_check[2]:.1e} |",
        "",
        "Goal ≥ 0.9.",
        "",
        "## (b), (c) A scheduler and two workers started apart (`dask scheduler`, `dask worker --nthreads 1`)",
        "",
        "| command | images/s | wall (s) | rows (one per file) | rows like one process | max Δp |",
        "|---|---|---|---|---|---|",
        f"| `picsort classify … --scheduler tcp://127.0.0.1:…` | {separate_rate:.1f} | {separate_wall:.1f} | "
        f"{separate_check[0]} of {files} | {separate_check[0] - separate_check[1]} | {separate_check[2]:.1e} |",
        f"| the same, one worker SIGKILLed after {killed_at[0]} rows | {killed_rate:.1f} | {killed_wall:.1f} | "
        f"{killed_check[0]} of {files} | {killed_check[0] - killed_check[1]} | {killed_check[2]:.1e} |",
        "",
        f"Wall time with the kill against without: {killed_wall - separate_wall:+.1f} s "
        f"({killed_wall / separate_wall - 1:+.0%}). What a kill costs: the killed worker's shard runs again from its "
        f"start (at most {SHARD} files, {SHARD / per_worker:.0f} s of one worker at the rate of (b)), and its nanny "
        "starts a new worker process that loads torch and the model again; on a shared machine the load's changes "
        "between the runs can be larger than that.",
        "",
        "## (d) What limits a larger cluster (measured here, then on paper)",
        "",
        "| cost | measured |",
        "|---|---|",
        f"| scheduler: no-op tasks submitted, run on 2 workers and gathered | {tasks_per_s:.0f} tasks/s "
        f"({1000 / tasks_per_s:.2f} ms a task) |",
        f"| one worker process, one thread (from (b)) | {per_worker:.1f} files/s ({1000 / per_worker:.0f} ms a file) |",
        f"| the client's listing (`find_images`, local disk, warm cache) | {list_per_s:.0f} files/s |",
        f"| the client's CSV writer (`format_rows`, a flush per {SHARD}-row shard) | {csv_per_s:.0f} rows/s |",
        "",
        f"At W workers like these the files arrive at W × {per_worker:.1f}/s, in W × {per_worker:.1f} / {SHARD} "
        f"shards/s; the scheduler's share of its time is that × {1000 / tasks_per_s:.2f} ms.",
        "",
        f"| workers | files/s (workers' limit) | shards/s at {SHARD} | scheduler busy at {SHARD} | limit |",
        "|---|---|---|---|---|",
    ]
    for workers in (10, 100, 1000):
        rate = workers * per_worker
        limits = {"workers": rate, f"scheduler at {SHARD}": SHARD * tasks_per_s, "listing": list_per_s,
                  "CSV writer": csv_per_s}
        first = min(limits, key=limits.get)
        lines.append(f"| {workers} | {rate:.0f} | {rate / SHARD:.1f} | {workers * scheduler_share:.1%} | "
                     f"{first} ({limits[first]:.0f} files/s) |")
    smallest = 1000 * per_worker / tasks_per_s / 0.05
    lines += [
        "",
        f"Shard size keeping the scheduler under 5 % at 1,000 workers: at least 1000 × {per_worker:.1f} files/s × "
        f"{1000 / tasks_per_s:.2f} ms / 0.05 = **{smallest:.0f} files** (the default, {SHARD}, is "
        f"{'enough' if SHARD >= smallest else 'not: use --shard-size ' + str(int(-(-smallest // 100) * 100))}). "
        "The scheduler figure is its cost on this 2-core machine shared with the client and the workers; a scheduler "
        "on a machine of its own is faster. Beyond some hundreds of workers the single client's listing and CSV "
        "writing is the next limit: list S3 prefixes in parallel or give each client a part of the archive.",
    ]
    publish(lines, RESULTS, bool(args.quick))


if __name__ == "__main__":
    main()
