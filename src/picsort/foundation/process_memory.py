"""How a picsort process uses glibc's malloc: give freed memory back, or keep it for the next batch.

`return_freed_memory` is what the app's kernel calls after each selection of photos (a kernel lives as long as
its page, and a few hundred MB of decoded photos would otherwise stay with it). `reuse_freed_memory` is the
opposite, for a process that runs batch after batch (the CLI, a Dask worker). Elsewhere than glibc both do
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

__all__ = ["return_freed_memory", "reuse_freed_memory"]


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
