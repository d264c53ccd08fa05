"""The label store: images the app's users confirmed or corrected, kept for the next training round.

Layout under ``root`` (one sub-folder per class, exactly what a training
notebook reads as a local data source)::

    root/
      grizzly/<sha256>.jpg
      teddy/<sha256>.png
      none/<sha256>.jpg   "none of these" photos: kept apart, never trained on as a class
      manifest.jsonl      one JSON line per decision (a history: labels, and undos of them)
      .lock               serialises writers across processes (Voila kernels)

Each image is stored once, under the hex SHA-256 of its bytes, in the folder of
its latest label. Names supplied by users are never used as paths: labels are
checked (:func:`picsort.foundation.vocabulary.check_class_name`), and the original file name is only recorded
in the manifest.

The manifest's last line about an image is its current state. A save writes the
image first and then its line; an undo writes its line first and then moves or
removes the image. So after a crash (a killed kernel, a power cut) the store may
hold an image without its line, or an image in the wrong folder, but never a
decision without the image: :meth:`LabelStore.check`, run whenever a store is
opened, removes left-over temporary files, records images that have no line and
puts every image where the manifest says.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import uuid
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from picsort.foundation.files import fsync_folder, is_temporary, write_atomically
from picsort.foundation.vocabulary import MANIFEST_NAME, NONE_LABEL, check_class_names, check_label
from picsort.photos.images import IMAGE_FORMATS, image_format_extension, usable_image_extension
from picsort.photos.photo_folders import class_folders_in, photos_in

__all__ = ["MANIFEST_NAME", "DiskFullError", "LabelStore", "LabelStoreError", "ReadOnlyStoreError",
           "stored_name_problem"]

LOCK_NAME = ".lock"

# What save() names an image: its SHA-256 and the extension of its format.
_STORED_NAME = re.compile(r"(?P<sha256>[0-9a-f]{64})\.(?P<extension>[a-z0-9]+)")
_STORED_EXTENSIONS = frozenset(IMAGE_FORMATS.values())


class LabelStoreError(OSError):
    """A label could not be saved or undone; the message says why in words a user can act on."""


class DiskFullError(LabelStoreError):
    """The disk holding the label store is full."""


class ReadOnlyStoreError(LabelStoreError):
    """The label store's folder cannot be written to."""


def stored_name_problem(label: object, name: str) -> str | None:
    """Why `label/name` is not a place save() could have written (None: it is): `<label>/<sha256>.<extension>`.

    The one rule for where a stored photo may be. A manifest or a labels zip comes from outside (a download, a
    colleague, an attacker), so each of its paths is checked against it before it names a file: nothing
    absolute, no `..`, no other folder, no other name.
    """
    try:
        check_label(label)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    match = _STORED_NAME.fullmatch(name)
    if match is None or match["extension"] not in _STORED_EXTENSIONS:
        return f"{name!r} is not named <sha256>.<image extension>"
    return None


