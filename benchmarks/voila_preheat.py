"""Would Voila's preheated kernels make the app appear sooner, and what would they cost in memory?

    python benchmarks/voila_preheat.py           # 2 alternating rounds, writes results/voila-preheat.md
    python benchmarks/voila_preheat.py --quick   # 1 round, prints only

Serves app.ipynb with `voila` as the README does, once as configured (a kernel starts when a page asks for
it) and once with `--preheat_kernel=True --pool_size=1` (Voila runs the notebook in a spare kernel ahead
of time). For each, in Debian's Chromium: the time from requesting the page until the upload button is on
screen, (1) right after the server accepts connections, as on Binder, where the browser is sent to the
app as soon as the server is up, and (2) for a second visitor some seconds later; then the number of
kernels left running and their summed RSS (what a 2 GB Binder pod has to hold).
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # rehearsal/

from results_table import publish  # noqa: E402  (beside this script)

from rehearsal.ports import free_port  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "voila-preheat.md"
MODES = {"as configured": [], "preheated pool of 1": ["--preheat_kernel=True", "--pool_size=1"]}
SECOND_VISIT_AFTER = 20.0  # seconds: time for a pool to refill before the next visitor



def wait_for_port(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"voila exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    sys.exit("voila did not start")


def kernels(process: subprocess.Popen) -> list[psutil.Process]:
    return [child for child in psutil.Process(process.pid).children(recursive=True)
            if "ipykernel_launcher" in " ".join(child.cmdline())]


def page_seconds(browser, url: str) -> float:
    """Seconds from asking for the page until the app's upload button is visible."""
    page = browser.new_page()
    began = time.perf_counter()
    page.goto(url, timeout=300_000)
    page.locator(".picsort-upload").wait_for(timeout=300_000)
    seconds = time.perf_counter() - began
    page.close()
    return seconds


def one_round(mode: str, browser, scratch: Path) -> dict:
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PICSORT_LABELS_DIR": str(scratch / "labels")}
    command = [sys.executable, "-m", "voila", "app.ipynb", "--no-browser", f"--port={port}",
               "--Voila.ip=127.0.0.1", *MODES[mode]]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_port(port, process)
        url = f"http://127.0.0.1:{port}/"
        first = page_seconds(browser, url)
        time.sleep(SECOND_VISIT_AFTER)
        second = page_seconds(browser, url)
        time.sleep(3)  # let a pool refill start
        running = kernels(process)
        rss = sum(kernel.memory_info().rss for kernel in running) / 2**20
        return {"first": first, "second": second, "kernels": len(running), "rss": rss}
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round; prints only")
    args = parser.parse_args()
    rounds = 1 if args.quick else 2
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with sync_playwright() as playwright, tempfile.TemporaryDirectory(prefix="picsort-preheat-") as scratch:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        names = list(MODES)
        for number in range(rounds):
            for mode in names[number % 2:] + names[:number % 2]:  # alternate who goes first
                result = one_round(mode, browser, Path(scratch))
                results[mode].append(result)
                print(f"  round {number + 1}, {mode}: {result}", flush=True)
        browser.close()

    lines = [
        f"# Voila with and without preheated kernels{' (--quick)' if args.quick else ''}",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; median of {rounds} alternating round(s). `voila app.ipynb` on "
        f"127.0.0.1, page opened in Debian's Chromium; 'UI shown' = the upload button is visible.",
        "",
        "| voila | first visit, right after the server is up | second visit, "
        f"{SECOND_VISIT_AFTER:.0f} s later | kernels running after | their RSS |",
        "|---|---|---|---|---|",
    ]
    for mode, runs in results.items():
        first = statistics.median(r["first"] for r in runs)
        second = statistics.median(r["second"] for r in runs)
        count = max(r["kernels"] for r in runs)
        rss = statistics.median(r["rss"] for r in runs)
        lines.append(f"| {mode} `{' '.join(MODES[mode]) or '(voila.json only)'}` | {first:.1f} s | {second:.1f} s "
                     f"| {count} | {rss:.0f} MB |")
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    main()
