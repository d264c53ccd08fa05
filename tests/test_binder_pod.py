"""A rehearsal of the app in a Binder pod: 2 GB of memory, one CPU, phone photos.

Starts the Binder route as Binder does: binder/requirements.txt installed into a fresh venv (without the
CPU wheel index, which CI cannot reach: PyPI's build of the same torch), binder/postBuild, then
`jupyter server` with voila as an extension, inside a cgroup limited to 2 GB and CPU 0 (as root). Then in
Chromium, three visits to /voila/render/app.ipynb, reloading between them, each choosing 20 phone-size
photos (12 MP, 3-4 MB) at once. Passes when every photo gets a card and no kernel is killed or restarted;
prints the cgroup's peak memory.

The venv is kept in ~/.cache/picsort-binder-pod (or $PICSORT_BINDER_CACHE) and reused while
binder/requirements.txt is unchanged.
"""

from __future__ import annotations

import os

import psutil
import pytest

from binder_route import (REPO, MemorySampler, binder_route, binder_venv, browser, chromium_path, kernel_pid,
                          make_phone_photos, visit)
from cgroup import Cgroup, CgroupUnavailable

IN_CI = os.environ.get("CI", "").lower() == "true"
POD_MEMORY = 2 * 1024**3
POD_CPUS = "0"
VISITS = 3
PHOTOS_PER_VISIT = 20
MB = 1024**2
ARTIFACTS = REPO / "test-artifacts"  # gitignored: the server's log of the last rehearsal


def needed(reason: str):
    """Skip outside CI, fail in CI, where the rehearsal must run."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    return chromium_path() or needed("needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def pod():
    """A cgroup shaped like a Binder pod, removed (with anything left in it) after the test."""
    group = Cgroup(f"picsort-binder-pod-{os.getpid()}", POD_MEMORY, cpus=POD_CPUS)
    try:
        group.create()
    except CgroupUnavailable as error:
        needed(f"needs a memory and cpuset cgroup (root): {error}")
    try:
        yield group
    finally:
        group.remove()
        assert not group.dirs, f"cgroup folders left behind: {group.dirs}"


@pytest.fixture
def binder_bin() -> str:
    bin_dir, seconds = binder_venv()
    print(f"\nBinder venv: {'reused' if seconds is None else f'installed in {seconds:.0f} s'} ({bin_dir.parent})")
    return bin_dir


# Fixture order: skips for a missing browser or cgroup come before the install.
def test_three_visits_of_twenty_phone_photos_in_a_2_gb_one_cpu_pod(chromium, pod, binder_bin, tmp_path):
    photos = make_phone_photos(tmp_path / "photos", PHOTOS_PER_VISIT)
    seen = []
    with binder_route(tmp_path, binder_bin, wrap=pod.wrap) as server, browser(chromium) as chrome, \
            MemorySampler(pod.anonymous_bytes) as process_memory:
        page = chrome.new_page()
        try:
            for number in range(VISITS):
                seen.append(visit(page, server, photos, reload=number > 0, killed=lambda: pod.oom_kills() > 0))
                current = seen[-1]
                print(f"visit {number + 1}: {current['cards']} cards in {current['seconds']:.1f} s, "
                      f"cgroup now {pod.usage_bytes() / MB:.0f} MB, peak {pod.peak_bytes() / MB:.0f} MB")
                if pod.oom_kills():
                    break
            alive = {visited["kernel_id"]: kernel_pid(visited["kernel_id"]) for visited in seen}
            kernels = server.kernels()  # the reloaded pages' kernels were shut down by their pages
            cpus = psutil.Process(seen[-1]["pid"]).cpu_affinity() if seen[-1]["pid"] else None
        finally:
            page.close()
            log = server.log.read_text(errors="replace")
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "binder-pod-jupyter-server.log").write_text(log)
            print(f"cgroup peak {pod.peak_bytes() / MB:.0f} MB (page cache included), process memory peak "
                  f"{process_memory.peak / MB:.0f} MB, oom kills {pod.oom_kills()}, limit hits {pod.limit_hits()}")

    assert pod.oom_kills() == 0, "a process in the pod was killed for memory"
    assert "restarting kernel" not in log.lower(), "a kernel died and was restarted"
    for number, visited in enumerate(seen, 1):
        assert visited["cards"] == visited["named"] == PHOTOS_PER_VISIT, f"visit {number}: {visited}"
    # The last visit's kernel is the one process that was there all along (no silent restart).
    last = seen[-1]
    assert alive[last["kernel_id"]] == last["pid"] is not None
    assert len(seen) == VISITS
    assert [kernel["id"] for kernel in kernels] == [last["kernel_id"]]
    assert cpus == [int(POD_CPUS)]
