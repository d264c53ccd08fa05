"""How a picsort process gives memory back to the system: glibc's malloc keeps freed heap pages unless told.

`return_freed_memory` is what the app's kernel calls after each selection of photos (a kernel lives as long as
its page, and a few hundred MB of decoded photos would otherwise stay with it). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["return_freed_memory"]


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere; looked up once (find_library runs ldconfig)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None


def return_freed_memory() -> None:
    """Give freed heap pages back to the system (glibc keeps them otherwise); nothing elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
