"""A throwaway control group with a memory limit, a CPU set and optionally a CPU quota, the way a Binder pod
is limited: for tests and benchmarks (rehearsal.binder, tests/test_cpu_quota.py), never used to serve.

Works with cgroup v2 (`memory.max`, `cpuset.cpus`, `memory.peak`, `memory.events`, `cpu.max`) and with v1's
separate `memory`, `cpuset` and `cpu` hierarchies (`memory.limit_in_bytes`, `memory.max_usage_in_bytes`,
`memory.failcnt`, `oom_kill` in `memory.oom_control`, `cpu.cfs_quota_us`). Needs root. The group is made under
the cgroup this process is in, so the machine's own limits still apply around it.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


class CgroupUnavailable(RuntimeError):
    """No writable memory, cpuset (or cpu) controllers here (not root, or a container without them)."""


def own_path(controller: str) -> str:
    """This process's cgroup path in the v1 hierarchy of `controller` ('' for v2's unified line)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise CgroupUnavailable(f"this process is in no {controller or 'unified'} cgroup")


def read_keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file ('key value' lines) as a dict."""
    pairs = (line.split() for line in path.read_text().splitlines() if line.strip())
    return {key: int(value) for key, value in pairs}


class Cgroup:
    """`with Cgroup(name, memory_bytes, cpus="0") as group:` start processes with `group.wrap(command)`.

    `cpu_quota=(quota, period)` in microseconds also limits CPU time, as Kubernetes does: (100000, 100000) is
    one CPU's time, however many CPUs are in the set.
    """

    def __init__(self, name: str, memory_bytes: int, cpus: str = "0", cpu_quota: tuple[int, int] | None = None):
        self.name, self.memory_bytes, self.cpus, self.cpu_quota = name, memory_bytes, cpus, cpu_quota
        self.version = 2 if (ROOT / "cgroup.controllers").exists() else 1
        self.dirs: list[Path] = []

    # -- setting up and tearing down ------------------------------------------------------------------
    def create(self) -> "Cgroup":
        if os.geteuid() != 0:
            raise CgroupUnavailable("making a cgroup needs root")
        try:
            if self.version == 2:
                self._create_v2()
            else:
                self._create_v1()
        except OSError as error:
            self.remove()
            raise CgroupUnavailable(f"cannot make cgroup {self.name}: {error}") from error
        return self

    def _create_v1(self):
        memory = ROOT / "memory" / own_path("memory").lstrip("/") / self.name
        cpuset = ROOT / "cpuset" / own_path("cpuset").lstrip("/") / self.name
        for folder in (memory, cpuset):
            folder.mkdir()
            self.dirs.append(folder)
        (memory / "memory.limit_in_bytes").write_text(str(self.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():  # no escape into swap either
            (memory / "memory.memsw.limit_in_bytes").write_text(str(self.memory_bytes))
        # A v1 cpuset takes no task until both its CPUs and its memory nodes are set.
        (cpuset / "cpuset.cpus").write_text(self.cpus)
        (cpuset / "cpuset.mems").write_text((cpuset.parent / "cpuset.mems").read_text().strip())
        self.memory, self.cpuset, self.cpu = memory, cpuset, None
        if self.cpu_quota is not None:
            cpu = ROOT / "cpu" / own_path("cpu").lstrip("/") / self.name
            cpu.mkdir()
            self.dirs.append(cpu)
            self.cpu = cpu
            quota, period = self.cpu_quota
            (cpu / "cpu.cfs_period_us").write_text(str(period))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota))

    def _create_v2(self):
        # v2 lets only a group without processes hand controllers to its children, so the group goes
        # beside this process's group, under its parent.
        parent = ROOT / own_path("").lstrip("/")
        parent = parent.parent if parent != ROOT else ROOT
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        wanted = [c for c in ("memory", "cpuset", *(["cpu"] if self.cpu_quota else [])) if c not in enabled]
        if wanted:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        folder = parent / self.name
        folder.mkdir()
        self.dirs.append(folder)
        (folder / "memory.max").write_text(str(self.memory_bytes))
        if (folder / "memory.swap.max").exists():
            (folder / "memory.swap.max").write_text("0")
        (folder / "cpuset.cpus").write_text(self.cpus)
        if self.cpu_quota is not None:
            (folder / "cpu.max").write_text("{} {}".format(*self.cpu_quota))
        self.memory = self.cpuset = self.cpu = folder

    def procs_files(self) -> list[Path]:
        return [folder / "cgroup.procs" for folder in self.dirs]

    def wrap(self, command: list[str]) -> list[str]:
        """`command`, run by a shell that first moves itself into this group (children stay in it)."""
        script = 'for procs in $CGROUP_PROCS; do echo $$ > "$procs"; done; exec "$@"'
        return ["/usr/bin/env", f"CGROUP_PROCS={' '.join(map(str, self.procs_files()))}", "/bin/sh", "-c",
                script, "sh", *command]

    def pids(self) -> set[int]:
        found = set()
        for procs in self.procs_files():
            if procs.exists():
                found |= {int(line) for line in procs.read_text().split()}
        return found

    def remove(self) -> None:
        """Kill whatever is still inside, then remove the group's folders."""
        for _ in range(50):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
        for folder in reversed(self.dirs):
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # busy for a moment while the last process is reaped
                    time.sleep(0.1)
        self.dirs = [folder for folder in self.dirs if folder.exists()]

    def __enter__(self) -> "Cgroup":
        return self.create()

    def __exit__(self, *exc_info) -> None:
        self.remove()

    # -- readings ---------------------------------------------------------------------------------------
    def peak_bytes(self) -> int:
        """Highest memory use (page cache included) since the group was made."""
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        return int((self.memory / name).read_text())

    def usage_bytes(self) -> int:
        name = "memory.current" if self.version == 2 else "memory.usage_in_bytes"
        return int((self.memory / name).read_text())

    def anonymous_bytes(self) -> int:
        """Process memory (no page cache): what a limit can only meet by killing."""
        stat = read_keyed(self.memory / "memory.stat")
        return stat["anon"] if self.version == 2 else stat["total_rss"]

    def oom_kills(self) -> int:
        if self.version == 2:
            return read_keyed(self.memory / "memory.events").get("oom_kill", 0)
        return read_keyed(self.memory / "memory.oom_control").get("oom_kill", 0)

    def limit_hits(self) -> int:
        """How often use reached the limit (v1 failcnt, v2 `max` events); reclaiming cache counts too."""
        if self.version == 2:
            return read_keyed(self.memory / "memory.events").get("max", 0)
        return int((self.memory / "memory.failcnt").read_text())

    def throttled_periods(self) -> int | None:
        """How many CPU periods the quota held the group back in (None without a quota)."""
        if self.cpu_quota is None or self.cpu is None:
            return None
        return read_keyed(self.cpu / "cpu.stat").get("nr_throttled", 0)
