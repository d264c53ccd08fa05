"""`picsort classify` on a Dask cluster: shards of paths go to worker processes, the rows come back to one CSV.

`picsort.batch.sort.sort_files(..., client=client)` runs here (and `picsort classify --workers N` / `--scheduler ADDRESS`):

- The client lists the files as it goes and submits shards of `SHARD_FILES` paths, a few per worker thread
  ahead, so the first shards run while a long listing goes on, and neither the listing nor the results
  pile up in memory.
- A worker classifies a shard with `picsort.inference.batches.classify_batches` (decode-ahead, batches,
  `answered_whole_near_edges`): the same code and so the same probabilities as one process. Each worker process
  loads the model once and keeps it for every later shard (`worker_classifier`). The model folder's files travel to
  each worker once, in a worker plugin the scheduler keeps for workers that join or restart later
  (`ModelFolderPlugin`), and a worker writes them under its own temp folder (`picsort-model-<digest>`, or under
  $PICSORT_WORKER_MODELS): workers need not see the client's model folder, nor the repository. That folder is left
  in place on purpose: on a Binder pod or a long-lived worker machine the next run with the same model finds it and
  writes nothing.
- A local cluster (`--workers N`, `connect`) keeps its workers' scratch space (Dask's `dask-scratch-space`) in a
  temporary folder of its own, removed when the cluster closes.
- With `copy_to` the worker copies each file before returning its row (so the destination must be a folder
  the workers share with one another); the client writes the rows, flushed shard by shard, in the same CSV
  as a single process (same header, error rows, escaping, resume).
- Faults: a worker that dies (kill -9, out of memory, a pre-empted node) has its shards run again by the
  scheduler on other workers; a shard's rows are written only once its result is in, so every file gets
  exactly one row. A shard that kills its workers more than the scheduler's `allowed-failures` times
  (`KilledWorker`) is run again one file a shard. A file whose one-file shard still dies is not blamed yet: a
  worker's death counts against every task the scheduler had sent it, so an innocent file queued beside the
  culprit dies with it. Such a suspect waits until nothing else runs and is tried alone; only a file that
  kills its workers while alone on the cluster gets an error row. `local_cluster` sets allowed-failures to 1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from distributed.diagnostics.plugin import WorkerPlugin

from picsort.batch.copies import answer_folder, copy_into
from picsort.foundation.vocabulary import UNSURE_FOLDER
from picsort.inference.batches import Result, classify_batches
from picsort.inference.classify import Classifier
from picsort.inference.model import CARD_NAME, WEIGHTS_NAME
from picsort.inference.none_of_these import REFERENCE_NAME
from picsort.photos.images import UnusableImageError

__all__ = ["SHARD_FILES", "ModelFiles", "ModelFolderPlugin", "classify_on_cluster", "classify_shard", "connect",
           "local_cluster", "worker_classifier"]

# Paths per task: small enough that the last shards of a run keep every worker busy (a worker idles while the
# last one finishes), large enough that the scheduler's few milliseconds a task stay a small share. The
# measurements, and the size for a cluster of a thousand workers, are in benchmarks/results/cluster.md.
SHARD_FILES = 128
# Shards submitted ahead per worker thread: one running, one waiting, so no worker idles between shards.
AHEAD_PER_THREAD = 2
# What serving a model folder reads (picsort.inference.model, picsort.inference.none_of_these); export.pkl (fastai's)
# is not needed.
SERVED_FILES = (CARD_NAME, WEIGHTS_NAME, REFERENCE_NAME)
# A file that crashes its worker this many times in a row gets an error row (local_cluster's scheduler setting).
ALLOWED_FAILURES = 1
# Where a worker keeps the model folders it is sent, when set (in the worker's environment); else its machine's temp
# folder. The tests point it under their own temporary folder, so a run leaves nothing in /tmp.
WORKER_MODELS_VARIABLE = "PICSORT_WORKER_MODELS"


@dataclass(frozen=True)
class ModelFiles:
    """A model folder's files as bytes, to be written on a worker; `digest` names its contents."""

    digest: str
    files: dict[str, bytes]

    @classmethod
    def read(cls, folder: str | os.PathLike) -> "ModelFiles":
        folder = Path(folder)
        files = {name: (folder / name).read_bytes() for name in SERVED_FILES if (folder / name).is_file()}
        digest = hashlib.sha256()
        for name in sorted(files):
            digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
        return cls(digest.hexdigest(), files)


