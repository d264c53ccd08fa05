"""The app in a Binder pod: memory and time for phone photos and for teaching.

    python benchmarks/binder_pod.py           # writes results/binder-pod.md
    python benchmarks/binder_pod.py --quick   # prints only

Builds and serves the pod exactly as tests/test_binder_pod.py does (rehearsal.binder: repo2docker's base
packages and binder/requirements.txt in the Python binder/runtime.txt names, binder/postBuild and the server run
as a non-root user from a clean clone of HEAD, mybinder's /etc/jupyter, a cgroup with one CPU's time by quota and
every core visible) and drives it in Debian's Chromium (needs root):

1. the rehearsal, started with an empty page cache: mybinder's 2G (2 x 10^9 bytes), three visits (reloading
   between them) each choosing 20 phone photos (12 MP, 3-4 MB JPEGs made from examples/, one in five two bears
   half and half, which the app decodes whole a second time) at once, then Teach mode with Chromium's fake camera
   (5 classes x 20 photos, Train, a try-it photo): the cgroup's peak memory (goal <= 1.5 GB), its process memory
   peak (no page cache: what the limit can only meet by killing), OOM kills, each visit's seconds from the
   selection to the last card, seconds to take the 100 photos and to train; and, as its floor, the same pod
   started the same way running only `import torch`;
2. sixty phone photos in one selection, in a pod with room to spare (so the measurement is not cut short by a
   kill): the kernel's peak resident memory against its memory right after the page loaded (goal <= 1.5x),
   whether all 60 cards came, and how long they took.

The machine is shared (2 cores, other work on them): the load average before and after is in the results.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # rehearsal/
from results_table import publish  # beside this script

from rehearsal.binder import as_pod_user, binder_pod_route, pod_cgroup, pod_env, pod_environment, pod_user  # noqa: E402
from rehearsal.browser import (
    EXAMPLES,
    FAKE_CAMERA,
    REPO,
    MemorySampler,
    browser,
    chromium_path,
    make_phone_photos,
    teach,
    visit,
)
from rehearsal.throwaway_cgroup import read_keyed

RESULTS = REPO / "benchmarks" / "results" / "binder-pod.md"
PHOTOS = REPO / "benchmarks" / "output" / "phone-photos"  # gitignored; reused between runs
ROOMY_MEMORY = 16 * 1024**3
MB = 1024**2
GB = 1024**3


def drop_page_cache() -> bool:
    """Empty the machine's page cache (root only), so the pod reads its libraries as a fresh Binder pod does."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
    except OSError:
        return False
    return True


def import_floor(user, environment: Path, work: Path) -> dict:
    """The same kind of pod, started cold, running only `import torch`: what the libraries alone cost it."""
    import subprocess

    cold = drop_page_cache()
    with pod_cgroup(f"picsort-bench-floor-{os.getpid()}") as pod:
        command = as_pod_user(["python", "-c", "import torch"], user, environment, work / "environment-layer")
        subprocess.run(pod.wrap(command), check=True, cwd=user.home, env=pod_env(user, environment))
        cache = read_keyed(pod.memory / "memory.stat").get("cache" if pod.version == 1 else "file", 0)
        return {"cold": cold, "peak": pod.peak_bytes(), "cache": cache}


TEACH_CLASSES = ["mug", "pen", "key", "hat", "cup"]


def rehearsal(chromium: str, user, environment: Path, photos: list[Path], work: Path) -> dict:
    # Files are charged to the cgroup that first reads them: with the pod environment's libraries already cached
    # (an earlier run) the pod's peak would leave them out, which a pod starting on a fresh node cannot.
    work.mkdir(parents=True)
    try_photo = work / "try-it-photo.jpg"
    shutil.copyfile(EXAMPLES / "grizzly-1.jpg", try_photo)
    cold = drop_page_cache()
    with pod_cgroup(f"picsort-bench-pod-{os.getpid()}") as pod:
        killed = lambda: pod.oom_kills() > 0  # noqa: E731
        with binder_pod_route(work / "server", user, environment, wrap=pod.wrap) as server, \
                browser(chromium, FAKE_CAMERA) as chrome, MemorySampler(pod.anonymous_bytes) as process_memory:
            page = chrome.new_page()
            visits, taught = [], None
            for number in range(3):
                visits.append(visit(page, server, photos, reload=number > 0, killed=killed))
                print(f"  visit {number + 1}: {visits[-1]['cards']} cards, {visits[-1]['seconds']:.1f} s", flush=True)
                if killed():
                    break
            visits_peak = pod.peak_bytes()
            if not killed():
                taught = teach(page, TEACH_CLASSES, 20, try_photo, killed=killed)
                print(f"  teach: {taught}", flush=True)
            page.close()
            kernels = len(server.kernels())
        return {"cold": cold, "peak": pod.peak_bytes(), "visits_peak": visits_peak,
                "process_peak": process_memory.peak, "oom_kills": pod.oom_kills(), "limit_hits": pod.limit_hits(),
                "throttled": pod.throttled_periods(), "visits": visits, "teach": taught, "kernels_left": kernels}


