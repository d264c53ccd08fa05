"""How picsort writes a file it keeps (labels, records, model cards, `--copy-to` copies): whole or not at all,
flushed to disk, readable by others (0644; a copy keeps its source's mode)."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

__all__ = ["TEMPORARY_SUFFIX", "copy_atomically", "fsync_folder", "is_temporary", "write_atomically"]

# Temporary files are hidden (leading dot) and end in this suffix: folder scans skip them, and a label
# store that finds one on opening knows it is left over from a killed write.
TEMPORARY_SUFFIX = ".tmp"
COPY_CHUNK = 1 << 20  # bytes read and written at a time by copy_atomically


def write_atomically(path: Path | str, data: bytes | bytearray | memoryview) -> Path:
    """Write `data` to `path` so that readers see either the old file (or none) or the whole new one.

    The bytes go to a hidden temporary file in the same folder (so the rename cannot cross filesystems),
    are flushed to disk, get mode 0644 (mkstemp makes them private) and replace `path` in one rename.
    A failure leaves no temporary file behind.
    """
    return _replace_atomically(Path(path), lambda file: file.write(data),
                               lambda temporary: os.chmod(temporary, 0o644))


def copy_atomically(source: Path | str, path: Path | str, *, overwrite: bool = True) -> Path:
    """Copy the file `source` to `path` as `write_atomically` writes: readers see no file (or the old one) or the
    whole copy, flushed to disk. The copy keeps the source's mode and times, as `shutil.copy2` does.

    `overwrite=False`: a file already at `path`, even one another process put there a moment ago, is kept and
    FileExistsError raised (the copy is linked into place, which refuses an existing name, where a rename would
    replace it)."""
    def write(file: BinaryIO) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, file, COPY_CHUNK)

    return _replace_atomically(Path(path), write, lambda temporary: shutil.copystat(source, temporary),
                               overwrite=overwrite)


def _replace_atomically(path: Path, write: Callable[[BinaryIO], object], finish: Callable[[str], object], *,
                        overwrite: bool = True) -> Path:
    """`write` into a hidden temporary file beside `path`, flush it to disk, `finish` it (its mode), rename it to
    `path` (or, not to `overwrite`, link it there) and make that last; a failure at any step leaves no temporary
    file behind."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        finish(temporary)
        if overwrite:
            os.replace(temporary, path)
        else:
            _link_into_place(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_folder(path.parent)
    return path


def _link_into_place(temporary: str, path: Path) -> None:
    """Give the finished temporary file the name `path` only if no file has it (FileExistsError otherwise)."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:  # a filesystem without hard links: check, then rename (a narrow window, as before)
        if os.path.lexists(path):
            raise FileExistsError(errno.EEXIST, "file exists", str(path)) from None
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def is_temporary(name: str) -> bool:
    """True for a file name `write_atomically` uses while writing."""
    return name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)


def fsync_folder(folder: Path | str) -> None:
    """Make a rename or a new file in `folder` survive a power cut."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
