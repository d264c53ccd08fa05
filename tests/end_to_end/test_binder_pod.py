"""A rehearsal that is Binder, as far as this machine allows: a pod built and started as mybinder.org does,
used as a workshop would use it.

The pod (rehearsal.binder says where each part comes from in repo2docker and mybinder.org-deploy):
- Python from binder/runtime.txt (an error naming it if this machine has no such interpreter); repo2docker's
  base packages (jupyterlab, notebook, jupyter-resource-usage, jupyter-offlinenotebook, jupyterhub, at its lock
  file's versions), then binder/requirements.txt as written except the CPU wheel index;
- a throwaway non-root user (jovyan, uid 1000 where free) whose HOME is a clean clone of HEAD, running
  ./binder/postBuild there, then the server: `jupyter server` with mybinder's /etc/jupyter files, a token and
  the default URL a Binder link sets, no --allow-root;
- a cgroup of mybinder's 2G (2 x 10^9 bytes) and one CPU's time (a CPU quota of 100 ms per 100 ms, every core
  visible, as Kubernetes limits a pod).

Then Chromium, with every request the page makes recorded, opens the server's root (redirected to
/voila/render/app.ipynb as on Binder), and three visits (reloading between them) each choose 20 phone photos
(12 MP, 3-4 MB) at once; then, in Teach mode with Chromium's fake camera, 5 classes x 20 photos, Train, and a
try-it photo gets an answer. Passes when every photo gets a card, Train and the try-it photo answer, no kernel
is killed or restarted, the kernel runs as the pod's user inside the pod, and no request leaves 127.0.0.1.
Prints the cgroup's peak memory.

What differs from Binder, and why:
- repo2docker's base environment is conda's; here a venv of the same Python version with pip's builds of the
  same packages (no conda here; nodejs left out: the page does not use it). torch is PyPI's build of the pinned
  version, not the `+cpu` one (the CPU index is unreachable here): same CPU code, larger files, so the page
  cache part of the peak is somewhat higher than a real pod's.
- `jupyter server` instead of `jupyterhub-singleuser` (which needs a JupyterHub to authenticate against), on
  127.0.0.1 instead of 0.0.0.0 (nothing here should listen on the network), a token in the URL instead of the
  hub's login, and no https or proxy in front.
- A venv installed once and reused (cached, see README), as a built image is; the environment's writes during
  a run go to a throwaway overlay. mybinder's /etc/jupyter is bind-mounted in the server's own mount namespace.
- The user's uid is 1000 only when that uid is free here; the machine has 2 cores shared with other work.

Needs root (cgroup, user, mounts) and Chromium: skips without them outside CI, fails in CI.
"""

from __future__ import annotations

import json
import os
import shutil

import psutil
import pytest

from rehearsal.binder import DEFAULT_URL, PodSetupError, binder_pod_route, pod_cgroup, pod_environment, pod_user
from rehearsal.browser import (
    EXAMPLES,
    FAKE_CAMERA,
    REPO,
    MemorySampler,
    browser,
    chromium_path,
    kernel_pid,
    make_phone_photos,
    off_the_machine,
    record_requests,
    teach,
    visit,
)
from rehearsal.throwaway_cgroup import CgroupUnavailable

pytestmark = pytest.mark.slow  # installs and serves a Binder pod, then 100 photos in Chromium

IN_CI = os.environ.get("CI", "").lower() == "true"
VISITS = 3
PHOTOS_PER_VISIT = 20
CLASSES = ["mug", "pen", "key", "hat", "cup"]
PHOTOS_PER_CLASS = 20
MB = 1024**2
ARTIFACTS = REPO / "test-artifacts"  # gitignored: the server's log and the figures of the last rehearsal


def needed(reason: str):
    """Skip outside CI, fail in CI, where the rehearsal must run."""
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def chromium() -> str:
    return chromium_path() or needed("needs Debian's chromium (apt-get install chromium)")


@pytest.fixture
def user():
    if os.geteuid() != 0:
        needed("needs root: the pod's user, cgroup and mounts")
    with pod_user() as made:
        yield made


@pytest.fixture
def environment(user):
    try:
        folder, seconds = pod_environment(user)
    except PodSetupError as error:
        pytest.fail(str(error))
    print(f"\nBinder environment: {'reused' if seconds is None else f'installed in {seconds:.0f} s'} ({folder})")
    return folder


@pytest.fixture
def pod(environment):
    """A cgroup shaped like a mybinder pod, removed (with anything left in it) after the test."""
    group = pod_cgroup(f"picsort-binder-pod-{os.getpid()}")
    try:
        group.create()
    except CgroupUnavailable as error:
        needed(f"needs memory, cpuset and cpu cgroups (root): {error}")
    try:
        yield group
    finally:
        group.remove()
        assert not group.dirs, f"cgroup folders left behind: {group.dirs}"


