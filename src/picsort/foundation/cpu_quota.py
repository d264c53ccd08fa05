"""How many CPUs this process may really use: its CPU set, and its cgroup's CPU quota (and `cgroup_limits`,
which `picsort.serving.kernel_limit` reads the memory limit with).

Binder (Kubernetes) limits a pod's CPU by quota: "one CPU" is 100 ms of CPU time per 100 ms, while every core
of the node stays visible. torch starts one thread per visible core; on a 64-core node under a one-CPU
quota those 64 threads share one CPU's time and every forward pass waits on them. `fit_torch_threads` is
what the app's kernel and `picsort classify` call before the model runs.

The quota is read from the process's own cgroup (/proc/self/cgroup) and every cgroup above it up to its
mount, with cgroup v2 (`cpu.max`: "max 100000" or "<quota> <period>") and v1 (`cpu.cfs_quota_us`, -1 for
none, and `cpu.cfs_period_us`) alike; the lowest limit counts. Unreadable files count as no limit.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

__all__ = ["available_cpus", "cgroup_cpu_limit", "cgroup_limits", "fit_torch_threads", "let_idle_threads_sleep"]

PROC_SELF = Path("/proc/self")


def available_cpus(proc_self: Path = PROC_SELF) -> int:
    """The CPUs this process can use at once: its CPU set's size, or its cgroup quota rounded up if lower."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = cgroup_cpu_limit(proc_self)
    if limit is not None:
        cpus = min(cpus, max(1, math.ceil(limit)))
    return cpus


def let_idle_threads_sleep() -> None:
    """Serving only (the app's kernel, the CLI, the API), called before torch loads OpenMP: idle OpenMP threads
    sleep instead of spinning, so decoding threads and other kernels on a small machine get the cores
    (benchmarks/app_speed.py, cli_throughput.py). Training is left to OpenMP's default (a one-epoch timing
    suggested sleeping threads slow it; a whole train.ipynb run showed no difference, benchmarks/train_run.py).
    A process that imported torch first keeps its policy."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def fit_torch_threads() -> int:
    """Use no more torch threads than `available_cpus()` (fewer, if set so already); returns the number used."""
    import torch

    threads = min(torch.get_num_threads(), available_cpus())
    if threads != torch.get_num_threads():
        torch.set_num_threads(threads)
    return threads


def cgroup_cpu_limit(proc_self: Path = PROC_SELF) -> float | None:
    """CPUs' worth of time the process's cgroups allow (quota / period, lowest on the way up), None for no limit."""
    return min(cgroup_limits(_read_limit, "cpu", proc_self), default=None)


def cgroup_limits(read_limit, controller: str, proc_self: Path = PROC_SELF) -> list[float]:
    """Every limit `read_limit(folder, version)` finds in the folders of the process's cgroups for `controller`
    (v1 hierarchies holding it, and v2), its own group's and each one's above it; none if unreadable."""
    try:
        memberships = (proc_self / "cgroup").read_text().splitlines()
        mounts = _cgroup_mounts((proc_self / "mountinfo").read_text(), controller)
    except OSError:
        return []
    limits = []
    for line in memberships:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        version = 2 if controllers == "" else 1
        if version == 1 and controller not in controllers.split(","):
            continue
        for mount_root, mount_point in mounts.get(version, []):
            for folder in _folders_up(path, mount_root, mount_point):
                limit = read_limit(folder, version)
                if limit is not None:
                    limits.append(limit)
    return limits


def _cgroup_mounts(mountinfo: str, controller: str) -> dict[int, list[tuple[str, Path]]]:
    """{1: the v1 hierarchies holding `controller`, 2: the v2 ones}, each as (root in the hierarchy, where it
    is mounted), from /proc/self/mountinfo."""
    mounts: dict[int, list[tuple[str, Path]]] = {1: [], 2: []}
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        separator = fields.index("-")
        if len(fields) < separator + 4 or separator < 5:
            continue
        root, mount_point = _unescape(fields[3]), Path(_unescape(fields[4]))
        kind, options = fields[separator + 1], fields[separator + 3].split(",")
        if kind == "cgroup2":
            mounts[2].append((root, mount_point))
        elif kind == "cgroup" and controller in options:
            mounts[1].append((root, mount_point))
    return mounts


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


def _folders_up(path: str, mount_root: str, mount_point: Path) -> list[Path]:
    """The folders of cgroup `path` and of each cgroup above it that the mount shows, innermost first."""
    root = mount_root.rstrip("/")
    inner = [part for part in path[len(root):].split("/") if part]
    if (root and path != root and not path.startswith(root + "/")) or ".." in inner:
        return [mount_point]  # a cgroup namespace or bind mount shows the process's own group at the mount
    return [mount_point.joinpath(*inner[:depth]) for depth in range(len(inner), -1, -1)]


def _read_limit(folder: Path, version: int) -> float | None:
    try:
        if version == 2:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota == "max":
                return None
        else:
            quota = (folder / "cpu.cfs_quota_us").read_text().strip()
            period = (folder / "cpu.cfs_period_us").read_text().strip()
        quota, period = int(quota), int(period)
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None
