"""The command line: `python -m picsort classify FOLDER... --out results.csv` sorts a folder of photos.

It streams files through `picsort.bulk.classify_batches` (the same classify steps as the app), writes one
CSV row per file and flushes after every batch, so a stopped run can simply be started again: rows
already in the CSV are skipped. Exit status: 0 when the run finished (bad files included, they get an
error row), 1 when the disk fails it (the CSV or a copy can't be written), 2 for a usage problem
(missing folder, model or option), 130 when interrupted with Ctrl-C.
"""

from __future__ import annotations

import argparse
import csv
import filecmp
import io
import itertools
import os
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TextIO

from picsort.bulk import DECODE_WORKERS, classify_batches, find_images
from picsort.images import IMAGE_SUFFIXES, UnusableImageError

__all__ = ["UNSURE_FOLDER", "build_parser", "csv_header", "main"]

UNSURE_FOLDER = "unsure"
# Paths are bytes on Linux; surrogateescape lets a file name that isn't valid UTF-8 round-trip the CSV.
_ENCODING, _ERRORS = "utf-8", "surrogateescape"

_DESCRIPTION = """\
Classify image files with a trained picsort model and write one CSV row per file.

Folders are scanned for image files (%s);
files named one by one are always tried. Files that cannot be read as images get a row
with the reason in the "error" column and never stop the run. Running the same command
again with the same --out skips the files already in the CSV, so an interrupted run
continues where it stopped.""" % " ".join(sorted(IMAGE_SUFFIXES))

_EPILOG = """\
examples:
  python -m picsort classify photos/ --out results.csv
  python -m picsort classify photos/ --recursive --out results.csv --copy-to sorted/
  python -m picsort classify a.jpg b.png --model model/ --threshold 0.9 --out results.csv

CSV columns: path, class, probability, p_<class> for every class, unsure (yes when the top
probability is below the threshold), error (why a file could not be used; empty otherwise)."""


class UsageError(Exception):
    """A problem with the command line the user can fix (exit status 2)."""


def build_parser() -> argparse.ArgumentParser:
    """The `picsort` argument parser with its `classify` command."""
    parser = argparse.ArgumentParser(
        prog="python -m picsort",
        description="picsort: sort photos into classes with the image classifier you trained.",
        epilog="Run 'python -m picsort classify --help' for the options of classify.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    classify = commands.add_parser(
        "classify", help="classify image files or folders into a CSV (and optionally copy them into class folders)",
        description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
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
                          help="copy each classified file into DIR/<class>/ (unsure ones into DIR/%s/); originals "
                               "are never moved, and a different file already there keeps its name (the copy "
                               "gets a -1, -2... suffix)" % UNSURE_FOLDER)
    classify.add_argument("--workers", type=_whole_number(0), default=DECODE_WORKERS, metavar="N",
                          help="threads decoding images while the model runs; 0 decodes between batches "
                               "instead (default: %(default)s)")
    classify.add_argument("--threads", type=_whole_number(1), default=None, metavar="N",
                          help="threads the model itself uses (default: torch's, one per CPU core)")
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


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability between 0 and 1, got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value:g}")
    return value


def csv_header(classes: list[str]) -> list[str]:
    """The CSV's columns for a model with these classes."""
    return ["path", "class", "probability", *(f"p_{name}" for name in classes), "unsure", "error"]


def _key(path: str) -> str:
    """How a path is recognised as done: absolute and normalised, so `./a.jpg` and `a.jpg` match."""
    return os.path.normcase(os.path.abspath(path))


# ---- the results CSV -------------------------------------------------------------------------------------


def _drop_partial_last_line(out: Path) -> None:
    """Cut a half-written last row (a run killed mid-write) so the resumed run starts on a clean line."""
    with open(out, "rb+") as file:
        end = file.seek(0, os.SEEK_END)
        position, chunk = end, 64 * 1024
        while position > 0:  # read backwards: the file may be large, the damage is only at its end
            start = max(0, position - chunk)
            file.seek(start)
            data = file.read(position - start)
            newline = data.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        else:
            cut = 0
        if cut < end:
            file.truncate(cut)


