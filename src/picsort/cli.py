"""The command line: `picsort classify FOLDER... --out results.csv` sorts a folder of photos; `picsort teach FOLDER
--out DIR` teaches a new model; `picsort app` serves the web app and `picsort train` opens train.ipynb in JupyterLab.

A thin shell over `picsort.batch.sort.sort_files` and `picsort.training.teaching.teach`: this module parses the arguments, turns
problems into usage messages and prints progress and the summary; the work (and torch) is loaded only once a command
runs, so `picsort --help` is quick. Exit status: 0 when the run finished (bad files included, they get an error
row), 1 when the disk fails it (the CSV or a copy can't be written), 2 for a usage problem (missing folder,
model or option, an --out file that is not ours), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import time
from pathlib import Path
from typing import TextIO

__all__ = ["build_parser", "main", "run"]

PROGRAM = "picsort"

_DESCRIPTION = """\
Classify image files with a trained picsort model and write one CSV row per file.

Folders are scanned for image files by extension (hidden files are left out, and the summary
counts what was left out by extension); files named one by one are always tried. Files that
cannot be read as images get a row with the reason in the "error" column and never stop the
run. Running the same command again with the same --out skips the files already in the CSV,
so an interrupted run continues where it stopped. --out is never overwritten: it must be a new
file, or a results file of the same model."""

_EPILOG = """\
examples:
  picsort classify photos/ --out results.csv
  picsort classify photos/ --recursive --out results.csv --copy-to sorted/
  picsort classify a.jpg b.png --model model/ --threshold 0.9 --out results.csv
  picsort classify archive/ -r --out results.csv --workers 2        # a local Dask cluster
  picsort classify s3://bucket/photos -r --out results.csv --scheduler tcp://host:8786

CSV columns: {columns}. The flags are true or false, so pandas reads them as booleans. An
--out file an older picsort wrote for the same model is rewritten in these columns, then
resumed. Cells a spreadsheet would run as a formula start with ', and control characters or
bytes that are not UTF-8 in a file name are written as backslash escapes (\\n, \\xff)."""


_TEACH_DESCRIPTION = """\
Teach a new classifier the photos in FOLDER, in about a minute on a laptop, and write a model folder
that picsort app (PICSORT_MODEL_DIR), picsort classify --model and picsort.inference.classify.load_model use.

The recipe is train.ipynb's: EfficientNet-Lite2 pretrained on ImageNet, kept as it is, and one
linear layer on its features fitted as a logistic regression. Each class needs at least 3 photos;
a few dozen make a good model. Photos that cannot be read are skipped and counted. Some photos are
held out to measure the model's accuracy (printed, and in the card); the model then learns from
all of them."""


class UsageError(Exception):
    """A problem with the command line the user can fix (exit status 2)."""


def _classify_epilog() -> str:
    """The examples and the CSV's columns, as picsort.batch.columns describes them (it imports no library)."""
    import textwrap

    from picsort.batch.columns import columns_text

    columns = "\n".join(textwrap.wrap(columns_text(), 100))
    return _EPILOG.replace("{columns}", columns)