class LabelStore:
    """Labelled images on disk, one folder per class, plus a manifest of every decision."""

    def __init__(self, root: Path | str, classes: Sequence[str] | None = None, *, shown_as: str | None = None,
                 max_photos: int | None = None) -> None:
        """`shown_as`: how messages name the store instead of its path (a visitor's Teach folder: a page shows
        no server paths); `max_photos`: how many photos it may hold at most (save refuses a new one past it)."""
        self.root = Path(root)
        self.classes: tuple[str, ...] | None = None if classes is None else check_class_names(classes)
        self.shown_as = shown_as
        self.max_photos = max_photos
        self._saved_ids: list[str] = []  # this object's saves, newest last: what undo() may take back
        self.repairs: dict[str, int] = self.check()

    def __repr__(self) -> str:
        return f"LabelStore({str(self.root)!r}, classes={self.classes!r})"

    @property
    def manifest_path(self) -> Path:
        """The JSON-lines history of labelling decisions."""
        return self.root / MANIFEST_NAME

    # --- writing -------------------------------------------------------------

    def save(
        self,
        data: bytes | bytearray | memoryview,
        label: str,
        *,
        predicted: str | None = None,
        probabilities: Mapping[str, float] | None = None,
        original_name: str | None = None,
        decoded_whole: bool = False,
    ) -> Path:
        """Store the image under ``label`` (a class, or NONE_LABEL) and record the decision; returns its path.

        Raises ValueError for a bad label (nothing written),
        picsort.photos.images.UnusableImageError if ``data`` is not a usable image, and
        LabelStoreError (DiskFullError, ReadOnlyStoreError) when the disk refuses it.
        Saving an image that is already stored moves it to ``label``'s folder.
        ``decoded_whole``: the caller has decoded ``data`` whole with every check already (the app's classify of a
        photo it did not reduce), so only its format is read here, not its pixels again.
        """
        self._check_label(label)
        if predicted is not None and not isinstance(predicted, str):
            raise TypeError(f"predicted must be a class name or None, not {type(predicted).__name__}")
        if original_name is not None and not isinstance(original_name, str):
            raise TypeError(f"original_name must be a string or None, not {type(original_name).__name__}")
        probabilities = _clean_probabilities(probabilities)
        raw = memoryview(data).tobytes()
        # Decoded whole, so only images training can actually read get stored.
        name = original_name or "image"
        extension = image_format_extension(raw, name) if decoded_whole else usable_image_extension(raw, name=name)
        digest = hashlib.sha256(raw).hexdigest()
        filename = f"{digest}.{extension}"
        target = self.root / label / filename
        entry = {
            "id": uuid.uuid4().hex,
            "sha256": digest,
            "label": label,
            "predicted": predicted,
            "probabilities": probabilities,
            "original_name": original_name,
            "time": None,
            "path": f"{label}/{filename}",
        }
        with self._disk_errors():
            self.root.mkdir(parents=True, exist_ok=True)
            with self._locked(exclusive=True):
                if self.max_photos is not None:
                    self._check_room(digest)
                entry["time"] = _now()  # taken under the lock so manifest order and times agree
                self._place(raw, filename, target, entry)
        self._saved_ids.append(entry["id"])
        return target

    def undo(self) -> dict | None:
        """Undo this store object's latest save still in effect; returns its manifest entry (None if none).

        The image goes back to the label it had before that save, or leaves the store if it had none. Only
        saves made through this object count, so two people labelling in two app windows undo their own.
        """
        with self._disk_errors(action="undone"):
            if not self._saved_ids or not self.root.is_dir():
                return None
            with self._locked(exclusive=True):
                lines = list(self._manifest_lines())
                effective = _effective_saves(lines)
                mine = [save for save in effective if save.get("id") in self._saved_ids]
                if not mine:
                    self._saved_ids.clear()
                    return None
                undone = mine[-1]
                others = [save for save in effective if save is not undone and save["sha256"] == undone["sha256"]]
                restored = others[-1] if others else None
                line = {
                    "id": uuid.uuid4().hex,
                    "undoes": undone["id"],
                    "sha256": undone["sha256"],
                    "label": restored["label"] if restored else None,
                    "predicted": restored.get("predicted") if restored else None,
                    "probabilities": restored.get("probabilities") if restored else None,
                    "original_name": restored.get("original_name") if restored else None,
                    "time": _now(),
                    "path": restored["path"] if restored else None,
                }
                # The decision first: a crash right after it is finished by check() on the next opening.
                self._append_manifest(json.dumps(line, allow_nan=False) + "\n")
                self._saved_ids.remove(undone["id"])
                self._apply(undone["sha256"], line, self._stored_copies().get(undone["sha256"], []))
        return undone

    def remove(self, sha256: str) -> dict | None:
        """Take the image with this SHA-256 (hex) out of the store, whoever saved it (Teach mode's remove button);
        returns its last manifest entry, None when it is not in the store.

        As undo's: the line first (label None), then the file goes, so a crash in between is finished by check().
        """
        digest = sha256.lower()
        with self._disk_errors(action="removed"):
            if not self.root.is_dir():
                return None
            with self._locked(exclusive=True):
                entry = _latest(self._manifest_lines()).get(digest)
                if entry is None or entry["label"] is None:
                    return None
                line = {"id": uuid.uuid4().hex, "sha256": digest, "label": None, "predicted": None,
                        "probabilities": None, "original_name": entry.get("original_name"), "time": _now(),
                        "path": None, "removed": True}
                self._append_manifest(json.dumps(line, allow_nan=False) + "\n")
                self._apply(digest, line, self._stored_copies().get(digest, []))
        return entry

    def write_zip(self, fileobj: BinaryIO) -> int:
        """Write a zip of the store (its images in their class folders, and manifest.jsonl) to a binary file
        object; returns the number of images. `picsort.photos.sources.gather_labels` takes such a zip as a source."""
        count = 0
        # Photos are compressed already: storing them is as small and much faster; the manifest deflates well.
        with zipfile.ZipFile(fileobj, "w", compression=zipfile.ZIP_STORED) as archive:
            if not self.root.is_dir():
                archive.writestr(MANIFEST_NAME, b"", compress_type=zipfile.ZIP_DEFLATED)
                return 0
            with self._locked(exclusive=False):
                manifest = self.manifest_path.read_bytes() if self.manifest_path.exists() else b""
                for entry in _latest(_parse_manifest(manifest)).values():
                    if entry["label"] is None:
                        continue
                    file = self.root / entry["path"]
                    if file.is_file():
                        archive.write(file, entry["path"])
                        count += 1
                archive.writestr(MANIFEST_NAME, manifest, compress_type=zipfile.ZIP_DEFLATED)
        return count

    def check(self) -> dict[str, int]:
        """Bring the folders in line with the manifest after a crash; returns how many of each repair it made.

        Left-over temporary files are removed; an image saved without its manifest line (killed in between)
        gets a line recording its folder's label; an image whose folder disagrees with the manifest (killed
        mid-relabel or mid-undo) is moved or removed so the manifest's last decision wins. A store that
        cannot be written (a read-only copy) is left as it is.
        """
        repairs = {"temporary files removed": 0, "manifest lines added": 0, "images moved": 0,
                   "images removed": 0}
        if not self.root.is_dir():
            return repairs
        try:
            lock = self._locked(exclusive=True)
            lock.__enter__()
        except OSError:
            return repairs  # read-only: nobody can be writing to it either
        try:
            for folder in [self.root, *self._class_folders()]:
                for file in folder.iterdir():
                    if is_temporary(file.name) and file.is_file():
                        file.unlink()
                        repairs["temporary files removed"] += 1
            state = _latest(self._manifest_lines())
            for digest, copies in self._stored_copies().items():
                entry = state.get(digest)
                if entry is None:
                    if self._record_found(digest, copies[0]):
                        repairs["manifest lines added"] += 1
                    continue
                moved, removed = self._apply(digest, entry, copies)
                repairs["images moved"] += moved
                repairs["images removed"] += removed
        finally:
            lock.__exit__(None, None, None)
        return repairs

    # --- reading -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of labelled images per class folder (every known class included, 0 if empty).

        "None of these" photos are counted under NONE_LABEL when there are any.
        """
        counts = dict.fromkeys(self.classes or (), 0)
        # Wider than what save() writes: images copied into class folders by hand count too;
        # hidden names (save()'s in-flight temp files) do not.
        counts.update({folder.name: len(photos_in(folder)) for folder in self._class_folders()})
        # Known classes first in their given order, then "none", then any other folders.
        known = (*(self.classes or ()), NONE_LABEL)
        extra = sorted(k for k in counts if k not in known)
        return {k: counts[k] for k in (*known, *extra) if k in counts}

    def entries(self) -> list[dict]:
        """The latest manifest entry of each image in the store, oldest decision first."""
        return [entry for entry in _latest(self._read_manifest()).values() if entry["label"] is not None]

    def refused_lines(self) -> list[str]:
        """What is wrong with each manifest line that is not used: a path outside `<label>/<sha256>.<ext>`,
        a bad label or hash (a hand-edited or hostile manifest). Such lines never name a file."""
        refused: list[str] = []
        for _ in self._read_manifest(refused):
            pass
        return refused

    def label_of(self, sha256: str) -> str | None:
        """The current label of the image with this SHA-256 (hex), or None if it is not in the store."""
        entry = _latest(self._read_manifest()).get(sha256.lower())
        return entry["label"] if entry else None

    # --- internals -----------------------------------------------------------

    def _check_label(self, label: str) -> None:
        check_label(label)
        if label != NONE_LABEL and self.classes is not None and label not in self.classes:
            raise ValueError(
                f"label {label!r} is not one of the classes: {', '.join(self.classes)}"
            )

    def _check_room(self, digest: str) -> None:
        """LabelStoreError when a new photo would take the store past `max_photos` (lock held; a photo in it
        already may always be relabelled)."""
        state = _latest(self._manifest_lines())
        held = sum(entry["label"] is not None for entry in state.values())
        known = state.get(digest, {}).get("label") is not None
        if not known and held >= self.max_photos:
            raise LabelStoreError(f"{self._where()[0].upper()}{self._where()[1:]} holds at most {self.max_photos} "
                                  f"photos: this one was not saved. Remove some to make room.")

    def _where(self) -> str:
        return self.shown_as or f"the label folder {self.root}"

    def _place(self, raw: bytes, filename: str, target: Path, entry: dict) -> None:
        """Put the image in its folder and append its line, or leave the store as it was (lock held)."""
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
                fsync_folder(source.parent)
                fsync_folder(target.parent)
            else:
                write_atomically(target, raw)
                undo = target.unlink
            self._append_manifest(json.dumps(entry, allow_nan=False) + "\n")
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

    def _apply(self, digest: str, entry: dict, copies: list[Path]) -> tuple[int, int]:
        """Make the stored copies of one image match its manifest entry; returns (moved, removed)."""
        moved = removed = 0
        wanted = self.root / entry["path"] if entry["label"] is not None else None
        if wanted is not None and not wanted.exists() and copies:
            wanted.parent.mkdir(exist_ok=True)
            os.replace(copies[0], wanted)
            fsync_folder(copies[0].parent)
            fsync_folder(wanted.parent)
            moved += 1
        for copy in copies:
            if copy != wanted and copy.exists():
                copy.unlink()
                removed += 1
        return moved, removed

    def _record_found(self, digest: str, file: Path) -> bool:
        """Append a line for an image found without one (saved, then killed before its line was written)."""
        label = file.parent.name
        try:
            self._check_label(label)
        except ValueError:
            return False  # not a folder save() could have written: not ours to record
        entry = {"id": uuid.uuid4().hex, "sha256": digest, "label": label, "predicted": None,
                 "probabilities": None, "original_name": None, "time": _now(),
                 "path": f"{label}/{file.name}", "recovered": True}
        self._append_manifest(json.dumps(entry) + "\n")
        return True

    def _class_folders(self) -> list[Path]:
        # A linked folder could lead anywhere: only the store's own folders hold its photos.
        return class_folders_in(self.root, links=False)

    def _copies_of(self, filename: str) -> list[Path]:
        """Every class folder's copy of ``filename`` (normally zero or one)."""
        return [folder / filename for folder in self._class_folders() if (folder / filename).is_file()]

    def _stored_copies(self) -> dict[str, list[Path]]:
        """SHA-256 -> the files save() wrote for it (named by their hash), in any class folder."""
        copies: dict[str, list[Path]] = {}
        for folder in self._class_folders():
            for file in sorted(folder.iterdir()):
                match = _STORED_NAME.fullmatch(file.name)
                if (match and match["extension"] in _STORED_EXTENSIONS and file.is_file()
                        and not file.is_symlink()):
                    copies.setdefault(match["sha256"], []).append(file)
        return copies

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
                raise OSError(errno.ENOSPC, f"short write to {self.manifest_path} ({written} of {len(payload)} bytes)")
            os.fsync(fd)
        finally:
            os.close(fd)

    def _manifest_lines(self) -> Iterator[dict]:
        """The manifest's entries (caller holds a lock)."""
        if self.manifest_path.exists():
            yield from _parse_manifest(self.manifest_path.read_bytes())

    def _read_manifest(self, refused: list[str] | None = None) -> Iterator[dict]:
        if not self.manifest_path.exists():
            return
        with self._locked(exclusive=False):
            data = self.manifest_path.read_bytes()
        yield from _parse_manifest(data, refused)

    @contextmanager
    def _disk_errors(self, action: str = "saved") -> Iterator[None]:
        """Turn the disk's refusals into messages a person can act on."""
        try:
            yield
        except LabelStoreError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                error = DiskFullError(f"The disk is full: this label was not {action}. "
                                      f"Free some space on the disk holding {self.shown_as or self.root}, then "
                                      f"try again.")
            elif exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
                where = self._where()
                error = ReadOnlyStoreError(f"{where[0].upper()}{where[1:]} cannot be written to (it is "
                                           f"read-only): this label was not {action}.")
            else:
                error = LabelStoreError(f"This label was not {action}: {exc}")
            error.errno = exc.errno
            raise error from exc

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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _parse_manifest(data: bytes, refused: list[str] | None = None) -> Iterator[dict]:
    """The manifest's usable lines; each one refused is described in `refused` (when given)."""
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # torn line from a crash; the rest of the history is intact
        problem = _entry_problem(entry)
        if problem is None:
            yield entry
        elif refused is not None:
            refused.append(f"{MANIFEST_NAME} line {number}: {problem}")


