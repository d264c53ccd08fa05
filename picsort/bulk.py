"""Classify many image files at a steady memory footprint: find them, decode ahead, run the model in batches.

`sort_files` is what `picsort classify` runs (the command line only parses and prints); a notebook can call
it too:

    from picsort.bulk import sort_files
    from picsort.classify import load_model

    report = sort_files(["photos"], load_model(), "results.csv", recursive=True, copy_to="sorted")
    print(report.counts)

or take the results one by one:

    for path, result in classify_files(find_images(["photos"], recursive=True), load_model()):
        print(path, result)   # a Prediction (its label: a class, or "none"), or the UnusableImageError saying why
                              # the file can't be used

Every image goes through `Classifier.to_image`, `.to_tensor`, `.predictions` and `.answered_whole_near_edges`, the same steps
as `Classifier.predict`, so a file gets the same probabilities here as in the app.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import filecmp
import itertools
import os
import shutil
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from picsort.cpu_quota import let_idle_threads_sleep

let_idle_threads_sleep()  # before torch loads OpenMP
import torch  # noqa: E402

from picsort.classify import Classifier, Prediction
from picsort.images import UnusableImageError, decoded_reduced, is_image_file
from picsort.labels import NONE_LABEL, check_class_name
from picsort.remote import is_url
from picsort.results import format_rows, open_results, path_key

__all__ = ["DECODE_WORKERS", "UNSURE_FOLDER", "Result", "SortReport", "answer_folder", "classify_batches",
           "classify_files", "copy_into", "find_images", "prepare_file", "reuse_freed_memory", "sort_files"]

UNSURE_FOLDER = "unsure"

# Decoding threads. Pillow releases the GIL while it decodes and resizes, so two threads keep a batch
# ready while the model runs the previous one (see benchmarks/cli_throughput.py for the measurements).
DECODE_WORKERS = 2

Result = tuple[str, Prediction | UnusableImageError]
_END = object()


def reuse_freed_memory() -> bool:
    """Have glibc's malloc keep and reuse freed memory, for a process that runs batch after batch.

    By default every large block (a batch's activations: tens of MB) is mapped fresh from the kernel and
    handed back when freed, so each batch pays again for zeroing those pages: on a 2-core machine more
    time went to that (system time) than to the model itself, and turning it off doubled the throughput
    (benchmarks/cli_throughput.py). The price: a higher peak (about 1.5 GB instead of 1.2 GB for the CLI
    at batch 32, 224 px), kept by the process until it exits. Process-wide and permanent, so for a
    process of its own: `python -m picsort` calls it at start-up.
    Returns False where there is no glibc (macOS, Windows, musl), leaving things as they are.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8  # from glibc's <malloc.h>
    # No separate mappings for large blocks, and never give the top of the heap back to the kernel. Few
    # arenas: each thread's arena would keep its own freed memory (peak RSS varied more run to run).
    return all(mallopt(option, value) for option, value in
               ((m_mmap_max, 0), (m_trim_threshold, 1 << 30), (m_arena_max, 2)))


def find_images(inputs: Iterable[str | os.PathLike], recursive: bool = False,
                skip: Iterable[str | os.PathLike] = (), not_images: Counter | None = None) -> Iterator[str]:
    """Image files in the given files and folders, one at a time, in a stable (sorted) order.

    An fsspec URL (`s3://bucket/prefix`) is listed as a folder is (`picsort.remote.find_url_images`) and its
    photos come as URLs. Folders contribute files with an image suffix (`picsort.images.is_image_file`; hidden
    files and folders are left out), their sub-folders only when `recursive`. A file named directly is always
    yielded. Each file comes once, even when named twice. Folders in `skip` (say, where results are copied to)
    are not entered. Files a folder scan leaves out as not images are counted in `not_images` by extension
    (".pdf", or "no extension").
    """
    seen: set[str] = set()
    skipped = {os.path.realpath(folder) for folder in skip}
    visited: set[tuple[int, int]] = set()  # (device, inode) of folders entered: symlink loops end here

    def once(path: str) -> bool:
        key = path_key(path)
        if key in seen:
            return False
        seen.add(key)
        return True

    def walk(folder: str) -> Iterator[str]:
        if os.path.realpath(folder) in skipped:
            return
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in visited:
                return
            visited.add((info.st_dev, info.st_ino))
            with os.scandir(folder) as scan:
                entries = sorted(scan, key=lambda entry: entry.name)
        except OSError:
            return  # unreadable folder: nothing to classify there (the CLI checked the named ones exist)
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                continue
            if is_dir:
                if recursive:
                    yield from walk(entry.path)
            elif not is_image_file(entry.name):
                if not_images is not None:
                    not_images[os.path.splitext(entry.name)[1].lower() or "no extension"] += 1
            elif once(entry.path):
                yield entry.path

    for item in inputs:
        item = os.fspath(item)
        if is_url(item):  # s3://bucket/prefix and other fsspec URLs: listed through fsspec (picsort.remote)
            from picsort.remote import find_url_images

            yield from filter(once, find_url_images(item, recursive, not_images))
        elif os.path.isdir(item):
            yield from walk(item)
        elif once(item):
            yield item


def prepare_file(classifier: Classifier, path: str) -> tuple[torch.Tensor, bool]:
    """Decode one file into the model's input tensor, and whether it was decoded reduced (in a decoding thread)."""
    try:
        image = classifier.to_image(path)
        return classifier.to_tensor(image), decoded_reduced(image)
    except UnusableImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a run over thousands
        raise UnusableImageError(f"'{Path(path).name}' could not be used ({type(exc).__name__}: {exc})") from exc


class _InlinePool:
    """Stands in for the thread pool when `workers=0`: decodes on the calling thread (for comparisons)."""

    @staticmethod
    def submit(function, *args) -> Future:
        future: Future = Future()
        try:
            future.set_result(function(*args))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future

    @staticmethod
    def shutdown(wait: bool = True, cancel_futures: bool = False) -> None:
        pass


def classify_batches(paths: Iterable[str | os.PathLike], classifier: Classifier, batch_size: int = 32, *,
                     workers: int = DECODE_WORKERS, threshold: float | None = None) -> Iterator[list[Result]]:
    """Classify files in batches: yields, per model batch, `(path, Prediction or UnusableImageError)` in input order.

    Files are decoded by `workers` threads at most two batches ahead of the model, so memory stays flat
    however many paths there are (`workers=0` decodes on the calling thread, between batches).
    `threshold` overrides the model card's for `Prediction.unsure`.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    paths = iter(paths)
    ahead = 2 * batch_size  # one batch decoding while the model runs the other
    pending: deque[tuple[str, Future]] = deque()
    if workers < 0:
        raise ValueError("workers must be 0 or more")
    pool = ThreadPoolExecutor(workers, thread_name_prefix="picsort-decode") if workers else _InlinePool()

    def top_up() -> None:
        while len(pending) < ahead:
            path = next(paths, _END)
            if path is _END:
                return
            path = os.fspath(path)
            pending.append((path, pool.submit(prepare_file, classifier, path)))

    def run(batch: list[tuple[str, tuple[torch.Tensor, bool] | UnusableImageError]]) -> list[Result]:
        good = [(path, item) for path, item in batch if not isinstance(item, UnusableImageError)]
        predictions = []
        if good:
            predictions = classifier.predictions(classifier.to_batch([tensor for _, (tensor, _) in good]), threshold)
            predictions = classifier.answered_whole_near_edges([path for path, _ in good], [reduced for _, (_, reduced) in good],
                                             predictions, threshold)
        answers = iter(predictions)
        return [(path, item if isinstance(item, UnusableImageError) else next(answers)) for path, item in batch]

    try:
        top_up()
        batch: list[tuple[str, tuple[torch.Tensor, bool] | UnusableImageError]] = []
        good = 0
        while pending:
            path, future = pending.popleft()
            top_up()
            try:
                batch.append((path, future.result()))
                good += 1
            except UnusableImageError as error:
                batch.append((path, error))
            # A batch is full when it holds batch_size decodable images; bad files ride along for free, up
            # to a limit, so a folder of mostly bad files still gets its rows out (and saved) as it goes.
            if good == batch_size or len(batch) >= 2 * batch_size:
                yield run(batch)
                batch, good = [], 0
        if batch:
            yield run(batch)
    finally:
        # The caller may stop early (break, Ctrl-C): drop queued decodes, and don't wait for the one in hand
        # (a file on a stuck network drive must not hold up the stop).
        pool.shutdown(wait=False, cancel_futures=True)


def classify_files(paths: Iterable[str | os.PathLike], classifier: Classifier, batch_size: int = 32, *,
                   workers: int = DECODE_WORKERS, threshold: float | None = None) -> Iterator[Result]:
    """Classify files one result at a time: `(path, Prediction or UnusableImageError)`, in input order."""
    for batch in classify_batches(paths, classifier, batch_size, workers=workers, threshold=threshold):
        yield from batch


# ---- sorting files into a results CSV (and class folders) ------------------------------------------------


@dataclasses.dataclass
class SortReport:
    """What one `sort_files` run did."""

    out: Path
    classes: list[str]
    threshold: float
    copy_to: Path | None = None
    counts: Counter = dataclasses.field(default_factory=Counter)  # class -> files sure to be of it
    unsure: int = 0  # one of the classes, but which is unclear (below the threshold)
    none_of_these: int = 0  # looks like none of the classes
    errors: int = 0  # not usable as images: the reason is in the CSV's error column
    already_done: int = 0  # in the CSV from an earlier run, so not done again
    upgraded: bool = False  # the CSV was an older picsort's, rewritten in today's columns before resuming
    not_images: Counter = dataclasses.field(default_factory=Counter)  # extension -> files a folder scan left out
    copied: int = 0
    listed: int = 0  # files found to classify so far (all of them once `listing_done`)
    listing_done: bool = False
    seconds: float = 0.0
    interrupted: bool = False  # stopped by Ctrl-C: the finished rows are in the CSV, a re-run continues

    @property
    def processed(self) -> int:
        return sum(self.counts.values()) + self.unsure + self.none_of_these + self.errors


def sort_files(inputs: Iterable[str | os.PathLike], classifier: Classifier, out: str | os.PathLike, *,
               recursive: bool = False, copy_to: str | os.PathLike | None = None, threshold: float | None = None,
               batch_size: int = 32, workers: int = DECODE_WORKERS,
               on_progress: Callable[[int, int], None] | None = None,
               on_rows: Callable[[SortReport], None] | None = None,
               client=None, shard_size: int | None = None) -> SortReport:
    """Classify the image files in `inputs` (files, folders, fsspec URLs) into the CSV `out`; returns the counts.

    Files already in `out` (an earlier, interrupted run) are skipped; `out` must be missing, empty, or a
    results file of this model (`picsort.results.ResultsFileError` otherwise, the file untouched; one an older
    picsort wrote is rewritten in today's columns first, and the report says `upgraded`). Rows are
    written and flushed batch by batch. With `copy_to`, each classified file is copied (never moved) into
    `copy_to/<class>/`, `copy_to/unsure/` or `copy_to/none/`. `on_progress(done, total)` is called after
    every batch (`total` is counted first, only when `on_progress` is given); `on_rows(report)` too, with the
    report so far (`listed`, `errors`...). Ctrl-C stops at once: the report says `interrupted` and the finished
    rows are kept.

    With a Dask `client` (`distributed.Client`), shards of `shard_size` paths are classified on its workers
    (`picsort.cluster`: same code, same rows) while this process lists the files, writes the CSV and counts;
    the listing is not counted first there, so `total` is the files listed so far until `listing_done`.
    `copy_to` must then be a folder the workers can write: they copy.
    """
    classes = [check_class_name(name) for name in classifier.classes]  # they become folder names
    out, copy_to = Path(out), Path(copy_to) if copy_to is not None else None
    report = SortReport(out=out, classes=classes, copy_to=copy_to,
                        threshold=classifier.threshold if threshold is None else threshold)
    inputs = [os.fspath(item) for item in inputs]
    if copy_to is not None and any(is_url(item) for item in inputs):
        raise ValueError("copy_to works for files on disk only, not for URL inputs (" +
                         next(item for item in inputs if is_url(item)) + "): copy them from the CSV's rows")
    skip = [copy_to] if copy_to is not None else []
    unsure_folder = UNSURE_FOLDER if UNSURE_FOLDER not in classes else f"_{UNSURE_FOLDER}"
    # One pass to count first gives a total to show (not on a cluster: its first shards start while a huge
    # listing goes on).
    counted = client is None and (on_progress is not None or on_rows is not None)
    file, done, report.upgraded = open_results(out, classes)

    def todo(count: bool) -> Iterator[str]:
        for path in find_images(inputs, recursive, skip=skip, not_images=report.not_images if count else None):
            if path_key(path) in done:
                report.already_done += count
                continue
            if count and not counted:
                report.listed += 1
            yield path
        report.listing_done = True

    if counted:
        report.listed = sum(1 for _ in todo(False))  # the count pass holds no pixels
    started = time.perf_counter()
    try:
        with file:
            if client is None:
                batches = classify_batches(todo(True), classifier, batch_size, workers=workers, threshold=threshold)
            else:
                from picsort.cluster import SHARD_FILES, classify_on_cluster  # Dask loads only here

                batches = classify_on_cluster(client, todo(True), classifier, batch_size=batch_size,
                                              threshold=threshold, copy_to=copy_to, unsure_folder=unsure_folder,
                                              shard_size=shard_size or SHARD_FILES)
            for batch in batches:
                for path, result in batch:
                    folder = _tally(report, result, unsure_folder)
                    if folder is None or copy_to is None:
                        continue
                    if client is None:
                        # Copy before the row is written: a run killed in between copies it again on resume,
                        # finds the identical file already there and leaves it, rather than never copying it.
                        copy_into(path, copy_to / folder)
                    report.copied += 1  # on a cluster the worker copied it before sending the row back
                # One write and a flush per batch: a killed run keeps every finished batch.
                file.write(format_rows(batch, classes))
                file.flush()
                if on_progress:
                    on_progress(report.processed, report.listed)
                if on_rows:
                    on_rows(report)
    except KeyboardInterrupt:
        report.interrupted = True
    report.seconds = time.perf_counter() - started
    return report


def answer_folder(result: Prediction, unsure_folder: str = UNSURE_FOLDER) -> str:
    """The folder of `copy_to` a classified file is copied into: its class, `unsure_folder` or `none`."""
    if result.none_of_these:
        return NONE_LABEL
    return unsure_folder if result.unsure else result.label


def _tally(report: SortReport, result: Prediction | UnusableImageError, unsure_folder: str) -> str | None:
    """Count one file's result in `report`; returns the folder it is copied into (None: an error row)."""
    if isinstance(result, UnusableImageError):
        report.errors += 1
        return None
    if result.none_of_these:
        report.none_of_these += 1
    elif result.unsure:
        report.unsure += 1
    else:
        report.counts[result.label] += 1
    return answer_folder(result, unsure_folder)


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
            try:
                shutil.copy2(source, partial)
                os.replace(partial, target)
            except BaseException:  # a full disk or Ctrl-C mid-copy: no half file left behind either
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
                raise
            return target
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            return target
    raise AssertionError("unreachable")
