"""How fast and how lean is the app, next to the bare model, a fresh Python and the course's `load_learner` way?

    python benchmarks/app_speed.py           # full run (~15 min on a busy 2-core machine), writes results/app.md
    python benchmarks/app_speed.py --quick   # ~1-2 min check: fewer runs, small training; prints only

Everything is measured in one run on the shipped model (`model/`), on photos from ../shared/datasets/bears:

1. One image: the app's classify path, `Classifier.predict(jpeg_bytes)` (decode, resize, normalise, forward,
   softmax), against the bare forward `network(x)` on a tensor prepared beforehand, and against fastai's
   `learn.predict(bytes)` on `export.pkl`. Median of many runs; the three alternate run by run, so a busy
   machine slows them alike. Goal: app <= 1.15x bare.
2. 64 images: `Classifier.predict_batch(64 JPEG byte strings)` against one bare forward of the 64 prepared
   tensors, alternating. Goal: app images/s >= 0.85x bare. Also against bare forwards of those tensors in the
   app's own chunks (FORWARD_CHUNK images per pass): the stricter baseline, which shows what preparing costs.
   The bare inputs are prepared channels-last, as the served network takes them.
3. App start: `app.ipynb` executed with nbclient in a fresh kernel as Voila does (cwd = the repository), timed
   from the kernel start request until its last cell is done; against the floor (a fresh kernel that imports
   torch and loads `model.safetensors`) and against the classic app (`from fastai.vision.all import *`,
   `load_learner('model/export.pkl')`, FileUpload + Output + Label). Median of alternating runs.
   Goals: app <= 2x floor and <= 0.5x the load_learner app.
4. Peak RSS of those kernels (VmHWM from /proc/self/status, read in the kernel after its last cell; not
   ru_maxrss, which Linux carries over execve from the process that started the kernel). Goal: app <= 1.25x floor.
5. Training: seconds per epoch and validation error of `fit_one_cycle` on the bears (all layers trained),
   EfficientNet-Lite0 from its offline ImageNet weights against resnet18 from random weights (its
   pretrained weights need a download, impossible offline).

Rows marked "diagnosis" are no goal: the app's preparation time alone, and parts 1-2 repeated in a child
process whose torch uses one thread (on a 2-core machine with busy cores, torch's two threads keep waiting for
each other). Parts 1 and 2 stop at a time budget on a very slow machine; the table gives the runs made.
Other jobs may share the machine: absolute times move with the load, compare rows of one run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # never wait on the Hugging Face hub (this process and every kernel)
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

import torch  # noqa: E402
from results_table import publish  # noqa: E402

from picsort.foundation.folders import MODEL_DIR  # noqa: E402
from picsort.inference.classify import FORWARD_CHUNK, load_model  # noqa: E402
from picsort.inference.model import LEARNER_NAME, WEIGHTS_NAME  # noqa: E402

PHOTOS = REPO.parent / "shared" / "datasets" / "bears"
RESULTS = REPO / "benchmarks" / "results" / "app.md"
KERNEL = "python3"

FLOOR_CELLS = [
    "import torch\nfrom safetensors.torch import load_file\n"
    f"weights = load_file({str(MODEL_DIR / WEIGHTS_NAME)!r})",
]
CLASSIC_CELLS = [
    "from fastai.vision.all import *\nimport ipywidgets as widgets",
    f"learn = load_learner({str(MODEL_DIR / LEARNER_NAME)!r})",
    """\
upload = widgets.FileUpload(accept="image/*")
output = widgets.Output()
label = widgets.Label()

def on_upload(change):
    if not upload.value:
        return
    image = PILImage.create(upload.value[0].content.tobytes())
    output.clear_output()
    with output:
        display(image.to_thumb(128, 128))
    prediction, index, probabilities = learn.predict(image)
    label.value = f"{prediction}: {probabilities[index]:.2%}"

