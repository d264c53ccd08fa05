"""The app's kernel gives freed memory back to the system after each selection (glibc keeps it otherwise)."""

from __future__ import annotations

import psutil
import pytest

from picsort.foundation import process_memory


def test_freed_memory_goes_back_to_the_system():
    if process_memory._malloc_trim() is None:
        pytest.skip("glibc's malloc_trim only: elsewhere return_freed_memory does nothing")
    process = psutil.Process()
    # ~100 MB in blocks under glibc's mmap threshold, so they come from the heap; `last`, allocated after them,
    # keeps free() from giving the heap's top back by itself, as a page's long-lived objects do.
    blocks = [b"x" * (64 * 1024) for _ in range(1600)]
    last = b"y" * (64 * 1024)
    del blocks
    before = process.memory_info().rss
    process_memory.return_freed_memory()
    handed_back = before - process.memory_info().rss
    assert handed_back > 50e6, f"{handed_back / 1e6:.0f} MB of ~100 MB freed went back to the system"
    del last