def read_done(out: Path, header: list[str]) -> set[str]:
    """Keys of the files already in an existing results CSV (after repairing a partial last row)."""
    if not out.exists():
        return set()
    _drop_partial_last_line(out)
    done: set[str] = set()
    with open(out, newline="", encoding=_ENCODING, errors=_ERRORS) as file:
        reader = csv.reader(file)
        found = next(reader, None)
        if found is None:
            return done
        if found != header:
            raise UsageError(f"{out} has other columns than this model writes ({','.join(found[:6])}...): "
                             f"it was written by another model; use a new --out file")
        for row in reader:
            if len(row) == len(header):
                done.add(_key(row[0]))
    return done


def _format_rows(results, classes: list[str]) -> str:
    """CSV text for a batch of `(path, Prediction or UnusableImageError)`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for path, result in results:
        if isinstance(result, UnusableImageError):
            writer.writerow([path, "", "", *([""] * len(classes)), "", str(result)])
        else:
            # 8 decimals: finer than a float32 probability needs to stay within 1e-7 of the model's value.
            writer.writerow([path, result.label, f"{result.probability:.8f}",
                             *(f"{result.probabilities[name]:.8f}" for name in classes),
                             "yes" if result.unsure else "no", ""])
    return buffer.getvalue()


# ---- copying into class folders --------------------------------------------------------------------------


def _folder_name(name: str) -> str:
    """A class name made safe as one folder name."""
    name = name.replace(os.sep, "_").replace("/", "_")
    return "_" if name in ("", ".", "..") else name


def copy_into(source: str, folder: Path) -> Path:
    """Copy `source` into `folder` without overwriting a different file; returns where the copy is.

    A file of the same name and the same bytes counts as already copied (a resumed run); a different
    one keeps its name and the copy gets a `-1`, `-2`... suffix.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(source)
    stem, suffix = os.path.splitext(name)
    for number in itertools.count():
        target = folder / (name if number == 0 else f"{stem}-{number}{suffix}")
        if not target.exists():
            # Copy under a hidden name first: a run killed mid-copy never leaves a half file that looks real.
            partial = folder / f".{target.name}.picsort-partial"
            shutil.copy2(source, partial)
            os.replace(partial, target)
            return target
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            return target
    raise AssertionError("unreachable")