upload.observe(on_upload, names="value")
widgets.VBox([widgets.Label("Select your bear!"), upload, output, label])""",
]
# The kernel's own peak RSS. Not ru_maxrss: Linux keeps that across execve, so a kernel started from this
# (large) process would report this process's peak. VmHWM belongs to the kernel's own address space.
RSS_CELL = "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"


# ---- helpers ------------------------------------------------------------------------------------------------


def photos() -> list[Path]:
    files = sorted(PHOTOS.glob("*/*.jpg"))
    if not files:
        sys.exit(f"no photos in {PHOTOS}")
    return files


def spread(files: list[Path], count: int) -> list[Path]:
    """`count` files evenly spread over the sorted list (so every class is in)."""
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def timed(function) -> float:
    began = time.perf_counter()
    function()
    return time.perf_counter() - began


def median(values: list[float]) -> float:
    return statistics.median(values)


def describe_machine() -> str:
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU build"
    gpu = "a GPU" if torch.cuda.is_available() else "no GPU, runs on CPU"
    model_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    uname = platform.uname()
    processor = platform.processor() or uname.machine
    omp = {name: os.environ[name] for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY") if name in os.environ}
    settings = ", ".join(f"{name}={value}" for name, value in omp.items()) or "OMP_* variables unset"
    return (f"torch {torch.__version__} ({build}, {gpu}), torch.get_num_threads() = {torch.get_num_threads()} "
            f"({settings}), "
            f"{os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), {processor}"
            f"{f' {model_name}' if model_name else ''}, {uname.system} {uname.release}, "
            f"Python {platform.python_version()}")


def goal(ratio: float, limit: float, at_most: bool) -> str:
    """'met' or 'missed by N %' for a ratio against its limit."""
    ok = ratio <= limit if at_most else ratio >= limit
    if ok:
        return "met"
    off = ratio / limit - 1 if at_most else 1 - ratio / limit
    return f"**missed** by {off:.0%}"


# ---- 1 and 2: classify speed in this process --------------------------------------------------------------------


def single_image(files: list[Path], runs: int, learn, budget: float, warm_up: int,
                 fastai: bool = True) -> dict[str, list[float]]:
    """Seconds per image of the app path, the bare forward and learn.predict, alternating run by run.

    Stops after `runs` runs, or earlier once `budget` seconds are spent (but never before a third of `runs`).
    """
    model = load_model()
    data = [path.read_bytes() for path in files]
    # What the bare forward gets: the same images, already decoded, resized, normalised and laid out
    # channels-last by `to_batch`, as the app path does before its forward.
    prepared = [model.to_batch([model.to_tensor(model.to_image(item))]) for item in data]
    network = model.network

    def bare(index: int) -> None:
        with torch.inference_mode():
            network(prepared[index])

    def predict_fastai(index: int) -> None:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            learn.predict(data[index])  # the bytes, as the classic app hands them over

    variants = {
        "app": lambda index: model.predict(data[index]),
        "bare": bare,
        **({"learn": predict_fastai} if fastai else {}),
        # Not a path of its own: the app's work before the forward, to see where extra time goes.
        **({"prepare": lambda index: torch.stack([model.to_tensor(model.to_image(data[index]))])} if fastai else {}),
    }
    for index in range(warm_up):
        for run in variants.values():
            run(index)
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    began = time.perf_counter()
    for number in range(runs):
        if number >= max(3, runs // 3) and time.perf_counter() - began > budget:
            break
        index = number % len(data)
        order = names[number % len(names):] + names[:number % len(names)]  # rotate who goes first
        for name in order:
            times[name].append(timed(lambda: variants[name](index)))  # noqa: B023 - called here
    return times


def batch_of_64(files: list[Path], rounds: int, budget: float, warm_up: bool) -> dict[str, list[float]]:
    """Seconds per 64 images: the app's predict_batch on JPEG bytes vs one bare forward of all 64 and vs bare
    forwards in the app's chunks, alternating.

    Stops after `rounds` rounds, or earlier once `budget` seconds are spent (but never before 3 rounds).
    """
    model = load_model()
    data = [path.read_bytes() for path in files]
    prepared = model.to_batch([model.to_tensor(model.to_image(item)) for item in data])
    network = model.network

    def bare() -> None:
        with torch.inference_mode():
            network(prepared)

    def bare_chunks() -> None:  # the stricter baseline: the forward passes the app makes, and nothing else
        with torch.inference_mode():
            for chunk in prepared.split(FORWARD_CHUNK):
                network(chunk)

    variants = {"app": lambda: model.predict_batch(data), "bare": bare, "chunks": bare_chunks}
    for run in variants.values() if warm_up else ():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    began = time.perf_counter()
    for number in range(rounds):
        if number >= 3 and time.perf_counter() - began > budget:
            break
        for name in names[number % len(names):] + names[:number % len(names)]:  # rotate who goes first
            times[name].append(timed(variants[name]))
    return times


def one_thread_probe(files: list[Path], runs: int, budget: float, rounds: int) -> dict[str, list[float]]:
    """Parts 1 and 2 (app vs bare only) in a process whose torch uses one thread from the start.

    A diagnosis, run in a child process: switching the thread count back and forth in one process
    disturbs the timings. On a machine whose cores are busy, torch's two threads keep waiting for each other.
    """
    torch.set_num_threads(1)
    single = single_image(files[:50], runs, None, budget, warm_up=2, fastai=False)
    batch = batch_of_64(files[50:], rounds, 0.0, warm_up=True)
    return {"app": single["app"], "bare": single["bare"], "batch_app": batch["app"], "batch_bare": batch["bare"],
            "batch_chunks": batch["chunks"]}


def in_child(function, *args):
    """`function(*args)` in a fresh Python process (multiprocessing spawn), its result returned."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