def sixty_in_one(chromium: str, user, environment: Path, photos: list[Path], work: Path) -> dict:
    readings = {}

    def kernel_rss() -> int:
        return psutil.Process(readings["pid"]).memory_info().rss

    def on_loaded(pid):
        readings["pid"] = pid
        readings["loaded"] = kernel_rss()
        readings["sampler"] = MemorySampler(kernel_rss, every_seconds=0.1).__enter__()

    with pod_cgroup(f"picsort-bench-roomy-{os.getpid()}", ROOMY_MEMORY) as pod:
        with binder_pod_route(work, user, environment, wrap=pod.wrap) as server, browser(chromium) as chrome:
            page = chrome.new_page()
            try:
                seen = visit(page, server, photos, reload=False, on_loaded=on_loaded, timeout_seconds=300)
            except Exception as error:  # e.g. the browser side gives up on one huge websocket message
                seen = {"cards": None, "seconds": None, "error": f"{type(error).__name__}: {str(error)[:200]}"}
            finally:
                if "sampler" in readings:
                    readings["sampler"].__exit__(None, None, None)
            log = server.log.read_text(errors="replace")
        oom_kills = pod.oom_kills()
    return {**seen, "loaded": readings["loaded"], "peak": readings["sampler"].peak, "oom_kills": oom_kills,
            "too_big": "too big" in log.lower() or "max_message_size" in log.lower()}


def outcome(sixty: dict) -> str:
    if sixty.get("error"):
        return f"the run broke: `{sixty['error'].splitlines()[0]}`" + (
            " (server log: websocket message over the size limit)" if sixty["too_big"] else "")
    if sixty["cards"] == 60:
        return f"60 of 60, {sixty['seconds']:.1f} s"
    return f"{sixty['cards']} of 60 (gave up after {sixty['seconds']:.0f} s)"


