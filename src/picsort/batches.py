"""The one streaming classify path for files: decode ahead in threads, run the model in batches, answer near
edges from the whole photo. `picsort.bulk` (a folder into a CSV, the CLI), `picsort.cluster` (the same on Dask
workers) and `picsort.teaching` (features) read files through it; the app's photos arrive one at a time through
`Classifier.predict_images`, the same steps.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from picsort.cpu_quota import let_idle_threads_sleep

let_idle_threads_sleep()  # before torch loads OpenMP
import torch  # noqa: E402

from picsort.classify import Classifier, Prediction  # noqa: E402
from picsort.images import UnusableImageError, decoded_reduced  # noqa: E402

__all__ = ["DECODE_WORKERS", "Result", "classify_batches", "classify_files", "prepare_file"]

# Decoding threads. Pillow releases the GIL while it decodes and resizes, so two threads keep a batch
# ready while the model runs the previous one (see benchmarks/cli_throughput.py for the measurements).
DECODE_WORKERS = 2

Result = tuple[str, Prediction | UnusableImageError]
_END = object()


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
            predictions = classifier.answered_whole_near_edges(
                [path for path, _ in good], [reduced for _, (_, reduced) in good], predictions, threshold)
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
