"""How fast is `python -m picsort classify`, and does its memory stay flat?

(a) Images per second of the CLI path (files found, decoded in background threads, classified in batches,
    rows written to a CSV) against a bare batched forward of the same model over the same images decoded
    beforehand. Goal: CLI / bare >= 0.8. Variants show what the decoding threads and the torch thread
    count do; they take turns slice by slice so a busy machine slows every variant alike.
(b) Peak RSS of the CLI in a subprocess on all the photos against the first 400. Goal: within 10 %.

    python benchmarks/cli_throughput.py           # all of /work/shared/datasets/imagenette, writes results/cli.md
    python benchmarks/cli_throughput.py --quick   # 400 photos, prints only
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The process settings `python -m picsort` makes (picsort/__main__.py), so the in-process rows below
# measure the CLI as shipped; part (c) measures what each setting does.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from picsort.batch.sort import DECODE_WORKERS, find_images  # noqa: E402
from picsort.foundation.process_memory import reuse_freed_memory  # noqa: E402

reuse_freed_memory()

import torch  # noqa: E402
from results_table import publish  # noqa: E402

from picsort.cli import main as cli_main  # noqa: E402
from picsort.inference.classify import load_model  # noqa: E402

PHOTOS = REPO.parent / "shared" / "datasets" / "imagenette"
RESULTS = REPO / "benchmarks" / "results" / "cli.md"
BATCH = 32
SLICE = 640  # photos per turn; the bare forward holds one slice of decoded tensors, not all 3,925


def bare_forward(files: list[str], threads: int) -> tuple[float, float]:
    """(wall, CPU) seconds the model alone takes over `files`, decoded (untimed) before the clock starts."""
    model = load_model()
    torch.set_num_threads(threads)
    tensors = [model.to_tensor(model.to_image(path)) for path in files]
    began, cpu = time.perf_counter(), time.process_time()
    for first in range(0, len(tensors), BATCH):
        model.probabilities(torch.stack(tensors[first:first + BATCH]))
    return time.perf_counter() - began, time.process_time() - cpu


def cli_path(folder: Path, count: int, threads: int, workers: int) -> tuple[float, float]:
    """(wall, CPU) seconds of the CLI's own main() over `folder` in this process (model loaded), CSV included."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "results.csv"
        began, cpu = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(io.StringIO()):
            status = cli_main(["classify", str(folder), "--recursive", "--out", str(out), "--batch-size",
                               str(BATCH), "--threads", str(threads), "--decode-threads", str(workers)])
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        assert status == 0
        rows = out.read_text().count("\n") - 1
    assert rows == count, (rows, count)
    return seconds, cpu


# Ways to start the CLI for part (c): as shipped, and without one or both of its process settings
# (calling cli.main directly skips picsort/__main__.py, where they are made).
_PLAIN = "from picsort.cli import main; raise SystemExit(main())"
_MALLOC_ONLY = "from picsort.foundation.process_memory import reuse_freed_memory as r; r(); " + _PLAIN
LAUNCHERS = {
    "as shipped: idle OpenMP threads sleep + malloc reuses memory": (["-m", "picsort"], None),
    "OpenMP threads sleep only": (["-c", _PLAIN], "PASSIVE"),
    "malloc reuses memory only": (["-c", _MALLOC_ONLY], "ACTIVE"),
    "neither (OpenMP and glibc defaults)": (["-c", _PLAIN], "ACTIVE"),
}


# Runs a command and writes its peak RSS (KB) to a file. A child's ru_maxrss starts from its parent's
# size at fork, so the CLI is started from this small interpreter, not from this benchmark (GBs by now).
_PEAK_RSS = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[2:]).returncode; "
             "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
             "sys.exit(code)")


def cli_subprocess(folder: Path, launcher: str = next(iter(LAUNCHERS))) -> tuple[float, float, str]:
    """(peak RSS in MB, images/s from its summary, the summary's first line) of the CLI with default
    options in a fresh process, started as `LAUNCHERS[launcher]` says."""
    start, wait_policy = LAUNCHERS[launcher]
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "HF_HUB_OFFLINE": "1"}
        env.pop("OMP_WAIT_POLICY")  # set above for this process; the child gets its own
        if wait_policy:
            env["OMP_WAIT_POLICY"] = wait_policy
        peak_file, out = Path(scratch) / "peak", Path(scratch) / "results.csv"
        with open(Path(scratch) / "stdout", "w+") as stdout:
            subprocess.run([sys.executable, "-c", _PEAK_RSS, str(peak_file), sys.executable, *start, "classify",
                            str(folder), "--recursive", "--out", str(out)],
                           env=env, stdout=stdout, stderr=subprocess.DEVNULL, check=True)
            stdout.seek(0)
            summary = stdout.readline().strip()
        rate = float(re.search(r"\(([\d.]+) images/s\)", summary).group(1))
        return int(peak_file.read_text()) / 1024, rate, summary


def linked_folder(files: list[str], root: Path) -> Path:
    """A folder of symlinks to `files`, keeping their class sub-folders (so the CLI scans it the same way)."""
    for path in files:
        link = root / Path(path).parent.name / Path(path).name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    return root


