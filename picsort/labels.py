"""The label store: images the app's users confirmed or corrected, kept for the next training round.

Layout under ``root`` (one sub-folder per class, exactly what a training
notebook reads as a local data source)::

    root/
      grizzly/<sha256>.jpg
      teddy/<sha256>.png
      manifest.jsonl      one JSON line per labelling decision (a history)
      .lock               serialises writers across processes (Voila kernels)

Each image is stored once, under the hex SHA-256 of its bytes, in the folder of
its latest label. Names supplied by users are never used as paths: labels are
validated, and the original file name is only recorded in the manifest.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path

from picsort.images import IMAGE_SUFFIXES, image_format_extension, image_from_bytes

__all__ = ["LabelStore"]

MANIFEST_NAME = "manifest.jsonl"
LOCK_NAME = ".lock"

# Longest file/folder name most filesystems allow, in bytes.
_MAX_NAME_BYTES = 255


class LabelStore:
    """Labelled images on disk, one folder per class, plus a manifest of every decision."""

    def __init__(self, root: Path | str, classes: Sequence[str] | None = None) -> None:
        self.root = Path(root)
        if classes is not None:
            if isinstance(classes, str):
                raise TypeError("classes must be a sequence of names, not one string")
            classes = tuple(classes)
            for name in classes:
                _check_name(name)
            duplicates = sorted({c for c in classes if classes.count(c) > 1})
            if duplicates:
                raise ValueError(f"classes are listed more than once: {', '.join(duplicates)}")
        self.classes: tuple[str, ...] | None = classes

    def __repr__(self) -> str:
        return f"LabelStore({str(self.root)!r}, classes={self.classes!r})"

    @property
    def manifest_path(self) -> Path:
        """The JSON-lines history of labelling decisions."""
        return self.root / MANIFEST_NAME

    def save(
        self,
        data: bytes | bytearray | memoryview,
        label: str,
        *,
        predicted: str | None = None,
        probabilities: Mapping[str, float] | None = None,
        original_name: str | None = None,
    ) -> Path:
        """Store the image under ``label`` and record the decision; returns the image's path.

        Raises ValueError for a bad label (nothing written) and
        picsort.images.UnusableImageError if ``data`` is not a usable image.
        Saving an image that is already stored moves it to ``label``'s folder.
        """
        self._check_label(label)
        if predicted is not None and not isinstance(predicted, str):
            raise TypeError(f"predicted must be a class name or None, not {type(predicted).__name__}")
        if original_name is not None and not isinstance(original_name, str):
            raise TypeError(f"original_name must be a string or None, not {type(original_name).__name__}")
        probabilities = _clean_probabilities(probabilities)
        raw = memoryview(data).tobytes()
        # Full decode, so only images training can actually read get stored.
        image_from_bytes(raw, name=original_name or "image")
        digest = hashlib.sha256(raw).hexdigest()
        filename = f"{digest}.{image_format_extension(raw)}"
        relative = f"{label}/{filename}"
        target = self.root / label / filename

        self.root.mkdir(parents=True, exist_ok=True)
        with self._locked(exclusive=True):
            # Time taken under the lock so manifest order and times agree.
            entry = {
                "sha256": digest,
                "label": label,
                "predicted": predicted,
                "probabilities": probabilities,
                "original_name": original_name,
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                "path": relative,
            }
            line = json.dumps(entry, allow_nan=False) + "\n"
            copies = self._copies_of(filename)
            created_dir = not target.parent.exists()
            target.parent.mkdir(exist_ok=True)
            undo = None
            try:
                if target in copies:
                    pass  # same class again: the file is already right
                elif copies:
                    # Relabelled: move (atomic rename) so only one copy exists.
                    source = copies[0]
                    os.replace(source, target)
                    undo = lambda: os.replace(target, source)  # noqa: E731
                    _fsync_dir(source.parent)
                    _fsync_dir(target.parent)
                else:
                    _write_atomically(target, raw)
                    undo = target.unlink
                self._append_manifest(line)
            except BaseException:
                # Leave the store as it was: no image without its manifest line.
                if undo is not None:
                    with suppress(OSError):
                        undo()
                if created_dir:
                    with suppress(OSError):
                        target.parent.rmdir()
                raise
            # Copies someone made by hand in other class folders would make
            # the image train under two labels; the latest decision wins.
            for stale in copies:
                if stale != target and stale.exists():
                    stale.unlink()
        return target

    def counts(self) -> dict[str, int]:
        """Number of labelled images per class folder (every known class included, 0 if empty)."""
        counts = dict.fromkeys(self.classes or (), 0)
        if not self.root.is_dir():
            return counts
        found = {}
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            found[folder.name] = sum(
                1
                for f in folder.iterdir()
                # Hidden names include save()'s in-flight temp files.
                if not f.name.startswith(".")
                # Wider than what save() writes: images copied into class folders by hand count too.
                and f.suffix.lower() in IMAGE_SUFFIXES
                and f.is_file()
            )
        counts.update(found)
        # Known classes first in their given order, then any other folders.
        extra = sorted(k for k in counts if not self.classes or k not in self.classes)
        return {k: counts[k] for k in (*(self.classes or ()), *extra)}

    def entries(self) -> list[dict]:
        """The latest manifest entry for each image, oldest decision first."""
        latest: dict[str, dict] = {}
        for entry in self._read_manifest():
            latest.pop(entry["sha256"], None)  # re-insert so order follows the latest decision
            latest[entry["sha256"]] = entry
        return list(latest.values())

    def label_of(self, sha256: str) -> str | None:
        """The latest label given to the image with this SHA-256 (hex), or None if never labelled."""
        sha256 = sha256.lower()
        label = None
        for entry in self._read_manifest():
            if entry["sha256"] == sha256:
                label = entry["label"]
        return label

    # --- internals -----------------------------------------------------------

    def _check_label(self, label: str) -> None:
        _check_name(label)
        if self.classes is not None and label not in self.classes:
            raise ValueError(
                f"label {label!r} is not one of the classes: {', '.join(self.classes)}"
            )

    def _copies_of(self, filename: str) -> list[Path]:
        """Every class folder's copy of ``filename`` (normally zero or one)."""
        return [
            folder / filename
            for folder in sorted(self.root.iterdir())
            if not folder.name.startswith(".")
            and folder.is_dir()
            and (folder / filename).is_file()
        ]

    def _append_manifest(self, line: str) -> None:
        """Append one complete line with a single write (caller holds the exclusive lock)."""
        payload = line.encode("utf-8")
        fd = os.open(self.manifest_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            # A crash mid-write (disk full, power cut) can leave a torn last
            # line; start on a fresh line so ours stays valid JSON.
            if size and os.pread(fd, 1, size - 1) != b"\n":
                payload = b"\n" + payload
            written = os.write(fd, payload)
            if written != len(payload):
                raise OSError(f"short write to {self.manifest_path} ({written} of {len(payload)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _read_manifest(self) -> Iterator[dict]:
        if not self.manifest_path.exists():
            return
        with self._locked(exclusive=False):
            text = self.manifest_path.read_bytes().decode("utf-8", errors="replace")
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # torn line from a crash; the rest of the history is intact
            if isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and "label" in entry:
                yield entry

    @contextmanager
    def _locked(self, *, exclusive: bool) -> Iterator[None]:
        """Hold flock on root/.lock; the lock file itself is never deleted (that would race)."""
        path = self.root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            if exclusive:
                raise
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                # A read-only copy of a store with no lock file: nobody can be
                # writing to it, so reading unlocked is safe.
                yield
                return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)  # releases the lock


def _check_name(name: str) -> None:
    """Refuse class names that are unsafe or confusing as a folder name."""
    if not isinstance(name, str):
        raise TypeError(f"a label must be a string, not {type(name).__name__}")
    problem = None
    if name == "":
        problem = "is empty"
    elif name in (".", ".."):
        problem = "is not a valid folder name"
    elif "/" in name or "\\" in name:
        problem = "must not contain '/' or '\\'"
    elif any(unicodedata.category(ch) == "Cc" for ch in name):  # includes NUL
        problem = "must not contain control characters"
    elif name.startswith("."):
        problem = "must not start with '.'"
    elif name != name.strip():
        problem = "must not start or end with spaces"
    elif name == MANIFEST_NAME:
        problem = "is reserved for the label store's manifest"
    elif len(name.encode("utf-8", errors="surrogatepass")) > _MAX_NAME_BYTES:
        problem = "is too long"
    if problem:
        raise ValueError(f"label {name!r} {problem}")


def _clean_probabilities(probabilities: Mapping[str, float] | None) -> dict[str, float] | None:
    """Plain ``{class: float}`` (accepts numpy/torch scalars); refuses NaN/inf, which JSON cannot hold."""
    if probabilities is None:
        return None
    cleaned = {str(k): float(v) for k, v in probabilities.items()}
    bad = [k for k, v in cleaned.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"probabilities must be finite numbers (not for: {', '.join(bad)})")
    return cleaned


def _write_atomically(target: Path, raw: bytes) -> None:
    """Write ``raw`` to ``target`` so readers see either no file or the whole file."""
    # Hidden temp name in the same folder: same filesystem for os.replace,
    # and skipped by counts() and by training's image-file listing.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; notebooks must read it
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename/creation in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