def installed_version() -> str:
    """picsort's version as pip installed it; the source's own where it runs uninstalled (PYTHONPATH)."""
    try:
        return importlib.metadata.version(PROGRAM)
    except importlib.metadata.PackageNotFoundError:
        from picsort import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The `picsort` argument parser with its `classify` command."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="picsort: sort photos into classes with the image classifier you trained.",
        epilog=f"Run '{PROGRAM} classify --help' for the options of classify (also: python -m picsort).",
    )
    parser.add_argument("--version", action="version", version=f"{PROGRAM} {installed_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    classify = commands.add_parser(
        "classify", help="classify image files or folders into a CSV (and optionally copy them into class folders)",
        description=_DESCRIPTION, epilog=_classify_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    classify.add_argument("inputs", nargs="+", metavar="FOLDER_OR_FILE",
                          help="folders to scan for images, or image files")
    classify.add_argument("--out", required=True, metavar="CSV",
                          help="CSV file to write; if it exists, files already in it are skipped and new rows appended")
    classify.add_argument("--model", metavar="DIR", default=None,
                          help="model folder with model.json and model.safetensors (default: $PICSORT_MODEL_DIR, "
                               "else the shipped model/)")
    classify.add_argument("--batch-size", type=_whole_number(1), default=32, metavar="N",
                          help="images per forward pass of the model (default: %(default)s)")
    classify.add_argument("--threshold", type=_probability, default=None, metavar="P",
                          help="a file is 'unsure' when its top probability is below P (default: the model card's)")
    classify.add_argument("--recursive", "-r", action="store_true",
                          help="also scan sub-folders of the given folders")
    classify.add_argument("--copy-to", metavar="DIR", default=None,
                          help="copy each classified file into DIR/<class>/ (unsure ones into DIR/unsure/, those like "
                               "none of the classes into DIR/none/); originals are never moved, and a different "
                               "file already there keeps its name (the copy gets a -1, -2... suffix)")
    classify.add_argument("--decode-threads", type=_whole_number(0), default=None, metavar="N",
                          help="threads decoding images while the model runs; 0 decodes between batches "
                               "instead (default: picsort.inference.batches.DECODE_WORKERS, 2)")
    classify.add_argument("--workers", type=_whole_number(1), default=None, metavar="N",
                          help="classify on a Dask cluster of N worker processes started on this machine "
                               "(127.0.0.1, one thread each; the dashboard's address is printed)")
    classify.add_argument("--scheduler", metavar="ADDRESS", default=None,
                          help="classify on the workers of a running Dask cluster, e.g. tcp://host:8786 (started "
                               "by dask scheduler / dask worker, dask-jobqueue...); they must be able to read the "
                               "photos, and write --copy-to")
    classify.add_argument("--shard-size", type=_whole_number(1), default=None, metavar="N",
                          help="with --workers or --scheduler: files per task (default: picsort.batch.cluster.SHARD_FILES, "
                               "128)")
    classify.add_argument("--threads", type=_whole_number(1), default=None, metavar="N",
                          help="threads the model itself uses (default: one per CPU this process may use, "
                               "its CPU set or its cgroup's CPU quota, whichever is less)")
    teach = commands.add_parser(
        "teach", help="teach a new model the photos in a folder (one sub-folder per class) or a labels zip",
        description=_TEACH_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  picsort teach photos/ --out my-model\n  picsort teach labels.zip --out my-model "
               "--others other-things/\n  PICSORT_MODEL_DIR=my-model picsort app")
    teach.add_argument("source", metavar="FOLDER",
                       help="one sub-folder of photos per class (its name is the class), or the app's labels zip; "
                            "photos in its none/ sub-folder (labelled 'none of these' in the app) are used as "
                            "photos of other things")
    teach.add_argument("--out", required=True, metavar="DIR",
                       help="model folder to write: new, empty, or one picsort teach wrote before")
    teach.add_argument("--others", metavar="FOLDER", default=None,
                       help="photos of other things (any sub-folders; those named like a class are left out): the "
                            "'none of these' threshold is raised to flag 99 %% of them")
    teach.add_argument("--threads", type=_whole_number(1), default=None, metavar="N",
                       help="threads torch uses (default: one per CPU this process may use)")
    app = commands.add_parser(
        "app", help="serve the web app (app.ipynb) with Voila, at http://localhost:8866 unless told otherwise",
        description="Serve the web app with Voila and its offline page template, to this machine only (localhost, "
                    "requests for other host names refused) unless --lan. Other options go to voila, e.g. "
                    "--no-browser; the model is $PICSORT_MODEL_DIR, else the shipped model/.")
    app.add_argument("--port", type=_port, default=8866, help="port to serve on (default: %(default)s)")
    app.add_argument("--lan", action="store_true",
                     help="serve everyone on this network (a workshop): listen on all interfaces and require a "
                          "random token, printed in the address to hand out")
    export_web = commands.add_parser(
        "export-web", help="write the model as a static web site that classifies in the visitor's browser",
        description="Write a folder holding a web page that classifies photos in the visitor's own browser (ONNX "
                    "Runtime Web, no server, nothing fetched from elsewhere), with the answers of picsort classify. "
                    "Publish it on GitHub Pages or serve it with `python -m http.server` (docs/how-to/web-page.md).")
    export_web.add_argument("--out", required=True, metavar="DIR",
                            help="folder to write: new, empty, or a site written before (replaced)")
    export_web.add_argument("--model", metavar="DIR", default=None,
                            help="model folder (default: $PICSORT_MODEL_DIR, else the shipped model/)")
    commands.add_parser(
        "train", help="open train.ipynb in JupyterLab, as root too",
        description="Open train.ipynb in JupyterLab, from the repository whatever the current folder, as root too "
                    "(plain `jupyter lab` refuses to start as root). Other options go to jupyter lab, e.g. "
                    "--no-browser or --port=8889. Needs requirements.txt's libraries (fastai, JupyterLab).")
    return parser


def _whole_number(minimum: int):
    """An argparse type: a whole number of at least `minimum`, with a plain message otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _port(text: str) -> int:
    port = _whole_number(1)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {port}")
    return port


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (logs stay clean)."""

    def __init__(self, stream: TextIO = sys.stderr):
        self.stream = stream
        self.started = self.drawn = time.perf_counter()
        self.drew = False

    def update_from(self, report) -> None:
        """Draw a `picsort.batch.sort.SortReport` so far: files done of those listed, errors, and (once the listing has
        ended) the time left."""
        now = time.perf_counter()
        if now - self.drawn < 0.2 and not (report.listing_done and report.processed >= report.listed):
            return
        self.drawn, self.drew = now, True
        done, total = report.processed, report.listed
        if report.listing_done and total:
            line = self._bar(done, total, now)
        else:
            line = f"{done}/{total}+ files (still listing) {self._rate(done, now):.1f}/s"
        self.stream.write(f"\r{line}, {report.errors} error{'s' * (report.errors != 1)} ")
        self.stream.flush()

    def update(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if total and (now - self.drawn > 0.2 or done >= total):
            self.drawn, self.drew = now, True
            self.stream.write(f"\r{self._bar(done, total, now)} ")
            self.stream.flush()

    def _rate(self, done: int, now: float) -> float:
        return done / max(now - self.started, 1e-9)

    def _bar(self, done: int, total: int, now: float) -> str:
        """'|████------| done/total files r/s, m:ss left'."""
        rate = self._rate(done, now)
        left = max(total - done, 0) / rate if rate else 0
        width = 30
        filled = min(width, width * done // total)
        return (f"|{'█' * filled}{'-' * (width - filled)}| {done}/{total} files {rate:.1f}/s, "
                f"{int(left) // 60}:{int(left) % 60:02d} left")

    def close(self) -> None:
        if self.drew:
            self.stream.write("\n")
            self.stream.flush()


def summary(report) -> str:
    """The lines printed after a run (a `picsort.batch.sort.SortReport`)."""
    rate = report.processed / report.seconds if report.seconds > 0 else 0.0
    lines = [f"{report.processed} files in {report.seconds:.1f} s ({rate:.1f} images/s), results in {report.out}"]
    width = max([len(name) for name in report.classes] + [13])
    for name in report.classes:
        lines.append(f"  {name:<{width}} {report.counts[name]:>7}")
    lines.append(f"  {'unsure':<{width}} {report.unsure:>7}  (top probability below {report.threshold:g}; "
                 f"its top class in the CSV)")
    lines.append(f"  {'none of these':<{width}} {report.none_of_these:>7}  (look like none of the classes; class "
                 f"none, the closest class beside it)")
    lines.append(f"  {'errors':<{width}} {report.errors:>7}  (not usable as images; reason in the error column)")
    lines.append(f"  {'already done':<{width}} {report.already_done:>7}  (in {report.out.name} from an earlier run)")
    if report.upgraded:
        lines.append(f"{report.out.name} was written by an older picsort: its rows were rewritten in today's columns "
                     f"(class none for photos like none of the classes, the closest class beside it, flags true/false)")
    if report.not_images:
        kinds = ", ".join(f"{count} {extension}" for extension, count
                          in sorted(report.not_images.items(), key=lambda pair: (-pair[1], pair[0])))
        total = sum(report.not_images.values())
        lines.append(f"skipped {total} file{'s' * (total != 1)} that {'are' if total != 1 else 'is'} not "
                     f"{'images' if total != 1 else 'an image'}: {kinds}")
    if report.copied:
        lines.append(f"copied {report.copied} files into {report.copy_to}{os.sep}<class>{os.sep}")
    return "\n".join(lines)


# ---- the command -----------------------------------------------------------------------------------------


def _check_inputs(args) -> tuple[Path, Path | None]:
    from picsort.foundation.remote import is_url, url_exists

    urls = [item for item in args.inputs if is_url(item)]
    missing = [item for item in args.inputs if not is_url(item) and not os.path.lexists(item)]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(missing))
    for url in urls:
        try:
            found = url_exists(url)
        except Exception as exc:  # noqa: BLE001 - no s3fs, no credentials, no network: the user's to fix
            raise UsageError(f"cannot list {url}: {type(exc).__name__}: {exc}") from None
        if not found:
            raise UsageError(f"nothing at {url}")
    if urls and args.copy_to:
        raise UsageError(f"--copy-to works for files on disk only, not for {urls[0]}: copy them from the CSV's rows")
    if args.workers is not None and args.scheduler:
        raise UsageError("give --workers (a new cluster on this machine) or --scheduler (a running one), not both")
    given = [name for name, value in (("--threads", args.threads), ("--decode-threads", args.decode_threads))
             if value is not None]
    if (args.workers or args.scheduler) and given:
        raise UsageError(f"{' and '.join(given)} set one process's threads: on a cluster each worker process runs "
                         f"the model on its Dask threads (dask worker --nthreads; --workers starts them with one)")
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a CSV file name")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: the folder {out.parent} does not exist")
    copy_to = Path(args.copy_to) if args.copy_to else None
    if copy_to is not None and copy_to.exists() and not copy_to.is_dir():
        raise UsageError(f"--copy-to {copy_to} is a file, not a folder")
    if args.model is not None and not os.path.isdir(args.model):
        raise UsageError(f"no such model folder: {args.model}")
    return out, copy_to


def _load_classifier(folder: str | None):
    from picsort.foundation.vocabulary import check_class_names
    from picsort.inference.classify import load_model  # torch loads here, after the cheap checks
    from picsort.inference.model import ModelFolderError, model_dir

    try:
        classifier = load_model(folder)
    except ModelFolderError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broken model folder is the user's to fix, not a traceback
        raise UsageError(f"could not load the model in {model_dir(folder)}: {type(exc).__name__}: {exc}") from None
    try:
        check_class_names(classifier.classes)  # before a cluster starts: sort_files checks them too
    except ValueError as exc:
        raise UsageError(f"the model in {model_dir(folder)} cannot be used: its {exc}") from None
    return classifier


def _set_threads(threads: int | None) -> int:
    """Set the model's torch threads for this run (None: no more than the CPU quota allows, as the app's
    kernel does); returns the previous setting."""
    import torch

    from picsort.foundation.cpu_quota import fit_torch_threads

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    else:
        fit_torch_threads()
    return previous


def classify_command(args, own_process: bool = False) -> int:
    """Run `classify` with parsed arguments; returns the exit status."""
    out, copy_to = _check_inputs(args)
    from picsort.batch import sort as bulk
    from picsort.batch.results import ResultsFileError
    from picsort.foundation.process_memory import reuse_freed_memory

    if own_process:
        reuse_freed_memory()
    classifier = _load_classifier(args.model)
    previous_threads = _set_threads(args.threads)
    client = close_client = None
    try:
        if args.workers or args.scheduler:
            client, close_client = _cluster_client(args)
        progress = _Progress() if sys.stderr.isatty() else None
        try:
            report = bulk.sort_files(args.inputs, classifier, out, recursive=args.recursive, copy_to=copy_to,
                                     threshold=args.threshold, batch_size=args.batch_size,
                                     workers=(bulk.DECODE_WORKERS if args.decode_threads is None
                                              else args.decode_threads),
                                     on_rows=progress.update_from if progress else None, client=client,
                                     shard_size=args.shard_size)
        finally:
            if progress:
                progress.close()
    except ResultsFileError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if close_client:
            close_client()
        # main() may run inside a notebook or a test session: leave torch as it was found.
        _set_threads(previous_threads)
    if report.interrupted:
        print(f"\ninterrupted: the finished rows are in {out}; run the same command again to continue",
              file=sys.stderr)
        return 130
    print(summary(report))
    if report.processed + report.already_done == 0:
        hint = "" if args.recursive else " (sub-folders are only scanned with --recursive)"
        print(f"no image files found in {', '.join(args.inputs)}{hint}", file=sys.stderr)
    return 0


def _cluster_client(args):
    """`(client, close)` for --workers (a local cluster) or --scheduler (a running one); prints the dashboard."""
    from picsort.batch.cluster import connect  # Dask loads only for these options

    try:
        client, close = connect(workers=args.workers, scheduler=args.scheduler)
    except (OSError, TimeoutError) as exc:
        where = f"the Dask scheduler at {args.scheduler}" if args.scheduler else "a local Dask cluster"
        raise UsageError(f"could not start or reach {where}: {type(exc).__name__}: {exc}") from None
    workers = len(client.scheduler_info().get("workers", {}))
    print(f"Dask cluster: {workers} worker{'s' * (workers != 1)}, dashboard at {client.dashboard_link}",
          file=sys.stderr)
    return client, close


def teach_command(args) -> int:
    """Run `teach` with parsed arguments; returns the exit status."""
    from picsort.training.notebook import NotEnoughPhotosError
    from picsort.training.teaching import TeachError, teach  # torch loads here

    previous_threads = _set_threads(args.threads)
    progress = _Progress() if sys.stderr.isatty() else None
    try:
        taught = teach(args.source, args.out, others=args.others, on_progress=progress.update if progress else None)
    except (TeachError, NotEnoughPhotosError) as exc:
        raise UsageError(str(exc)) from None
    finally:
        if progress:
            progress.close()
        _set_threads(previous_threads)
    print(taught)
    return 0


def export_web_command(args) -> int:
    """Run `export-web` with parsed arguments (picsort.web.site); returns the exit status."""
    from picsort.inference.model import ModelFolderError
    from picsort.web.site import SiteError, write_site

    try:
        site = write_site(args.out, args.model)
    except (SiteError, ModelFolderError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {site.folder} ({site.size / 1e6:.1f} MB, classes: {', '.join(site.classes)}); try it with:\n"
          f"  python -m http.server --directory {site.folder} 8000   # then open http://localhost:8000")
    return 0


def app_command(args, voila_options: list[str]) -> int:
    """`voila app.ipynb` (picsort.serving.voila_server), until it stops."""
    from picsort.serving.voila_server import serve_app

    return serve_app(voila_options, lan=args.lan, port=args.port)


def lab_command(lab_options: list[str]) -> list[str]:
    """The `jupyter lab train.ipynb` command line `picsort train` runs, with the options the user gave for it."""
    # --allow-root lifts only JupyterLab's refusal to start as root (a container's or a cloud machine's shell);
    # for anyone else it changes nothing.
    return [sys.executable, "-m", "jupyterlab", "--allow-root", "train.ipynb", *lab_options]


def train_command(lab_options: list[str]) -> int:
    """Become JupyterLab on train.ipynb (exec: Ctrl-C and its shutdown question stay JupyterLab's own)."""
    import importlib.util

    from picsort.foundation.folders import REPOSITORY

    missing = [name for name in ("jupyterlab", "fastai") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"{PROGRAM} train: error: train.ipynb needs {' and '.join(missing)}, which {sys.executable} cannot "
              f"import: pip install -r requirements.txt (a Binder image has no fastai: train elsewhere)",
              file=sys.stderr)
        return 2
    if REPOSITORY is None:
        print(f"{PROGRAM} train: error: train.ipynb is in picsort's repository, and this picsort is installed "
              f"without it: git clone it and pip install -e . there", file=sys.stderr)
        return 2
    os.chdir(REPOSITORY)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, lab_command(lab_options))