# ---- 3 and 4: fresh kernels -----------------------------------------------------------------------------------


def notebook(cells: list[str]):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3 (ipykernel)", "language": "python"}
    return nb


def run_kernel(nb, env: dict[str, str]) -> tuple[float, float]:
    """(seconds from kernel start request to the last cell done, peak RSS in MB) of `nb` in a fresh kernel.

    Run as Voila runs a notebook: nbclient, a new kernel, working directory = the repository.
    """
    import nbformat
    from nbclient import NotebookClient

    nb = copy.deepcopy(nb)
    rss_cell = nbformat.v4.new_code_cell(RSS_CELL)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=900, allow_errors=False,
                            resources={"metadata": {"path": str(REPO)}})
    client.reset_execution_trackers()
    began = time.perf_counter()
    with client.setup_kernel(env=env, stderr=subprocess.DEVNULL):  # no kernel start-up chatter
        client.wait_for_reply(client.kc.kernel_info())  # as NotebookClient.execute does
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
        seconds = time.perf_counter() - began
        nb.cells.append(rss_cell)
        client.execute_cell(rss_cell, len(nb.cells) - 1)
    text = "".join(output.get("text", "") for output in rss_cell.outputs if output.get("name") == "stdout")
    return seconds, int(text.split()[-1]) / 1024  # VmHWM is in kB


def app_start(rounds: int, scratch: Path) -> dict[str, list[tuple[float, float]]]:
    import nbformat

    labels = scratch / "labels"  # the app's label store, kept out of the repository
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PICSORT_LABELS_DIR": str(labels)}
    notebooks = {
        "app": nbformat.read(REPO / "app.ipynb", as_version=4),
        "floor": notebook(FLOOR_CELLS),
        "classic": notebook(CLASSIC_CELLS),
    }
    for name in ("floor", "classic"):  # written out so they can be opened and checked
        nbformat.write(notebooks[name], scratch / f"{name}.ipynb")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in notebooks}
    names = list(notebooks)
    for number in range(rounds):
        order = names[number % len(names):] + names[:number % len(names)]
        for name in order:
            seconds, rss = run_kernel(notebooks[name], env)
            results[name].append((seconds, rss))
            print(f"  start round {number + 1}: {name} {seconds:.1f} s, peak RSS {rss:.0f} MB", flush=True)
    return results


# ---- 5: training ------------------------------------------------------------------------------------------------


def train(backbone: str, files: list[Path], size: int, epochs: int, batch_size: int) -> tuple[float, float, int]:
    """(seconds per epoch, validation error, validation images) of fit_one_cycle with every layer trained."""
    from fastai.vision.all import error_rate, set_seed, vision_learner

    from picsort.inference.backbones import learner_architecture
    from picsort.training.notebook import training_datablock

    set_seed(42)
    dls = training_datablock(size, get_items=lambda _: list(files)).dataloaders(PHOTOS, bs=batch_size, num_workers=0)
    if backbone == "resnet18":
        from torchvision.models import resnet18

        arch, options = resnet18, dict(pretrained=False)  # random weights: no download possible offline
    else:
        arch, options = learner_architecture(backbone)
    learn = vision_learner(dls, arch, metrics=error_rate, **options)
    learn.unfreeze()  # both train every layer, so their epochs cost the same kind of work
    # One untimed training step first (weights restored after), so neither model's epoch pays for
    # first-call set-up (allocations, kernel selection) and the order of the two runs doesn't matter.
    state = copy.deepcopy(learn.model.state_dict())
    inputs, targets = dls.one_batch()
    learn.loss_func(learn.model.train()(inputs), targets).backward()
    learn.model.zero_grad(set_to_none=True)
    learn.model.load_state_dict(state)
    with learn.no_bar(), learn.no_logging():
        seconds = timed(lambda: learn.fit_one_cycle(epochs, lr_max=1e-3))
    error = float(learn.recorder.values[-1][2])
    return seconds / epochs, error, len(dls.valid_ds)