def machine() -> str:
    parallel = torch.__config__.parallel_info()
    backend = next((line.split(":", 1)[1].strip() for line in parallel.splitlines()
                    if line.startswith("ATen parallel backend")), "?")
    blas = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    return (f"torch {torch.__version__} ({backend}, {blas}, oneDNN {torch.backends.mkldnn.is_available()}), "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs "
            f"({len(os.sched_getaffinity(0))} usable), torch default threads {torch.get_num_threads()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="400 photos, no run over all files, no results file")
    args = parser.parse_args()

    files = list(find_images([PHOTOS], recursive=True))
    measured = files[:400] if args.quick else files
    size = 200 if args.quick else SLICE
    slices = [measured[start:start + size] for start in range(0, len(measured), size)]
    cores = torch.get_num_threads()  # torch's default, which the CLI keeps
    variants = [  # (name, torch threads, decode threads); None = bare forward
        ("bare forward, decoded beforehand", 1, None),
        ("bare forward, decoded beforehand", cores, None),
        ("CLI, decoding between batches", 1, 0),
        ("CLI, decoding between batches", cores, 0),
        (f"CLI, {DECODE_WORKERS} decoding threads", 1, DECODE_WORKERS),
        (f"CLI default: {DECODE_WORKERS} decoding threads", cores, DECODE_WORKERS),
    ]
    default = next(i for i, (name, *_rest) in enumerate(variants) if name.startswith("CLI default"))
    wall, cpu = [0.0] * len(variants), [0.0] * len(variants)
    slice_ratios: list[float] = []  # CLI default / best bare, within one slice (the same machine load)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch:
        folders = [linked_folder(chunk, Path(scratch) / f"slice{k}") for k, chunk in enumerate(slices)]
        first400 = linked_folder(files[:400], Path(scratch) / "first400")
        load_model()
        cli_path(folders[0], len(slices[0]), cores, DECODE_WORKERS)  # warm the file cache and the kernels
        # (a) Variants take turns slice by slice (in a rotating order), so a busy spell on this shared
        # machine slows all of them alike instead of whichever happened to run then.
        for k, (chunk, folder) in enumerate(zip(slices, folders)):
            taken = {}
            for index in [(k + shift) % len(variants) for shift in range(len(variants))]:
                _, threads, workers = variants[index]
                taken[index], used = (bare_forward(chunk, threads) if workers is None
                                      else cli_path(folder, len(chunk), threads, workers))
                wall[index] += taken[index]
                cpu[index] += used
            best_bare = min(taken[i] for i, (_, _, w) in enumerate(variants) if w is None)
            slice_ratios.append(best_bare / taken[default])
            print(f"slice {k + 1}/{len(slices)}: " + ", ".join(f"{len(chunk) / taken[i]:.0f}"
                  for i in range(len(variants))) + f" images/s; default/bare {slice_ratios[-1]:.2f}", flush=True)
        torch.set_num_threads(cores)
        # (c) The CLI's process settings, each left out in turn, taking turns again.
        settings: dict[str, list[tuple[float, float]]] = {name: [] for name in LAUNCHERS}
        for _ in range(1 if args.quick else 2):
            for name in settings:
                settings[name].append(cli_subprocess(first400, name)[:2])
        print("process settings:", settings, flush=True)
        # (b) Peak memory: the first 400 files, then all of them.
        small_rss, _, small_summary = cli_subprocess(first400)
        if not args.quick:
            large_rss, _, large_summary = cli_subprocess(PHOTOS)
    load_after = os.getloadavg()

    rates = [len(measured) / taken for taken in wall]
    bare = max(rate for rate, (_, _, workers) in zip(rates, variants) if workers is None)
    lines = [
        f"# CLI throughput and memory ({len(measured)} imagenette photos, 224×224 JPEG; batch {BATCH})",
        "",
        f"{machine()}; process settings as `python -m picsort` makes them (part c). Load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after: other jobs share this machine, so the "
        f"variants took turns on {len(slices)} slices of ≤{size} photos; images/s = photos / total seconds.",
        "",
        "## (a) Images per second: the CLI path against the model alone",
        "",
        "| path | torch threads | decode threads | images/s | vs best bare forward | CPU ms per image |",
        "|---|---|---|---|---|---|",
    ]
    for rate, used, (name, threads, workers) in zip(rates, cpu, variants):
        shown = "–" if workers is None else ("0 (between batches)" if workers == 0 else str(workers))
        lines.append(f"| {name} | {threads} | {shown} | {rate:.1f} | {rate / bare:.2f} | "
                     f"{1000 * used / len(measured):.1f} |")
    lines += [
        "",
        f"CLI default / best bare forward: **{rates[default] / bare:.2f}** over all photos; median of the "
        f"per-slice ratios {statistics.median(slice_ratios):.2f} (goal ≥ 0.8).",
        "",
        "## (b) Peak memory of `python -m picsort classify` (subprocess, default options)",
        "",
        "| files | peak RSS (MB) | its summary |",
        "|---|---|---|",
        f"| first 400 | {small_rss:.0f} | {small_summary} |",
    ]
    if not args.quick:
        lines.append(f"| all {len(files)} | {large_rss:.0f} | {large_summary} |")
        lines += ["", f"Peak RSS, all files vs first 400: **{large_rss / small_rss - 1:+.1%}** (goal within 10 %)."]
    lines += [
        "",
        "## (c) The CLI's process settings (picsort/__main__.py), each left out in turn",
        "",
        "OMP_WAIT_POLICY=PASSIVE: idle OpenMP threads sleep rather than spin. `reuse_freed_memory()`: glibc",
        "malloc keeps freed blocks instead of unmapping each batch's activations and faulting them in again.",
        "",
        "| CLI started with | images/s, first 400 files (each run) | peak RSS MB (each run) |",
        "|---|---|---|",
        *(f"| {name} | {', '.join(f'{rate:.1f}' for _, rate in runs)} | "
          f"{', '.join(f'{rss:.0f}' for rss, _ in runs)} |" for name, runs in settings.items()),
    ]
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    main()