def _entry_problem(entry: object) -> str | None:
    """Why a manifest line cannot be used (None: it can). Its path must be the one save() gives its photo."""
    if not isinstance(entry, dict):
        return "not a JSON object"
    digest, label, path = entry.get("sha256"), entry.get("label"), entry.get("path")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        return "its sha256 is not 64 lowercase hex digits"
    if "label" not in entry:
        return "it has no label"
    if label is None:  # an undo that took a photo out of the store: it names no place
        return None if path is None else f"path {path!r} given for a photo taken out of the store"
    if not isinstance(path, str):
        return "it has no path"
    folder, _, name = path.partition("/")
    problem = stored_name_problem(label, name)
    if problem is None and (folder != label or not name.startswith(digest)):
        problem = f"path {path!r} is not {label}/{digest}.<extension>"
    return problem


def _latest(lines: Iterator[dict] | list[dict]) -> dict[str, dict]:
    """SHA-256 -> its last manifest line, ordered by when that last decision was made."""
    latest: dict[str, dict] = {}
    for entry in lines:
        latest.pop(entry["sha256"], None)  # re-insert so order follows the latest decision
        latest[entry["sha256"]] = entry
    return latest


def _effective_saves(lines: list[dict]) -> list[dict]:
    """The saves not taken back by an undo, in order."""
    undone = {line["undoes"] for line in lines if "undoes" in line}
    return [line for line in lines if "undoes" not in line and line.get("id") not in undone]


def _clean_probabilities(probabilities: Mapping[str, float] | None) -> dict[str, float] | None:
    """Plain ``{class: float}`` (accepts numpy/torch scalars); refuses NaN/inf, which JSON cannot hold."""
    if probabilities is None:
        return None
    cleaned = {str(k): float(v) for k, v in probabilities.items()}
    bad = [k for k, v in cleaned.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"probabilities must be finite numbers (not for: {', '.join(bad)})")
    return cleaned
