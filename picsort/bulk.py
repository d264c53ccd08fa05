"""Classify many image files at a steady memory footprint: find them, decode ahead, run the model in batches.

The command line (`python -m picsort classify`) is built on this; the app or a notebook can use it too:

    from picsort.bulk import classify_files, find_images
    from picsort.classify import load_model

    for path, result in classify_files(find_images(["photos"], recursive=True), load_model()):
        print(path, result)   # a Prediction, or the UnusableImageError saying why the file can't be used

Every image goes through `Classifier.to_image`, `.to_tensor`, `.probabilities` and `.prediction`, the
same steps as `Classifier.predict`, so a file gets the same probabilities here as in the app.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch

from picsort.classify import Classifier, Prediction
from picsort.images import IMAGE_SUFFIXES, UnusableImageError

__all__ = ["DECODE_WORKERS", "Result", "classify_batches", "classify_files", "find_images",
           "reuse_freed_memory"]

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
                skip: Iterable[str | os.PathLike] = ()) -> Iterator[str]:
    """Image files in the given files and folders, one at a time, in a stable (sorted) order.

    Folders contribute files with an image suffix (`IMAGE_SUFFIXES`; hidden files and folders are left out), their
    sub-folders only when `recursive`. A file named directly is always yielded. Each file comes
    once, even when named twice. Folders in `skip` (say, where results are copied to) are not entered.
    """
    seen: set[str] = set()
    skipped = {os.path.realpath(folder) for folder in skip}
    visited: set[tuple[int, int]] = set()  # (device, inode) of folders entered: symlink loops end here

    def once(path: str) -> bool:
        key = os.path.normcase(os.path.abspath(path))
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
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES and once(entry.path):
                yield entry.path

    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            yield from walk(item)
        elif once(item):
            yield item


def _prepare(classifier: Classifier, path: str) -> torch.Tensor:
    """Decode one file into the model's input tensor (runs in a decoding thread)."""
    try:
        return classifier.to_tensor(classifier.to_image(path))
    except UnusableImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a run over thousands
        name = Path(path).name
        raise UnusableImageError(f"'{name}' could not be used ({type(exc).__name__}: {exc})", name=name) from exc


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
            pending.append((path, pool.submit(_prepare, classifier, path)))

    def run(batch: list[tuple[str, torch.Tensor | UnusableImageError]]) -> list[Result]:
        tensors = [item for _, item in batch if isinstance(item, torch.Tensor)]
        predictions = iter(classifier.predictions(classifier.to_batch(tensors), threshold) if tensors else [])
        return [(path, item if isinstance(item, UnusableImageError) else next(predictions)) for path, item in batch]

    try:
        top_up()
        batch: list[tuple[str, torch.Tensor | UnusableImageError]] = []
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
        # The caller may stop early (break, Ctrl-C): drop queued decodes instead of finishing them.
        pool.shutdown(wait=True, cancel_futures=True)


def classify_files(paths: Iterable[str | os.PathLike], classifier: Classifier, batch_size: int = 32, *,
                   workers: int = DECODE_WORKERS, threshold: float | None = None) -> Iterator[Result]:
    """Classify files one result at a time: `(path, Prediction or UnusableImageError)`, in input order."""
    for batch in classify_batches(paths, classifier, batch_size, workers=workers, threshold=threshold):
        yield from batch