# ---- progress and summary --------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal (logs stay clean)."""

    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total, self.stream, self.done = total, stream, 0
        self.enabled = total > 0 and stream.isatty()
        self.started = self.drawn = time.perf_counter()

    def advance(self, count: int) -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self.drawn > 0.2 or self.done >= self.total):
            self.drawn = now
            rate = self.done / max(now - self.started, 1e-9)
            left = max(self.total - self.done, 0) / rate if rate else 0
            width = 30
            filled = min(width, width * self.done // self.total)
            self.stream.write(f"\r|{'█' * filled}{'-' * (width - filled)}| {self.done}/{self.total} files "
                              f"{rate:.1f}/s, {int(left) // 60}:{int(left) % 60:02d} left ")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


def _summary(counts: Counter, classes: list[str], threshold: float, out: Path, seconds: float,
             copy_to: Path | None, copied: int) -> str:
    processed = counts["classified"] + counts["errors"]
    rate = processed / seconds if seconds > 0 else 0.0
    lines = [f"{processed} files in {seconds:.1f} s ({rate:.1f} images/s), results in {out}"]
    width = max([len(name) for name in classes] + [8])
    for name in classes:
        lines.append(f"  {name:<{width}} {counts['class:' + name]:>7}")
    lines.append(f"  {'unsure':<{width}} {counts['unsure']:>7}  (top probability below {threshold:g}; "
                 f"best guess in the CSV)")
    lines.append(f"  {'errors':<{width}} {counts['errors']:>7}  (not usable as images; reason in the error column)")
    lines.append(f"  {'skipped':<{width}} {counts['skipped']:>7}  (already in {out.name})")
    if copy_to is not None:
        lines.append(f"copied {copied} files into {copy_to}{os.sep}<class>{os.sep}")
    return "\n".join(lines)


# ---- the command -----------------------------------------------------------------------------------------


def _check_inputs(args) -> tuple[Path, Path | None]:
    missing = [item for item in args.inputs if not os.path.exists(item)]
    if missing:
        raise UsageError("no such file or folder: " + ", ".join(missing))
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
    from picsort.classify import load_model  # torch loads here, after the cheap checks
    from picsort.model import ModelFolderError, model_dir

    try:
        return load_model(folder)
    except ModelFolderError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a broken model folder is the user's to fix, not a traceback
        raise UsageError(f"could not load the model in {model_dir(folder)}: {type(exc).__name__}: {exc}") from None


def _set_threads(threads: int | None) -> int:
    """Set the model's torch threads for this run (None: leave torch's); returns the previous setting."""
    import torch

    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    return previous


def classify_command(args) -> int:
    """Run `classify` with parsed arguments; returns the exit status."""
    out, copy_to = _check_inputs(args)
    classifier = _load_classifier(args.model)
    previous_threads = _set_threads(args.threads)
    try:
        return _classify(args, classifier, out, copy_to)
    finally:
        # main() may run inside a notebook or a test session: leave torch as it was found.
        _set_threads(previous_threads)


def _classify(args, classifier, out: Path, copy_to: Path | None) -> int:
    classes = classifier.classes
    threshold = classifier.threshold if args.threshold is None else args.threshold
    header = csv_header(classes)
    done = read_done(out, header)
    unsure_folder = UNSURE_FOLDER if UNSURE_FOLDER not in classes else f"_{UNSURE_FOLDER}"
    skip = [copy_to] if copy_to is not None else []

    def todo(counts: Counter | None = None):
        for path in find_images(args.inputs, args.recursive, skip=skip):
            if _key(path) in done:
                if counts is not None:
                    counts["skipped"] += 1
                continue
            yield path

    counts: Counter = Counter()
    progress = _Progress(sum(1 for _ in todo()) if sys.stderr.isatty() else 0)  # the count pass holds no pixels
    copied = 0
    started = time.perf_counter()
    with open(out, "a", newline="", encoding=_ENCODING, errors=_ERRORS) as file:
        if file.tell() == 0:
            csv.writer(file, lineterminator="\n").writerow(header)
            file.flush()
        try:
            for batch in classify_batches(todo(counts), classifier, args.batch_size, workers=args.workers,
                                          threshold=threshold):
                for path, result in batch:
                    if isinstance(result, UnusableImageError):
                        counts["errors"] += 1
                        continue
                    counts["classified"] += 1
                    counts["unsure" if result.unsure else "class:" + result.label] += 1
                    if copy_to is not None:
                        # Copy before the row is written: a run killed in between copies it again on resume,
                        # finds the identical file already there and leaves it, rather than never copying it.
                        folder = unsure_folder if result.unsure else _folder_name(result.label)
                        copy_into(path, copy_to / folder)
                        copied += 1
                # One write and a flush per batch: a killed run keeps every finished batch.
                file.write(_format_rows(batch, classes))
                file.flush()
                progress.advance(len(batch))
        except KeyboardInterrupt:
            progress.close()
            print(f"\ninterrupted: the finished rows are in {out}; run the same command again to continue",
                  file=sys.stderr)
            return 130
    progress.close()
    print(_summary(counts, classes, threshold, out, time.perf_counter() - started, copy_to, copied))
    if counts["classified"] + counts["errors"] + counts["skipped"] == 0:
        hint = "" if args.recursive else " (sub-folders are only scanned with --recursive)"
        print(f"no image files found in {', '.join(args.inputs)}{hint}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m picsort`; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return classify_command(args)
    except UsageError as exc:
        print(f"python -m picsort {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # The disk, not a photo: the CSV can't be written or a copy failed (full, read-only). The rows of
        # the batch in hand were not written, so a re-run after fixing it redoes exactly those files.
        print(f"python -m picsort {args.command}: error: {exc}", file=sys.stderr)
        return 1
