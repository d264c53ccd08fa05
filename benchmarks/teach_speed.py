"""Teach mode's Train: how long from pressing Train to the new model answering, and what teaching costs the kernel.

    python benchmarks/teach_speed.py           # ~3 min on 2 cores, writes results/teach-speed.md
    python benchmarks/teach_speed.py --quick   # ~1 min check, fewer repeats; prints only

The photos are Imagenette's (../shared/datasets/imagenette, never copied), added through `TeachSession.add_photo`
as the page adds them, so their features are computed before Train, as in the app. Then, for 10, 50, 100 and 200 photos
(2 classes of 5, 5 of 10, 5 of 20, 5 of 40) and with torch limited to 1 and to 2 threads:
- Train: `TeachSession.train()` (the held-out check, "none of these" and the head: picsort.training.teaching.fit_model);
- Train to answer: Train, then the new model's answer to one photo (bytes in, Prediction out), as the page's
  try-it zone asks it;
each the median of several runs, and as a ratio to the baseline measured in the same run with the same threads:
one photo's answer from a model already trained (its decode, forward pass and head). Goal: Train to answer
<= 1 s for 100 photos.
Memory: in a fresh process, the resident set (RSS) once the body is loaded (a Teach section opened, one photo in),
then after 100 photos are added and Train has run, and the process's peak.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_table import publish  # noqa: E402

IMAGENETTE = REPO.parent / "shared" / "datasets" / "imagenette"
RESULTS = REPO / "benchmarks" / "results" / "teach-speed.md"
CLASSES = ["tench", "church", "parachute", "golf_ball", "gas_pump"]
SIZES = {10: (2, 5), 50: (5, 10), 100: (5, 20), 200: (5, 40)}  # photos: (classes, photos a class)
MEMORY_PHOTOS = (5, 20)  # 100 photos: 5 classes of 20, as the "5 classes x 20 webcam photos"


def photo_bytes(per_class: int, classes: int, skip: int = 0) -> dict[str, list[bytes]]:
    """The first photos of each class (by file name), as bytes."""
    from picsort.photos.images import is_image_file

    chosen = {}
    for name in CLASSES[:classes]:
        files = sorted(f for f in (IMAGENETTE / name).iterdir() if is_image_file(f))[skip:skip + per_class]
        chosen[name] = [file.read_bytes() for file in files]
    return chosen


def median_seconds(action, runs: int) -> float:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def speed(runs: int) -> list[dict]:
    """Train and Train-to-answer seconds for each size and thread count, with the one-answer baseline."""
    import torch

    from picsort.app.teach_session import TeachSession

    largest = max(per for _, per in SIZES.values())
    photos = photo_bytes(largest, max(classes for classes, _ in SIZES.values()))
    full = TeachSession(list(photos))
    started = time.perf_counter()
    for name, members in photos.items():
        for number, data in enumerate(members):
            full.add_photo(name, data, f"{name}-{number}.jpeg")
    adding = (time.perf_counter() - started) / sum(len(members) for members in photos.values())
    probe = photo_bytes(1, 1, skip=largest)[CLASSES[0]][0]  # a photo none of the sessions was taught
    rows = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for total, (classes, per_class) in SIZES.items():
            session = TeachSession(CLASSES[:classes])
            session._preparer = full.preparer  # the body already loaded, as the page's session has it
            for name in CLASSES[:classes]:
                session.photos[name] = full.photos[name][:per_class]
            trained = session.train()
            trained.classifier.predict(probe)  # warm: the first call of a new model's shapes
            answer = median_seconds(lambda: trained.classifier.predict(probe), runs)  # noqa: B023 - called here
            train = median_seconds(session.train, runs)
            train_to_answer = median_seconds(lambda: session.train().classifier.predict(probe), runs)  # noqa: B023
            rows.append({"threads": threads, "photos": total, "classes": classes, "train": train,
                         "train_to_answer": train_to_answer, "one_answer": answer,
                         "validation": trained.fitted.card["validation"]["method"].split(":")[0].split(" (")[0]})
            print(rows[-1], flush=True)
    return rows, adding


def memory_child() -> None:
    """In a fresh process: RSS with the body loaded, after 100 photos and Train, and the peak (JSON on stdout)."""
    import resource

    from picsort.app.teach_session import TeachSession

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc/self/status")

    classes, per_class = MEMORY_PHOTOS
    photos = photo_bytes(per_class, classes)
    session = TeachSession(list(photos))
    first = next(iter(photos))
    session.add_photo(first, photos[first][0], "first.jpeg")  # the body is loaded and has run once
    before = rss()
    for name, members in photos.items():
        for number, data in enumerate(members):
            if (name, number) != (first, 0):
                session.add_photo(name, data, f"{name}-{number}.jpeg")
    added = rss()
    trained = session.train()  # imports scikit-learn and scipy on first use
    trained.classifier.predict(photos[first][1])
    after = rss()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"before": before, "added": added, "after": after, "peak": peak,
                      "photos": sum(session.counts().values())}))


def memory() -> dict:
    result = subprocess.run([sys.executable, __file__, "--memory-child"], capture_output=True, text=True, cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"the memory run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 runs each instead of 7; prints only")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        return memory_child()
    load_before = os.getloadavg()[0]
    rows, adding = speed(3 if args.quick else 7)
    used = memory()
    load_after = os.getloadavg()[0]
    mib = lambda count: f"{count / 2**20:.0f} MiB"  # noqa: E731
    lines = [
        f"# Teach mode: Train to answer, and the kernel's memory (benchmarks/teach_speed.py)"
        f"{' (--quick)' if args.quick else ''}",
        "",
        f"`python benchmarks/teach_speed.py`. {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, {os.cpu_count()} CPUs shared with other work: load average {load_before:.1f} "
        f"before, {load_after:.1f} after (`uptime`). Imagenette photos added through `TeachSession.add_photo` "
        f"({adding:.2f} s a photo here: decoding and the body's forward pass, before Train), so Train starts from "
        f"features, as in the app. Medians of {3 if args.quick else 7} runs; ratios against one photo's answer "
        f"from a model already trained, measured in the same run with the same threads.",
        "",
        "| photos (classes × photos) | torch threads | held out by | Train | Train to answer | one answer "
        "(baseline) | Train to answer ÷ one answer |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        classes = row["classes"]
        lines.append(f"| {row['photos']} ({classes} × {row['photos'] // classes}) | {row['threads']} | "
                     f"{row['validation']} | {row['train']:.3f} s | {row['train_to_answer']:.3f} s | "
                     f"{row['one_answer']:.3f} s | {row['train_to_answer'] / row['one_answer']:.1f}× |")
    lines += [
        "",
        "Goal: Train to answer ≤ 1 s for 100 photos. Under 100 photos every photo is held out once, by one of up "
        "to 10 heads; from 100 on one 20 % split is held out by one head: so 50 photos can take longer than 200.",
        "",
        f"Memory of a fresh process (RSS): {mib(used['before'])} with the body loaded and one photo added; "
        f"{mib(used['added'])} once {used['photos']} photos ({MEMORY_PHOTOS[0]} classes × {MEMORY_PHOTOS[1]}) are "
        f"added; {mib(used['after'])} after Train (scikit-learn and scipy imported) and one answer: "
        f"{mib(used['after'] - used['before'])} more in all ({mib(used['after'])} ÷ {mib(used['before'])} = "
        f"{used['after'] / used['before']:.2f}×); peak {mib(used['peak'])}. "
        f"Each photo is kept as its features (1,280 floats) and a thumbnail; on disk, in the Teach folder, as it "
        f"came.",
    ]
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    sys.exit(main())