def model_folder(digest: str) -> Path:
    """Where a worker keeps the model files of this digest: `picsort-model-<digest>` in $PICSORT_WORKER_MODELS if
    set, else in its machine's temp folder, where it stays for the next run (a Binder pod's or a worker machine's
    cache: one model folder, about 20 MB, a model)."""
    return Path(os.environ.get(WORKER_MODELS_VARIABLE) or tempfile.gettempdir()) / f"picsort-model-{digest[:16]}"


class ModelFolderPlugin(WorkerPlugin):
    """Writes a model folder on every worker, those that join or restart later included (the scheduler keeps
    the plugin, 20 MB for the shipped model, and gives it to each new worker before its first task)."""

    idempotent = True  # a second run with the same model on the same cluster sends nothing again

    def __init__(self, model: ModelFiles):
        self.model = model
        self.name = f"picsort-model-{model.digest[:16]}"

    def setup(self, worker=None) -> None:
        folder = model_folder(self.model.digest)
        if folder.is_dir():
            return
        # Written aside and renamed into place: two worker processes on one machine may both be writing it.
        folder.parent.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(prefix=".picsort-model-", dir=folder.parent))
        for name, data in self.model.files.items():
            (partial / name).write_bytes(data)
        try:
            os.rename(partial, folder)
        except OSError:  # the other process was first: its folder holds the same bytes
            for name in self.model.files:
                (partial / name).unlink()
            partial.rmdir()


# The worker process's models, by the digest of their files: one load per process, however many shards.
_worker_models: dict[str, Classifier] = {}


def worker_classifier(digest: str) -> Classifier:
    """The classifier of the model files `digest` names, in this (worker) process: loaded the first time."""
    if digest not in _worker_models:
        folder = model_folder(digest)
        if not folder.is_dir():
            raise RuntimeError(f"no model folder {folder} on this worker: picsort.batch.cluster.ModelFolderPlugin writes "
                               f"it, and classify_on_cluster registers that plugin")
        from picsort.foundation.process_memory import reuse_freed_memory

        reuse_freed_memory()  # a worker process runs batch after batch, as the CLI's process does
        _worker_models[digest] = Classifier(folder)
    return _worker_models[digest]


def classify_shard(digest: str, paths: list[str], batch_size: int, threshold: float | None,
                   copy_to: str | None, unsure_folder: str) -> list[Result]:
    """One task: classify `paths` on this worker (copying each classified file into `copy_to/<folder>/`)."""
    classifier = worker_classifier(digest)
    results: list[Result] = []
    for batch in classify_batches(paths, classifier, batch_size, threshold=threshold):
        for path, result in batch:
            if copy_to is not None and not isinstance(result, UnusableImageError):
                copy_into(path, Path(copy_to) / answer_folder(result, unsure_folder))
        # The reason's text only: an exception's chained cause may not travel back to the client.
        results.extend((path, UnusableImageError(str(result)) if isinstance(result, UnusableImageError) else result)
                       for path, result in batch)
    return results


def _shards(paths: Iterable[str], size: int) -> Iterator[list[str]]:
    shard: list[str] = []
    for path in paths:
        shard.append(path)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


def crashed_message(path: str) -> str:
    name = os.path.basename(path.rstrip("/"))
    return (f"'{name}' crashed the worker process reading it again and again (out of memory, or a decoder "
            f"fault?), so it was left out")


