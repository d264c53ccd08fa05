"""throwaway_cgroup.py: a limited cgroup for tests and benchmarks that leaves nothing behind. Needs root."""

from __future__ import annotations

import subprocess
import time
import uuid

import pytest

from rehearsal.throwaway_cgroup import Cgroup, CgroupUnavailable


def test_leaving_the_group_kills_what_is_still_inside_and_removes_it():
    try:
        with Cgroup(f"picsort-test-{uuid.uuid4().hex[:8]}", 256 * 2**20) as group:
            process = subprocess.Popen(group.wrap(["sleep", "600"]))
            deadline = time.monotonic() + 10
            while process.pid not in group.pids() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert process.pid in group.pids()
            folders = list(group.dirs)
            assert folders and all(folder.is_dir() for folder in folders)
    except CgroupUnavailable as reason:  # only creating the group raises it
        pytest.skip(str(reason))
    assert process.wait(timeout=10) < 0  # killed, not left running
    assert not any(folder.exists() for folder in folders)
