"""picsort teach against train.ipynb, on the same 120 photos: how right, how sure of "none of these", how fast?

    python benchmarks/teach.py           # ~6 min on 2 cores, writes results/teach.md
    python benchmarks/teach.py --quick   # ~1 min check: fewer photos checked, no notebook; prints only

Three Imagenette categories (church, parachute, golf_ball), 40 photos each (a fixed sample), are taught:
1. with `picsort teach FOLDER --out DIR` run as a command (a subprocess, start-up included; goal < 60 s), under
   `python -X importtime` so its log says whether fastai was ever imported (goal: never);
2. the same, with `--others` given 10 photos of each other Imagenette class (as train.ipynb's OTHER_THINGS);
3. with train.ipynb executed top to bottom (nbclient, as benchmarks/train_run.py; CATEGORIES edited in its first
   cell as a learner would), on the same folder.
Each model is then checked through the serving path (`load_model`, the CLI's `classify_files`) on the other
Imagenette photos of the three classes (goal >= 97 % answered with their class; a "none of these" answer counts
as wrong) and on the 416 development bears, none of them a church, a parachute or a golf ball (goal >= 90 %
answered "none of these"). The photos are linked into a temporary folder, never copied into the repository.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from results_table import publish  # noqa: E402

from picsort.photos.images import is_image_file  # noqa: E402

SHARED = REPO.parent / "shared" / "datasets"
IMAGENETTE = SHARED / "imagenette"
BEARS = SHARED / "bears"
RESULTS = REPO / "benchmarks" / "results" / "teach.md"
CATEGORIES = {"church": "church", "parachute": "parachute", "golf_ball": "golf ball"}
PER_CLASS = 40
OTHERS_PER_CLASS = 10  # as train.ipynb takes from each OTHER_THINGS sub-folder
SEED = 42


def photos_of(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if is_image_file(f))


def link_photos(files: dict[str, list[Path]], folder: Path) -> Path:
    """A class-folder set of links to `files` (the datasets stay where they are)."""
    for name, members in files.items():
        (folder / name).mkdir(parents=True)
        for file in members:
            (folder / name / file.name).symlink_to(file)
    return folder


def run_teach(source: Path, out: Path, others: Path | None = None) -> dict:
    """`picsort teach` as a command: seconds from start to exit, its summary, whether fastai was ever imported."""
    command = [sys.executable, "-X", "importtime", "-m", "picsort", "teach", str(source), "--out", str(out)]
    command += ["--others", str(others)] if others else []
    started = time.perf_counter()
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"picsort teach failed:\n{result.stderr[-3000:]}")
    # -X importtime logs every module imported, with its full dotted name, to stderr.
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in result.stderr.splitlines()
                if line.startswith("import time:")}
    return {"seconds": seconds, "summary": result.stdout.strip(), "fastai": "fastai" in imported,
            "timm": "timm" in imported}


def run_notebook(source: Path, out: Path, data: Path) -> float:
    """train.ipynb top to bottom on `source` with CATEGORIES set to the three classes; seconds, kernel start included."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(REPO / "train.ipynb", as_version=4)
    first = next(cell for cell in notebook.cells if cell.cell_type == "code" and "CATEGORIES = {" in cell.source)
    start = first.source.index("CATEGORIES = {")
    end = first.source.index("}", start) + 1
    first.source = first.source[:start] + f"CATEGORIES = {CATEGORIES!r}" + first.source[end:]
    os.environ.update(PICSORT_SOURCE=str(source), PICSORT_OUTPUT=str(out), PICSORT_DATA=str(data), MPLBACKEND="Agg")
    os.environ.pop("PICSORT_SMOKE", None)
    client = NotebookClient(notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    started = time.perf_counter()
    client.execute()
    return time.perf_counter() - started


def check(model_folder: Path, unseen: dict[str, list[Path]], bears: list[Path]) -> dict:
    """The model, served as the app serves it, on other photos of its classes and on the bears."""
    from picsort.batch.sort import classify_files
    from picsort.inference.classify import Classifier

    classifier = Classifier(model_folder)
    truth = {str(file): name for name, files in unseen.items() for file in files}
    answers = dict(classify_files(list(truth), classifier))
    right = sum(answers[path].label == name for path, name in truth.items())
    closest = sum(answers[path].closest == name for path, name in truth.items())
    flagged = sum(prediction.none_of_these for _, prediction in classify_files(bears, classifier))
    card = json.loads((model_folder / "model.json").read_text())
    return {"right": right / len(truth), "closest": closest / len(truth), "checked": len(truth),
            "bears_flagged": flagged / len(bears), "bears": len(bears), "card": card}


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 photos a class and 60 bears checked, no notebook; "
                                                             "prints only")
    args = parser.parse_args()
    taught, unseen = {}, {}
    for name in CATEGORIES:
        files = photos_of(IMAGENETTE / name)
        chosen = set(random.Random(SEED).sample(files, PER_CLASS))
        taught[name] = sorted(chosen)
        unseen[name] = [file for file in files if file not in chosen]
    others = {folder.name: photos_of(folder)[:OTHERS_PER_CLASS] for folder in sorted(IMAGENETTE.iterdir())
              if folder.is_dir() and folder.name not in CATEGORIES}
    bears = [file for folder in sorted(BEARS.iterdir()) if folder.is_dir() for file in photos_of(folder)]
    if args.quick:
        unseen = {name: files[:30] for name, files in unseen.items()}
        bears = random.Random(SEED).sample(bears, 60)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="picsort-teach-bench-") as scratch:
        scratch = Path(scratch)
        source = link_photos(taught, scratch / "photos")
        other_things = link_photos(others, scratch / "others")
        runs = {"picsort teach": run_teach(source, scratch / "teach")}
        runs["picsort teach --others"] = run_teach(source, scratch / "teach-others", other_things)
        checks = {"picsort teach": check(scratch / "teach", unseen, bears),
                  "picsort teach --others": check(scratch / "teach-others", unseen, bears)}
        if not args.quick:
            runs["train.ipynb"] = {"seconds": run_notebook(source, scratch / "notebook", scratch / "data"),
                                   "fastai": True, "timm": True}
            checks["train.ipynb"] = check(scratch / "notebook", unseen, bears)
    load_after = os.getloadavg()[0]
    for name, run in runs.items():
        print(f"--- {name}: {run['seconds']:.1f} s\n{run.get('summary', '')}")

    columns = list(runs)
    first = checks[columns[0]]

    def row(measure: str, cells: list[str], goal: str) -> str:
        return f"| {measure} | " + " | ".join(cells) + f" | {goal} |"

    def goal_mark(value: float, ok: bool) -> str:
        return f"{percent(value)} {'✓' if ok else '✗'}"

    lines = [
        f"# picsort teach against train.ipynb (benchmarks/teach.py){' (--quick)' if args.quick else ''}",
        "",
        f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()} "
        f"CPUs, load average {load_before:.1f} before, {load_after:.1f} after. Taught: {PER_CLASS} photos each of "
        f"{', '.join(CATEGORIES)} from Imagenette (a fixed sample, seed {SEED}); `--others` and train.ipynb's "
        f"OTHER_THINGS: {OTHERS_PER_CLASS} photos of each other Imagenette class. Checked through the serving path "
        f"on the other {first['checked']} Imagenette photos of those classes and on {first['bears']} development "
        f"bears (none of them one of the classes).",
        "",
        "| measure | " + " | ".join(f"`{name}`" for name in columns) + " | goal |",
        "|---|" + "---|" * len(columns) + "---|",
        row(f"other photos of the classes answered with their class ({first['checked']})",
            [goal_mark(checks[name]["right"], checks[name]["right"] >= 0.97) for name in columns], "≥ 97 %"),
        row("… their closest class right (a 'none of these' answer counted by its closest class)",
            [percent(checks[name]["closest"]) for name in columns], "–"),
        row("its own held-out figure (the card's validation)",
            [f"{percent(1 - checks[name]['card']['validation']['error_rate'])} of "
             f"{checks[name]['card']['validation']['images']}" for name in columns], "–"),
        row(f"bears answered \"none of these\" ({first['bears']})",
            [goal_mark(checks[name]["bears_flagged"], checks[name]["bears_flagged"] >= 0.9) for name in columns],
            "≥ 90 %"),
        row("seconds, start-up to model folder written",
            [f"{runs[name]['seconds']:.1f}" + ((" ✓" if runs[name]["seconds"] < 60 else " ✗")
                                               if name.startswith("picsort") else "") for name in columns],
            "< 60 s (teach)"),
        row("fastai imported", ["yes (the course's library)" if name == "train.ipynb"
                                else ("yes ✗" if runs[name]["fastai"] else "no ✓") for name in columns], "no (teach)"),
        row("timm imported", ["yes" if runs[name]["timm"] else "no" for name in columns], "–"),
        "",
        "The held-out figure on the card: `picsort teach` holds out 20 % of each class (24 photos) and then fits its "
        "head on all 120; train.ipynb validates on its random 20 % and keeps the head fitted on the other 80 %. "
        "train.ipynb's seconds include what the teach command does not do: the course's `fit_one_cycle`, the "
        "confusion matrix, top losses, the cleaner and `export.pkl`.",
    ]
    publish(lines, RESULTS, args.quick)


if __name__ == "__main__":
    sys.exit(main())
