"""How many kernels the server runs at once: no more than its memory holds.

Voila starts a kernel for every page visit, and each of picsort's kernels holds about 0.6 GB once the model
is loaded (0.8 GB with a large upload). Nothing in Voila or jupyter_server bounds their number, so one
client asking for the page in a loop, or a room reloading at once, starts kernels until the machine swaps or
the kernel OOM killer picks victims: every page on the server stops. `BoundedKernelManager` counts kernels
(running and starting) and starts a new one only while fewer than `max_kernels` run; past that, a visit
waits up to `wait_seconds` for one to end (a reload ends the old page's kernel as the new one starts) and
otherwise gets "503 Service Unavailable" with a message saying why. Kernels of closed pages go as before
(the page's tab-close beacon, culling after a minute without a page).

`voila.json` (VoilaConfiguration.multi_kernel_manager_class, for `picsort app` and `voila app.ipynb`) and
`binder/jupyter_server_config.json` (ServerApp.kernel_manager_class, for the Binder route) name it.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Float, Integer, default

from picsort.foundation.cpu_quota import PROC_SELF, cgroup_limits

__all__ = ["BoundedKernelManager", "KERNEL_BYTES", "default_max_kernels", "memory_limit"]

# A picsort kernel at its peak (benchmarks/results/binder-pod.md: 0.83 GiB with 60 phone photos in one
# selection, about 0.6 GB after the page loads), and what the server itself needs beside its kernels.
KERNEL_BYTES = 800 * 2**20
SERVER_BYTES = 300 * 2**20


def memory_limit(proc_self: Path = PROC_SELF) -> int:
    """Bytes of memory this process may use: the machine's memory, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limits = cgroup_limits(_read_memory_limit, "memory", proc_self)
    return int(min([total, *limits]))


def default_max_kernels(proc_self: Path = PROC_SELF) -> int:
    """As many kernels as the memory holds beside the server, and at least one."""
    return max(1, (memory_limit(proc_self) - SERVER_BYTES) // KERNEL_BYTES)


def _read_memory_limit(folder: Path, version: int) -> float | None:
    name = "memory.max" if version == 2 else "memory.limit_in_bytes"
    try:
        text = (folder / name).read_text().strip()
    except OSError:
        return None
    # v2 writes "max" for none, v1 a number near 2**63 for none
    return float(text) if text.isdigit() and int(text) < 2**60 else None


class BoundedKernelManager(AsyncMappingKernelManager):
    """jupyter_server's kernel manager, running at most `max_kernels` kernels at once."""

    max_kernels = Integer(config=True, help="Most kernels at once (default: as many as the memory holds, "
                                            f"{KERNEL_BYTES // 2**20} MB each beside the server).")
    wait_seconds = Float(10.0, config=True, help="How long a new page waits for a kernel to end when the "
                                                 "server is full, before it is told to come back later.")

    @default("max_kernels")
    def _max_kernels_default(self) -> int:
        return default_max_kernels()

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._starting = 0
        self._admission = asyncio.Lock()

    async def start_kernel(self, *args, kernel_id: str | None = None, **kwargs) -> str:
        if kernel_id is not None and kernel_id in self:  # an existing kernel, asked for again
            return await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
        await self._admit()
        try:
            return await super().start_kernel(*args, kernel_id=kernel_id, **kwargs)
        finally:
            self._starting -= 1

    async def _admit(self) -> None:
        """Count one kernel as starting once there is room for it, or refuse with 503 after `wait_seconds`."""
        deadline = time.monotonic() + self.wait_seconds
        async with self._admission:  # one check at a time, so two visits cannot both take the last place
            while len(self) + self._starting >= self.max_kernels:
                if time.monotonic() >= deadline:
                    self.log.warning("Refused a new kernel: %d running or starting, the limit is %d",
                                     len(self) + self._starting, self.max_kernels)
                    pages = f"{self.max_kernels} page{'s' if self.max_kernels != 1 else ''}"
                    raise web.HTTPError(503, reason=f"Server full: {pages} open, the most its memory holds. "
                                                    "Close a tab or try again in a minute.")
                await asyncio.sleep(0.2)
            self._starting += 1