def classify_on_cluster(client, paths: Iterable[str], classifier: Classifier, *, batch_size: int = 32,
                        threshold: float | None = None, copy_to: str | os.PathLike | None = None,
                        unsure_folder: str = UNSURE_FOLDER, shard_size: int = SHARD_FILES) -> Iterator[list[Result]]:
    """Classify `paths` on the workers of a Dask `client`: yields each shard's results as it finishes.

    Shards finish in any order; within one the results are in its paths' order. `classifier` must have been
    loaded from a model folder (its files are what the workers load). Stopping early (or Ctrl-C) cancels the
    shards not yet finished.
    """
    from distributed import KilledWorker, as_completed

    if shard_size < 1:
        raise ValueError("shard_size must be at least 1")
    if classifier.folder is None:
        raise ValueError("a cluster needs a classifier loaded from a model folder (load_model(folder)): "
                         "the workers load that folder's files")
    model = ModelFiles.read(classifier.folder)
    client.register_plugin(ModelFolderPlugin(model))
    copy_to = os.fspath(copy_to) if copy_to is not None else None
    shards = _shards(paths, shard_size)
    pending: dict = {}  # future -> its paths
    finished = as_completed()
    run = uuid.uuid4().hex[:8]
    submitted = 0
    suspects: deque[str] = deque()  # files whose one-file shard died beside others: each to be tried alone
    alone = None  # the future of the latest suspect run alone on the cluster

    def submit(shard: list[str]):
        nonlocal submitted
        submitted += 1
        future = client.submit(classify_shard, model.digest, shard, batch_size, threshold, copy_to, unsure_folder,
                               key=f"picsort-shard-{run}-{submitted}", pure=False)
        pending[future] = shard
        finished.add(future)
        return future

    def top_up() -> None:
        nonlocal alone
        if suspects:  # new shards wait: a suspect runs only once the cluster has nothing else to do
            if not pending:
                alone = submit([suspects.popleft()])
            return
        # Ask the scheduler each time: workers may join or leave during a long run.
        ahead = max(2, AHEAD_PER_THREAD * sum(client.nthreads().values()))
        while len(pending) < ahead:
            shard = next(shards, None)
            if shard is None:
                return
            submit(shard)

    try:
        top_up()
        for future in finished:
            shard = pending.pop(future)
            try:
                results = future.result()
            except KilledWorker:
                results = None
                if len(shard) > 1:
                    for path in shard:  # one file a shard: the one that kills its worker is found, the rest run
                        submit([path])
                elif future is alone:
                    results = [(shard[0], UnusableImageError(crashed_message(shard[0])))]
                else:
                    suspects.append(shard[0])
            if results is not None:
                yield results
            top_up()  # also when nothing was yielded: as_completed ends once no future is left
    finally:
        if pending:
            client.cancel(list(pending))


def local_cluster(workers: int, threads_per_worker: int = 1, local_directory: str | os.PathLike | None = None):
    """A Dask cluster of `workers` processes on this machine (127.0.0.1), `threads_per_worker` threads each. The
    scratch space (`dask-scratch-space`) of its scheduler and workers goes in `local_directory` (when None, Dask's
    temporary-directory setting, else the temp folder)."""
    import dask
    from distributed import LocalCluster

    settings = {"distributed.scheduler.allowed-failures": ALLOWED_FAILURES}
    if local_directory is not None:
        # The workers take local_directory; the scheduler (in this process) reads Dask's temporary-directory.
        local_directory = os.fspath(local_directory)
        settings["temporary-directory"] = local_directory
    with dask.config.set(settings):
        return LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                            host="127.0.0.1", dashboard_address="127.0.0.1:0", scheduler_port=0,
                            local_directory=local_directory)


def connect(workers: int | None = None, scheduler: str | None = None):
    """A `distributed.Client` to a new local cluster of `workers` processes, or to the scheduler at `scheduler`.

    Returns `(client, close)`; `close()` closes the client (and the local cluster, whose workers' scratch space is a
    temporary folder of this run's, removed then).
    """
    from distributed import Client

    if scheduler:
        client = Client(scheduler, timeout="30s")
        return client, client.close
    scratch = tempfile.mkdtemp(prefix="picsort-dask-")
    cluster = None
    try:
        cluster = local_cluster(workers, local_directory=scratch)
        client = Client(cluster)
    except BaseException:
        if cluster is not None:
            cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)
        raise

    def close() -> None:
        try:
            client.close()
            cluster.close()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    return client, close
