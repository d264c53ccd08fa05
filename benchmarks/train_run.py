"""How long does a whole train.ipynb run take on the 416 development bears, from gathering to export?

    python benchmarks/train_run.py          # ~3 min on 2 cores, writes results/train-run.md

train.ipynb is executed top to bottom with nbclient, as a workshop would run it (`SOURCE` the development
photos, output to a throw-away folder, never model/), and each cell is timed. Goal: <= 3 minutes on this
2-core machine. The machine's load is reported beside the figure: other jobs slow it down.
"""

from __future__ import annotations

import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from results_table import publish

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "train-run.md"
BEARS = REPO.parent / "shared" / "datasets" / "bears"


def main() -> None:
    notebook = nbformat.read(REPO / "train.ipynb", as_version=4)
    timings: list[tuple[float, str]] = []
    with tempfile.TemporaryDirectory(prefix="picsort-train-run-") as scratch:
        os.environ.update(PICSORT_SOURCE=str(BEARS), PICSORT_OUTPUT=str(Path(scratch) / "model"),
                          PICSORT_DATA=str(Path(scratch) / "data"), MPLBACKEND="Agg")  # gathered afresh, as a first run
        client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        with client.setup_kernel():
            kernel_ready = time.perf_counter() - started
            for index, cell in enumerate(notebook.cells):
                if cell.cell_type != "code":
                    continue
                start = time.perf_counter()
                client.execute_cell(cell, index)
                timings.append((time.perf_counter() - start, cell.source.splitlines()[0][:70]))
        total = time.perf_counter() - started
        load_after = os.getloadavg()[0]
    slowest = sorted(timings, reverse=True)[:6]
    lines = [
        "# A whole train.ipynb run (benchmarks/train_run.py)",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {load_before:.1f} before, {load_after:.1f} after. SOURCE: the 416 development photos.",
        "",
        f"**Total: {total:.0f} s** (goal <= 180 s), kernel start {kernel_ready:.1f} s included.",
        "",
        "| slowest cells | seconds |",
        "|---|---|",
        *[f"| `{source}` | {seconds:.1f} |" for seconds, source in slowest],
    ]
    publish(lines, RESULTS, quick=False)


if __name__ == "__main__":
    sys.exit(main())
