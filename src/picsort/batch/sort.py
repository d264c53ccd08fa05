"""Classify many image files at a steady memory footprint: find them, decode ahead, run the model in batches.

`sort_files` is what `picsort classify` runs (the command line only parses and prints); a notebook can call
it too:

    from picsort.batch.sort import sort_files
    from picsort.inference.classify import load_model

    report = sort_files(["photos"], load_model(), "results.csv", recursive=True, copy_to="sorted")
    print(report.counts)

or take the results one by one:

    for path, result in classify_files(find_images(["photos"], recursive=True), load_model()):
        print(path, result)   # a Prediction (its label: a class, or "none"), or the UnusableImageError saying why
                              # the file can't be used

Every image goes through `picsort.inference.classify.classify_stream`, as in `Classifier.predict` and the app, so a file gets
the same probabilities here as there.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from picsort.batch.copies import answer_folder, copy_into
from picsort.batch.results import format_rows, open_results, path_key
from picsort.foundation.remote import is_url
from picsort.foundation.vocabulary import (
    NONE,
    UNSURE,
    UNSURE_FOLDER,
    answer_kind,
    check_class_names,
    choose_unsure_folder,
)
from picsort.inference.batches import DECODE_WORKERS, Result, classify_batches, classify_files
from picsort.inference.classify import Classifier, Prediction
from picsort.photos.images import UnusableImageError, is_image_file

# classify_batches, classify_files (picsort.inference.batches) and the copies' folders (picsort.batch.copies) are here
# too, so that `from picsort.batch.sort import ...` gives a notebook everything it sorts a folder with.
__all__ = ["DECODE_WORKERS", "UNSURE_FOLDER", "Result", "SortReport", "classify_batches", "classify_files",
           "find_images", "sort_files"]

def find_images(inputs: Iterable[str | os.PathLike], recursive: bool = False,
                skip: Iterable[str | os.PathLike] = (), not_images: Counter | None = None) -> Iterator[str]:
    """Image files in the given files and folders, one at a time, in a stable (sorted) order.

    An fsspec URL (`s3://bucket/prefix`) is listed as a folder is (`picsort.foundation.remote.find_url_images`) and its
    photos come as URLs. Folders contribute files with an image suffix (`picsort.photos.images.is_image_file`; hidden
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
        if is_url(item):  # s3://bucket/prefix and other fsspec URLs: listed through fsspec (picsort.foundation.remote)
            from picsort.foundation.remote import find_url_images

            yield from filter(once, find_url_images(item, is_image_file, recursive, not_images))
        elif os.path.isdir(item):
            yield from walk(item)
        elif once(item):
            yield item


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
    results file of this model (`picsort.batch.results.ResultsFileError` otherwise, the file untouched; one an older
    picsort wrote is rewritten in today's columns first, and the report says `upgraded`). Rows are
    written and flushed batch by batch. With `copy_to`, each classified file is copied (never moved) into
    `copy_to/<class>/`, `copy_to/unsure/` or `copy_to/none/`. `on_progress(done, total)` is called after
    every batch (`total` is counted first, only when `on_progress` is given); `on_rows(report)` too, with the
    report so far (`listed`, `errors`...). Ctrl-C stops at once: the report says `interrupted` and the finished
    rows are kept.

    With a Dask `client` (`distributed.Client`), shards of `shard_size` paths are classified on its workers
    (`picsort.batch.cluster`: same code, same rows) while this process lists the files, writes the CSV and counts;
    the listing is not counted first there, so `total` is the files listed so far until `listing_done`.
    `copy_to` must then be a folder the workers can write: they copy.
    """
    classes = list(check_class_names(classifier.classes))  # they become folder names
    out, copy_to = Path(out), Path(copy_to) if copy_to is not None else None
    report = SortReport(out=out, classes=classes, copy_to=copy_to,
                        threshold=classifier.threshold if threshold is None else threshold)
    inputs = [os.fspath(item) for item in inputs]
    if copy_to is not None and any(is_url(item) for item in inputs):
        raise ValueError("copy_to works for files on disk only, not for URL inputs (" +
                         next(item for item in inputs if is_url(item)) + "): copy them from the CSV's rows")
    skip = [copy_to] if copy_to is not None else []
    unsure_folder = choose_unsure_folder(classes)
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
                from picsort.batch.cluster import SHARD_FILES, classify_on_cluster  # Dask loads only here

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


def _tally(report: SortReport, result: Prediction | UnusableImageError, unsure_folder: str) -> str | None:
    """Count one file's result in `report`; returns the folder it is copied into (None: an error row)."""
    if isinstance(result, UnusableImageError):
        report.errors += 1
        return None
    kind = answer_kind(none_of_these=result.none_of_these, unsure=result.unsure)
    if kind == NONE:
        report.none_of_these += 1
    elif kind == UNSURE:
        report.unsure += 1
    else:
        report.counts[result.label] += 1
    return answer_folder(result, unsure_folder)