# Fixture order: skips for a missing browser or root come before the install.
def test_a_binder_pod_takes_sixty_phone_photos_and_teaches_five_classes(chromium, user, environment, pod, tmp_path):
    photos = make_phone_photos(tmp_path / "photos", PHOTOS_PER_VISIT)
    try_photo = tmp_path / "try-it-photo.jpg"  # a name no earlier card has
    shutil.copyfile(EXAMPLES / "grizzly-1.jpg", try_photo)
    killed = lambda: pod.oom_kills() > 0  # noqa: E731
    seen, taught = [], None
    with binder_pod_route(tmp_path / "server", user, environment, wrap=pod.wrap) as server, \
            browser(chromium, FAKE_CAMERA) as chrome, MemorySampler(pod.anonymous_bytes) as process_memory:
        context = chrome.new_context()
        requests = record_requests(context)
        page = context.new_page()
        try:
            for number in range(VISITS):
                seen.append(visit(page, server, photos, reload=number > 0, killed=killed))
                if number == 0:
                    landed = page.url
                current = seen[-1]
                print(f"visit {number + 1}: {current['cards']} cards in {current['seconds']:.1f} s, "
                      f"cgroup now {pod.usage_bytes() / MB:.0f} MB, peak {pod.peak_bytes() / MB:.0f} MB")
                if killed():
                    break
            if not killed():
                taught = teach(page, CLASSES, PHOTOS_PER_CLASS, try_photo, killed=killed)
                print(f"teach: {taught}, cgroup peak {pod.peak_bytes() / MB:.0f} MB")
            alive = {visited["kernel_id"]: kernel_pid(visited["kernel_id"]) for visited in seen}
            kernels = server.kernels()  # the reloaded pages' kernels were shut down by their pages
            last_pid = seen[-1]["pid"]
            kernel = psutil.Process(last_pid) if last_pid else None
            kernel_user = kernel.uids().real if kernel else None
            kernel_cpus = kernel.cpu_affinity() if kernel else None
            in_pod = last_pid in pod.pids()
        finally:
            context.close()
            log = server.log.read_text(errors="replace")
            figures = {"cgroup_peak_mb": round(pod.peak_bytes() / MB),
                       "process_peak_mb": round(process_memory.peak / MB), "oom_kills": pod.oom_kills(),
                       "limit_hits": pod.limit_hits(),
                       "cpu_throttled_periods": pod.throttled_periods(), "visits": seen, "teach": taught,
                       "requests": len(requests), "off_the_machine": off_the_machine(requests)}
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "binder-pod-jupyter-server.log").write_text(log)
            (ARTIFACTS / "binder-pod.json").write_text(json.dumps(figures, indent=1, default=str))
            print(f"cgroup peak {figures['cgroup_peak_mb']} MB (page cache included), process memory peak "
                  f"{figures['process_peak_mb']} MB, oom kills {figures['oom_kills']}, limit hits "
                  f"{figures['limit_hits']}, periods throttled by the CPU quota {figures['cpu_throttled_periods']}, "
                  f"{len(requests)} requests")

    assert pod.oom_kills() == 0, "a process in the pod was killed for memory"
    assert "restarting kernel" not in log.lower(), "a kernel died and was restarted"
    assert landed.split("?")[0].endswith(DEFAULT_URL), f"the server's root led to {landed}"
    assert len(seen) == VISITS
    for number, visited in enumerate(seen, 1):
        assert visited["cards"] == visited["named"] == PHOTOS_PER_VISIT, f"visit {number}: {visited}"
    assert taught is not None and not taught["killed"], taught
    assert taught["counts"] == {name: PHOTOS_PER_CLASS for name in CLASSES}, taught
    assert "The page now answers with this model" in taught["status"], taught
    assert taught["verdict"] in [*CLASSES, "none of these"], taught
    assert sorted(taught["bars"]) == sorted(CLASSES), taught
    # The last visit's kernel is the one process that was there all along (no silent restart), and it ran as the
    # pod's user, inside the pod, with every core visible (the quota, not a CPU set, limits it, as on Binder).
    last = seen[-1]
    assert alive[last["kernel_id"]] == last["pid"] is not None
    assert [kernel["id"] for kernel in kernels] == [last["kernel_id"]]
    assert kernel_user == user.uid
    assert in_pod
    assert kernel_cpus == sorted(os.sched_getaffinity(0))
    assert len(requests) > 10  # the recording works: the page's own scripts and styles are in it
    assert off_the_machine(requests) == []