def main(argv: list[str] | None = None, *, own_process: bool = False) -> int:
    """Run the command line with `argv` (default: sys.argv); returns the exit status.

    `own_process` applies settings meant for a process of its own (glibc memory reuse), as `run` does.
    """
    parser = build_parser()
    args, passed_on = parser.parse_known_args(argv)  # options for Voila (app) or JupyterLab (train)
    if args.command in ("classify", "teach"):
        from picsort.foundation.cpu_quota import let_idle_threads_sleep

        let_idle_threads_sleep()  # before torch loads
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "app":
        return app_command(args, passed_on)
    if args.command == "train":
        return train_command(passed_on)
    if passed_on:
        parser.error(f"unrecognized arguments: {' '.join(passed_on)}")
    try:
        if args.command == "teach":
            return teach_command(args)
        if args.command == "export-web":
            return export_web_command(args)
        return classify_command(args, own_process)
    except UsageError as exc:
        print(f"{PROGRAM} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # The disk, not a photo: the CSV can't be written or a copy failed (full, read-only). The rows of
        # the batch in hand were not written, so a re-run after fixing it redoes exactly those files.
        print(f"{PROGRAM} {args.command}: error: {exc}", file=sys.stderr)
        return 1


def run() -> int:
    """The `picsort` command and `python -m picsort`."""
    status = main(own_process=True)
    if status == 130:
        # Interrupted: the rows are flushed and closed. Leave now rather than wait, at interpreter exit, for
        # a decoding thread still stuck on a slow file.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