def near_an_edge(photos: list[Path]) -> list[bool]:
    """Which photos the shipped model answers near an edge, so that the app decodes them whole a second time."""
    from picsort.inference.classify import load_model

    model = load_model()
    return [model.near_an_edge(model.predictions(model.to_batch([model.to_tensor(model.to_image(photo))]))[0])
            for photo in photos]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="prints only")
    args = parser.parse_args()
    chromium = chromium_path()
    if chromium is None:
        sys.exit("needs Debian's chromium (apt-get install chromium)")
    started = datetime.datetime.now().astimezone()
    load_before = os.getloadavg()[0]
    with pod_user() as user:  # each part in a fresh user and HOME (a clean clone), as each Binder launch is
        environment, install_seconds = pod_environment(user)
    recorded = json.loads((environment / "picsort-installed.json").read_text())["install_seconds"]
    photos = make_phone_photos(PHOTOS, 60)
    sizes = [photo.stat().st_size / MB for photo in photos]
    near = near_an_edge(photos)

    with tempfile.TemporaryDirectory(prefix="picsort-binder-pod-") as scratch:
        with pod_user() as user:
            floor = import_floor(user, pod_environment(user)[0], Path(scratch) / "floor")
        print(f"floor: {floor}", flush=True)
        print("rehearsal: 3 visits x 20 photos, then Teach mode, in a 2G pod with one CPU's time", flush=True)
        with pod_user() as user:
            pod = rehearsal(chromium, user, pod_environment(user)[0], photos[:20], Path(scratch) / "rehearsal")
        print(f"  {pod}", flush=True)
        print("60 photos in one selection", flush=True)
        with pod_user() as user:
            sixty = sixty_in_one(chromium, user, pod_environment(user)[0], photos, Path(scratch) / "sixty")
        print(f"  {sixty}", flush=True)

    visit_seconds = [v["seconds"] for v in pod["visits"] if v["cards"] == 20]
    ratio = sixty["peak"] / sixty["loaded"]
    taught = pod["teach"] or {}
    lines = [
        f"# The app in a Binder pod{' (--quick)' if args.quick else ''}",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}, {os.cpu_count()} CPUs on the machine, shared with other work: load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after. The pod as tests/test_binder_pod.py builds it "
        f"(rehearsal.binder): Python from binder/runtime.txt, repo2docker's base packages, then "
        f"binder/requirements.txt with PyPI's torch build (installed in {recorded:.0f} s"
        f"{'' if install_seconds is None else ', this run'}), binder/postBuild and `jupyter server` as a non-root "
        "user from a clean clone of HEAD, mybinder's /etc/jupyter; one CPU's time by quota, both cores visible. "
        f"Photos: 4032x3024 JPEGs made from examples/, {min(sizes):.1f}-{max(sizes):.1f} MB; {sum(near[:20])} of the "
        f"first 20 and {sum(near)} of all 60 are answers near an edge, decoded whole a second time (two bears half "
        "and half). Page in Debian's Chromium (`benchmarks/binder_pod.py`).",
        "",
        "| figure | measured | goal |",
        "|---|---|---|",
        f"| rehearsal (2G pod, 3 visits x 20 photos reloading, then Teach 5 x 20): cgroup peak, page cache included"
        f"{' (started with an empty page cache, as a fresh pod)' if pod['cold'] else ' (page cache as found)'} | "
        f"{pod['peak'] / GB:.2f} GiB ({pod['visits_peak'] / GB:.2f} GiB before Teach) | <= 1.5 GB |",
        f"| floor: the same pod started the same way, running only `import torch` | {floor['peak'] / GB:.2f} GiB "
        f"({floor['cache'] / GB:.2f} GiB of it the page cache of its libraries) | |",
        f"| rehearsal: process memory peak (no page cache) | {pod['process_peak'] / GB:.2f} GiB | |",
        f"| same: OOM kills / limit hits / kernels left after | {pod['oom_kills']} / {pod['limit_hits']} / "
        f"{pod['kernels_left']} | 0 / - / 1 |",
        f"| same: cards per visit | {', '.join(str(v['cards']) for v in pod['visits'])} | 20 each |",
        f"| same: periods the CPU quota held the pod back in | {pod['throttled']} | |",
        "| Teach mode in the pod: 100 fake-camera photos (one click each, features computed as they come) / Train | "
        + (f"{taught['capture_seconds']:.0f} s ({taught['capture_seconds'] / 100:.2f} s a photo) / "
           f"{taught['train_seconds']:.1f} s; try-it photo answered `{taught['verdict']}`"
           if taught.get("status") else f"not finished: {taught or 'never started'}") + " | no kernel killed |",
        "| 20 x 12-MP photos in one selection, selection -> last card (one CPU's time) | "
        + (f"{statistics.median(visit_seconds):.1f} s (median of {len(visit_seconds)} visits: "
           f"{', '.join(f'{s:.1f}' for s in visit_seconds)})" if visit_seconds else "never (no visit got 20 cards)")
        + " | |",
        f"| 60 photos in one selection ({sum(sizes):.0f} MB): kernel peak RSS / RSS right after the page loaded | "
        + ("not measured: the photos never reached the kernel" if sixty.get("error") else
           f"{sixty['peak'] / GB:.2f} / {sixty['loaded'] / GB:.2f} GiB = **{ratio:.2f}x**") + " | <= 1.5x |",
        f"| same: cards shown, seconds | {outcome(sixty)} | 60 |",
    ]
    if sixty.get("error"):
        lines += ["", "The 60-photo run broke in the browser before the kernel saw the photos: Playwright's driver "
                  "ran out of memory ('Zone Allocation failed') while Chromium sent the selection, which an uploader "
                  f"that sends all files in one websocket message (the stock FileUpload) sends as ~{sum(sizes):.0f} "
                  "MB, over Voila's 128 MB cap anyway."]
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    main()
