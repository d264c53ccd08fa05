"""The exported web page against the Voila app, in Chromium, on the same photos: how soon the first answer, how
fast each photo after it, and twenty visitors at once from one `python -m http.server`.

    python benchmarks/web_page.py           # 2 alternating rounds, writes results/web-page.md (~4 min)
    python benchmarks/web_page.py --quick   # 1 round, prints only

The site is `picsort export-web` of the shipped model, served by `python -m http.server` on 127.0.0.1; the app is
`picsort app` (rehearsal.browser's route, as the browser tests serve it). Each round, for both:

1. First answer: from asking for the page until the first photo's card shows its answer, the photo given as soon
   as the page's file chooser is there (the page queues it while its model loads; the app's kernel must start).
2. Per photo after it: the other photos in one selection, from handing them over to the last card, divided by
   their number. Goal: the page <= 1.5x the app.

Then twenty Chromium contexts open the page at once and each classifies two photos: how long until all twenty
have their answers, and the slowest visitor's. Photos: 20 development bears (../shared/datasets/bears), spread
over the classes, else the six examples. Other jobs may share the machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from results_table import publish  # noqa: E402

from picsort.web.site import write_site  # noqa: E402
from rehearsal.browser import (  # noqa: E402
    CARD,
    browser,
    chromium_path,
    free_port,
    picsort_app_route,
    upload,
    wait_for_app,
    wait_for_cards,
)

PHOTOS = REPO.parent / "shared" / "datasets" / "bears"
RESULTS = REPO / "benchmarks" / "results" / "web-page.md"
PHOTO_COUNT = 20
VISITORS = 20


def photos() -> list[Path]:
    if PHOTOS.is_dir():
        files = sorted(PHOTOS.glob("*/*.jpg"))
        step = max(1, len(files) // PHOTO_COUNT)
        return files[::step][:PHOTO_COUNT]
    return sorted((REPO / "examples").glob("*.jpg"))


@contextlib.contextmanager
def served(folder: Path):
    """`python -m http.server` serving `folder` on 127.0.0.1; yields its URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                                "--directory", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import socket

        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until(page, expression: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise TimeoutError(expression)
        time.sleep(0.02)


def web_round(chromium, url: str, files: list[Path]) -> tuple[float, float]:
    context = chromium.new_context()
    page = context.new_page()
    started = time.monotonic()
    page.goto(url, wait_until="commit")
    wait_until(page, "window.picsortWeb !== undefined")  # app.js has run: its file chooser listens
    page.set_input_files("#choose", [str(files[0])], timeout=600_000)
    wait_until(page, "window.picsortWeb && window.picsortWeb.results.length === 1")
    first = time.monotonic() - started
    started = time.monotonic()
    page.set_input_files("#choose", [str(file) for file in files[1:]], timeout=600_000)
    wait_until(page, f"window.picsortWeb.results.length === {len(files)}")
    per_photo = (time.monotonic() - started) / (len(files) - 1)
    assert not page.evaluate("window.picsortWeb.results.filter(r => r.error).length")
    context.close()
    return first, per_photo


def app_round(chromium, files: list[Path], scratch: Path) -> tuple[float, float]:
    with picsort_app_route(scratch) as server:
        context = chromium.new_context()
        page = context.new_page()
        started = time.monotonic()
        page.goto(server.page_url, wait_until="commit")
        wait_for_app(page)
        upload(page, files[:1])
        wait_for_cards(page, 1)
        first = time.monotonic() - started
        started = time.monotonic()
        upload(page, files[1:])
        wait_for_cards(page, len(files))
        per_photo = (time.monotonic() - started) / (len(files) - 1)
        assert page.locator(CARD).count() >= len(files)
        context.close()
    return first, per_photo


def crowd(chromium, url: str, files: list[Path]) -> tuple[float, float]:
    """Twenty visitors at once: seconds until every one has two answers, and the slowest visitor's first."""
    contexts = [chromium.new_context() for _ in range(VISITORS)]
    pages = [context.new_page() for context in contexts]
    started = time.monotonic()
    for page in pages:
        page.goto(url, wait_until="commit")
    for index, page in enumerate(pages):
        wait_until(page, "window.picsortWeb !== undefined", 600)
        page.set_input_files("#choose", [str(files[index % len(files)]), str(files[(index + 7) % len(files)])],
                             timeout=600_000)  # twenty pages loading at once on 2 cores: the chooser can be slow
    firsts = []
    for page in pages:
        wait_until(page, "window.picsortWeb.results.length === 2", 600)
        firsts.append(page.evaluate("window.picsortWeb.timings[0].finished") / 1000)  # since that page's start
        assert not page.evaluate("window.picsortWeb.results.filter(r => r.error).length")
    everyone = time.monotonic() - started
    for context in contexts:
        context.close()
    return everyone, max(firsts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round, print only")
    args = parser.parse_args()
    rounds = 1 if args.quick else 2
    files = photos()
    executable = chromium_path()
    if executable is None:
        sys.exit("needs Debian's chromium")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="picsort-web-bench-") as scratch_name:
        scratch = Path(scratch_name)
        site = write_site(scratch / "site")
        measured = {"page": [], "app": []}
        with browser(executable) as chromium, served(site.folder) as url:
            for index in range(rounds):
                order = ("page", "app") if index % 2 == 0 else ("app", "page")
                for which in order:
                    if which == "page":
                        measured["page"].append(web_round(chromium, url, files))
                    else:
                        work = scratch / f"app-{index}"
                        work.mkdir()
                        measured["app"].append(app_round(chromium, files, work))
                    print(which, measured[which][-1], flush=True)
            everyone, slowest_first = crowd(chromium, url, files)
    first = {which: statistics.median(run[0] for run in runs) for which, runs in measured.items()}
    each = {which: statistics.median(run[1] for run in runs) for which, runs in measured.items()}
    ratio = each["page"] / each["app"]

    def rounds_of(which: str, index: int, unit: str) -> str:
        return ", ".join(f"{run[index] * 1000:.0f}" if unit == "ms" else f"{run[index]:.1f}" for run in measured[which])
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# The web page (`picsort export-web`) against the app",
        "",
        f"{now}, {os.cpu_count()} CPUs, load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after; "
        f"median of {rounds} alternating round(s), {len(files)} photos "
        f"({'development bears' if PHOTOS.is_dir() else 'examples'}), "
        f"Debian's Chromium. The site ({site.size / 1e6:.1f} MB) from `python -m http.server` on 127.0.0.1, the app "
        "from `picsort app`; the page's ONNX Runtime Web sessions run one thread each (a plain static server sends no "
        "cross-origin isolation headers), two of them side by side in workers on this 2-core machine. Each round's "
        "figure in brackets, page then app: other jobs on this machine move them a lot.",
        "",
        "| measure | web page | Voila app | page / app | goal |",
        "|---|---|---|---|---|",
        f"| first answer, from asking for the page | {first['page']:.2f} s ({rounds_of('page', 0, 's')}) | "
        f"{first['app']:.2f} s ({rounds_of('app', 0, 's')}) | {first['page'] / first['app']:.2f}x | – |",
        f"| each photo after it ({len(files) - 1} in one selection) | {each['page'] * 1000:.0f} ms "
        f"({rounds_of('page', 1, 'ms')}) | {each['app'] * 1000:.0f} ms ({rounds_of('app', 1, 'ms')}) | {ratio:.2f}x | "
        f"<= 1.5x {'✓' if ratio <= 1.5 else '✗'} |",
        f"| {VISITORS} visitors at once, 2 photos each, one `python -m http.server` | all answered in "
        f"{everyone:.1f} s (slowest first answer {slowest_first:.1f} s after its page opened) | – | – | "
        f"all answered {'✓'} |",
    ]
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    main()