# ---- the run --------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~1-2 minute check; prints only, writes nothing")
    args = parser.parse_args()
    quick = args.quick
    # Counts and time budgets: a busy machine can make one forward pass 20x slower, so parts 1 and 2 stop
    # early (at a budget) rather than run for ever; the table gives the number of runs actually made.
    runs, runs_budget, warm_up = (8, 25.0, 1) if quick else (50, 100.0, 3)
    batch_rounds, batch_budget = (1, 0.0) if quick else (8, 75.0)
    start_rounds = 1 if quick else 3
    per_class = 30 if quick else None
    train_size, train_epochs, train_bs = (96, 1, 32) if quick else (224, 2, 32)

    files = photos()
    started = datetime.datetime.now().astimezone()
    machine = describe_machine()  # before fastai is imported, which could change the thread count
    load_before = os.getloadavg()
    model = load_model()
    size = model.size

    from picsort.training.export import load_learner_checked

    learn = load_learner_checked(MODEL_DIR)

    print(f"1. one image: up to {runs} alternating runs", flush=True)
    single = single_image(spread(files, 50), runs, learn, runs_budget, warm_up)
    runs = len(single["app"])
    print(f"2. 64 images: up to {batch_rounds} alternating rounds", flush=True)
    batch = batch_of_64(spread(files, 64), batch_rounds, batch_budget, warm_up=not quick)
    batch_rounds = len(batch["app"])
    del learn
    print("1-2. diagnosis: app and bare with one torch thread, in a child process", flush=True)
    probe = in_child(one_thread_probe, spread(files, 50) + spread(files, 64), 30 if not quick else 8,
                     30.0 if not quick else 10.0, 3 if not quick else 1)
    print(f"3-4. fresh kernels: {start_rounds} alternating round(s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="picsort-app-speed-") as scratch:
        kernels = app_start(start_rounds, Path(scratch))
    print("5. training", flush=True)
    if per_class:
        by_class: dict[str, list[Path]] = {}
        for path in files:
            by_class.setdefault(path.parent.name, []).append(path)
        train_files = [path for group in by_class.values() for path in spread(group, per_class)]
    else:
        train_files = files
    training = {}
    for backbone in ("efficientnet_lite0", "resnet18"):
        training[backbone] = train(backbone, train_files, train_size, train_epochs, train_bs)
        print(f"  {backbone}: {training[backbone][0]:.1f} s/epoch, error {training[backbone][1]:.3f}", flush=True)
    load_after = os.getloadavg()
    minutes = (datetime.datetime.now().astimezone() - started).total_seconds() / 60

    ms = {name: median(values) * 1000 for name, values in single.items()}
    rate = {name: 64 / median(values) for name, values in batch.items()}
    ms1 = {name: median(probe[name]) * 1000 for name in ("app", "bare")}
    rate1 = {name: 64 / median(probe[f"batch_{name}"]) for name in ("app", "bare", "chunks")}
    start = {name: median([s for s, _ in values]) for name, values in kernels.items()}
    rss = {name: median([m for _, m in values]) for name, values in kernels.items()}
    app_bare = ms["app"] / ms["bare"]
    batch_ratio = rate["app"] / rate["bare"]
    start_floor, start_classic = start["app"] / start["floor"], start["app"] / start["classic"]
    rss_floor, rss_classic = rss["app"] / rss["floor"], rss["app"] / rss["classic"]
    lite_epoch, lite_error, valid_images = training["efficientnet_lite0"]
    resnet_epoch, resnet_error, _ = training["resnet18"]
    n_train = len(train_files)

    lines = [
        f"# picsort app: speed and memory{' (--quick: fewer runs, small training)' if quick else ''}",
        "",
        f"{started:%Y-%m-%d %H:%M %Z}. {machine}. Load average {load_before[0]:.1f} before, {load_after[0]:.1f} "
        f"after ({minutes:.0f} min run; other jobs share this machine, so compare rows of one run, not runs: "
        f"the variants of each row alternated within the run). Shipped model: {model.card['backbone']}, "
        f"{size} px input, classes {', '.join(model.classes)}.",
        "",
        "| # | measure | path | result | compared with | ratio | goal | |",
        "|---|---|---|---|---|---|---|---|",
        f"| 1 | one image, median of {runs} | app: `Classifier.predict(jpeg_bytes)`, bytes in → probabilities "
        f"| {ms['app']:.1f} ms | bare `network(x)` on a prepared 1×3×{size}×{size} tensor: {ms['bare']:.1f} ms "
        f"| {app_bare:.2f}× | ≤ 1.15× | {goal(app_bare, 1.15, True)} |",
        f"| 1 | | fastai `learn.predict(jpeg_bytes)` on export.pkl | {ms['learn']:.1f} ms | bare: {ms['bare']:.1f} ms "
        f"| {ms['learn'] / ms['bare']:.2f}× | – | app takes {ms['app'] / ms['learn']:.2f}× its time |",
        f"| 1 | | (part of the app path: decode + resize + normalise, no forward) | {ms['prepare']:.1f} ms "
        f"| bare: {ms['bare']:.1f} ms | {ms['prepare'] / ms['bare']:.2f}× | – | |",
        f"| 1 | | (diagnosis, separate process with `torch.set_num_threads(1)`, median of {len(probe['app'])}: "
        f"app path) | {ms1['app']:.1f} ms | bare, also 1 thread: {ms1['bare']:.1f} ms "
        f"| {ms1['app'] / ms1['bare']:.2f}× | – | vs default threads: app {ms1['app'] / ms['app']:.2f}× the time |",
        f"| 2 | 64 images, median of {batch_rounds} | app: `predict_batch(64 JPEG bytes)`, decoding included "
        f"| {rate['app']:.1f} images/s | bare forward of the 64 prepared tensors in one batch: "
        f"{rate['bare']:.1f} images/s "
        f"| {batch_ratio:.2f} | ≥ 0.85 | {goal(batch_ratio, 0.85, False)} |",
        f"| 2 | | | | stricter: bare forwards of the same tensors {FORWARD_CHUNK} at a time, as the app runs "
        f"them: {rate['chunks']:.1f} images/s | {rate['app'] / rate['chunks']:.2f} | – | what decoding, resizing "
        f"and normalising cost |",
        f"| 2 | | (diagnosis, separate process with 1 torch thread, median of {len(probe['batch_app'])}: app) "
        f"| {rate1['app']:.1f} images/s | bare, also 1 thread: {rate1['bare']:.1f} images/s; in chunks of "
        f"{FORWARD_CHUNK}: {rate1['chunks']:.1f} | {rate1['app'] / rate1['bare']:.2f}; "
        f"{rate1['app'] / rate1['chunks']:.2f} | – | vs default threads: app {rate1['app'] / rate['app']:.2f}× "
        f"the speed |",
        f"| 3 | app start, fresh kernel to UI built, median of {start_rounds} | `app.ipynb` via nbclient "
        f"| {start['app']:.1f} s | floor (kernel + import torch + load model.safetensors): {start['floor']:.1f} s "
        f"| {start_floor:.2f}× | ≤ 2× | {goal(start_floor, 2, True)} |",
        f"| 3 | | | | classic app (fastai import + `load_learner` + FileUpload/Output/Label): "
        f"{start['classic']:.1f} s | {start_classic:.2f}× | ≤ 0.5× | {goal(start_classic, 0.5, True)} |",
        f"| 4 | peak RSS of that kernel (VmHWM after its last cell), median of {start_rounds} | `app.ipynb` "
        f"| {rss['app']:.0f} MB "
        f"| floor: {rss['floor']:.0f} MB | {rss_floor:.2f}× | ≤ 1.25× | {goal(rss_floor, 1.25, True)} |",
        f"| 4 | | | | classic app: {rss['classic']:.0f} MB | {rss_classic:.2f}× | – | |",
        f"| 5 | training: `fit_one_cycle({train_epochs})`, all layers, {train_size} px, bs {train_bs}, "
        f"{n_train} photos, RandomSplitter(0.2, seed=42), num_workers=0 | EfficientNet-Lite0, ImageNet weights "
        f"(offline) | {lite_epoch:.1f} s/epoch, validation error {lite_error:.1%} ({valid_images} photos) "
        f"| resnet18: {resnet_epoch:.1f} s/epoch, error {resnet_error:.1%} | {lite_epoch / resnet_epoch:.2f}× "
        f"the time (trained one after the other, not alternated) | – | |",
        f"| 5 | | resnet18, **random weights** (its pretrained weights need a download: impossible offline; "
        f"its error is not what a pretrained resnet18 would get) | {resnet_epoch:.1f} s/epoch, validation error "
        f"{resnet_error:.1%} | | | – | |",
    ]
    publish(lines, RESULTS, quick)


if __name__ == "__main__":
    main()
