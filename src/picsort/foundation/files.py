"""How picsort writes a file it keeps (labels, records, model cards): whole or not at all, readable by others
(0644)."""

from __future__ import annotations

import os
import tempfile
from contextlib import suppress
from pathlib import Path

__all__ = ["TEMPORARY_SUFFIX", "fsync_folder", "is_temporary", "write_atomically"]

# Temporary files are hidden (leading dot) and end in this suffix: folder scans skip them, and a label
# store that finds one on opening knows it is left over from a killed write.
TEMPORARY_SUFFIX = ".tmp"


def write_atomically(path: Path | str, data: bytes | bytearray | memoryview) -> Path:
    """Write `data` to `path` so that readers see either the old file (or none) or the whole new one.

    The bytes go to a hidden temporary file in the same folder (so the rename cannot cross filesystems),
    are flushed to disk, get mode 0644 (mkstemp makes them private) and replace `path` in one rename.
    A failure leaves no temporary file behind.
    """
    path = Path(path)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    fsync_folder(path.parent)
    return path


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
