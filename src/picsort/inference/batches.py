"""The classify path for files (`classify_stream` with decoding threads): `picsort.batch.sort` (a folder into a CSV,
the CLI), `picsort.batch.cluster` (the same on Dask workers) and `picsort.training.teaching` (features) read files through it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from picsort.foundation.shown_text import shown_name

# picsort.inference.classify first: it sets how idle OpenMP threads wait before torch loads (torch comes with it).
from picsort.inference.classify import BATCH_SIZE, Classifier, Prediction, Prepared, classify_stream
from picsort.inference.none_of_these import average_pooled
from picsort.photos.images import UnusableImageError

if TYPE_CHECKING:
    import torch

__all__ = ["DECODE_WORKERS", "Result", "classify_batches", "classify_files", "pooled_body_features", "prepare_file"]

# Decoding threads. Pillow releases the GIL while it decodes and resizes, so two threads keep a batch
# ready while the model runs the previous one (see benchmarks/cli_throughput.py for the measurements).
DECODE_WORKERS = 2

Result = tuple[str, Prediction | UnusableImageError]


def pooled_body_features(classifier: Classifier, tensors: list[torch.Tensor]) -> torch.Tensor:
    """Raw average-pooled body features (N×C) of photos prepared by `classifier` (`to_tensor`), the body run on
    them FORWARD_CHUNK at a time: what `picsort teach` and Teach mode fit a head and calibrate on."""
    import torch  # loaded by picsort.inference.classify already, after its thread setting

    with torch.inference_mode():
        return torch.cat([average_pooled(maps) for maps in classifier.feature_maps(classifier.to_batch(tensors))])


def prepare_file(classifier: Classifier, path: str) -> Prepared:
    """One file as the network takes it (`Classifier.prepare`, in a decoding thread); whatever goes wrong with
    it becomes its `UnusableImageError`."""
    try:
        return classifier.prepare(path)
    except UnusableImageError:
        raise
    except Exception as exc:  # noqa: BLE001 - one odd file must not end a run over thousands
        raise UnusableImageError(f"'{shown_name(Path(path).name)}' could not be used ({type(exc).__name__}: {exc})"
                                 ) from exc


def classify_batches(paths: Iterable[str | os.PathLike], classifier: Classifier, batch_size: int = BATCH_SIZE, *,
                     workers: int = DECODE_WORKERS, threshold: float | None = None) -> Iterator[list[Result]]:
    """Classify files in batches: yields, per model batch, `(path, Prediction or UnusableImageError)` in input order.

    Files are decoded by `workers` threads at most two batches ahead of the model, so memory stays flat
    however many paths there are (`workers=0` decodes on the calling thread, between batches).
    `threshold` overrides the model card's for `Prediction.unsure`.
    """
    # prepare_file is looked up per file, so a test's (or a Dask worker plugin's) stand-in for it takes effect.
    return classify_stream((os.fspath(path) for path in paths), classifier, batch_size,
                           prepare=lambda path: prepare_file(classifier, path), workers=workers, threshold=threshold)


def classify_files(paths: Iterable[str | os.PathLike], classifier: Classifier, batch_size: int = BATCH_SIZE, *,
                   workers: int = DECODE_WORKERS, threshold: float | None = None) -> Iterator[Result]:
    """Classify files one result at a time: `(path, Prediction or UnusableImageError)`, in input order."""
    for batch in classify_batches(paths, classifier, batch_size, workers=workers, threshold=threshold):
        yield from batch
