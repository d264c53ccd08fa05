"""The CPUs picsort uses follow the CPU quota, as on Binder, not the node's core count.

Parsing is checked on made-up /proc and cgroup files in a temporary folder (cgroup v2 and v1, limits set
higher up, namespaces, no limit, damaged files); then a real cgroup with one CPU's quota over every CPU of
this machine (root only) runs the app's setup in a child Python, which must give torch one thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from picsort.foundation.cpu_quota import available_cpus, cgroup_cpu_limit
from rehearsal.throwaway_cgroup import Cgroup, CgroupUnavailable
from tests.conftest import IN_CI

REPO = Path(__file__).resolve().parents[3]
CPUS_HERE = len(os.sched_getaffinity(0))


def fake_proc(tmp_path: Path, cgroup: str, mounts: list[str]) -> Path:
    """A /proc/self with these cgroup lines and mountinfo lines ({root} is the temporary folder)."""
    proc = tmp_path / "proc-self"
    proc.mkdir()
    (proc / "cgroup").write_text(cgroup)
    (proc / "mountinfo").write_text("".join(line.format(root=tmp_path) + "\n" for line in mounts))
    return proc


def write(folder: Path, files: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)


V2_MOUNT = "30 23 0:26 / {root}/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate"
V1_MOUNT = "33 25 0:29 {hierarchy_root} {root}/cpu rw,nosuid - cgroup cgroup rw,cpu,cpuacct"


def test_v2_the_lowest_quota_on_the_way_up_counts(tmp_path):
    proc = fake_proc(tmp_path, "0::/kubepods/pod1/box\n", [V2_MOUNT])
    write(tmp_path / "cgroup" / "kubepods" / "pod1" / "box", {"cpu.max": "max 100000\n"})
    write(tmp_path / "cgroup" / "kubepods" / "pod1", {"cpu.max": "150000 100000\n"})
    write(tmp_path / "cgroup" / "kubepods", {"cpu.max": "400000 100000\n"})
    assert cgroup_cpu_limit(proc) == 1.5
    assert available_cpus(proc) == min(CPUS_HERE, 2)  # one and a half CPUs' time: two threads


def test_v2_one_cpu_of_time_is_one_thread(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", [V2_MOUNT])
    write(tmp_path / "cgroup", {"cpu.max": "100000 100000\n"})
    assert available_cpus(proc) == 1


def test_v1_in_a_namespace_reads_the_group_shown_at_the_mount(tmp_path):
    # Docker without a cgroup namespace: the path is the host's, and the mount shows that group itself.
    proc = fake_proc(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n",
                     [V1_MOUNT.replace("{hierarchy_root}", "/docker/abc")])
    write(tmp_path / "cpu", {"cpu.cfs_quota_us": "50000\n", "cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(proc) == 0.5
    assert available_cpus(proc) == 1  # half a CPU still runs one thread


def test_v1_no_quota_leaves_the_cpu_set(tmp_path):
    proc = fake_proc(tmp_path, "4:cpu,cpuacct:/\n", [V1_MOUNT.replace("{hierarchy_root}", "/")])
    write(tmp_path / "cpu", {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n"})
    assert cgroup_cpu_limit(proc) is None
    assert available_cpus(proc) == CPUS_HERE


def test_a_quota_above_the_cpu_set_leaves_the_cpu_set(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", [V2_MOUNT])
    write(tmp_path / "cgroup", {"cpu.max": f"{(CPUS_HERE + 3) * 100000} 100000\n"})
    assert available_cpus(proc) == CPUS_HERE


def test_mount_points_with_spaces_are_read(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", ["30 23 0:26 / {root}/my\\040cgroups rw - cgroup2 cgroup2 rw"])
    write(tmp_path / "my cgroups", {"cpu.max": "200000 100000\n"})
    assert cgroup_cpu_limit(proc) == 2.0


@pytest.mark.parametrize("cpu_max", ["", "banana 100000", "100000 0", "-5 100000"])
def test_damaged_or_missing_files_count_as_no_limit(tmp_path, cpu_max):
    proc = fake_proc(tmp_path, "0::/\n", [V2_MOUNT, "garbage line"])
    write(tmp_path / "cgroup", {"cpu.max": cpu_max})
    assert cgroup_cpu_limit(proc) is None
    assert available_cpus(proc) == CPUS_HERE
    assert available_cpus(tmp_path / "no-such-proc") == CPUS_HERE


# The app's kernel sets up the page; then `picsort classify` sets its threads (from torch's default again).
IN_THE_GROUP = """
import os, torch
from picsort.app.page import build_app
from picsort.cli import _set_threads
cpus = len(os.sched_getaffinity(0))
build_app(labels_folder=os.environ["LABELS"])
app = torch.get_num_threads()
torch.set_num_threads(cpus)
_set_threads(None)
print(cpus, app, torch.get_num_threads())
"""


def test_the_app_and_the_cli_in_a_one_cpu_cgroup_give_torch_one_thread(tmp_path):
    """A real cgroup: one CPU's time over every CPU of this machine, as a Binder pod on a bigger node."""
    if CPUS_HERE < 2:
        pytest.skip("needs at least two CPUs: with one, the CPU set alone makes one thread")
    cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    try:
        group = Cgroup(f"picsort-quota-{uuid.uuid4().hex[:8]}", 4 * 2**30, cpus=cpus, cpu_quota=(100000, 100000))
        group.create()
    except CgroupUnavailable as reason:
        if IN_CI:
            pytest.fail(str(reason))
        pytest.skip(str(reason))
    try:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "LABELS": str(tmp_path / "labels"), "PYTHONPATH": str(REPO / "src")}
        env.pop("OMP_NUM_THREADS", None)
        result = subprocess.run(group.wrap([sys.executable, "-c", IN_THE_GROUP]), cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
    finally:
        group.remove()
    assert result.returncode == 0, result.stderr[-3000:]
    cpus, app_threads, cli_threads = map(int, result.stdout.split()[-3:])
    assert cpus == CPUS_HERE  # every CPU visible, as on the node
    assert app_threads == cli_threads == 1
    assert not group.dirs  # the group is gone


# ---- OpenMP's wait policy: idle threads sleep where picsort serves, spin where it trains -----------------------
POLICY_AT_TORCH_IMPORT = """
import os, sys
class SeeTorchLoad:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            print("policy when torch loaded:", os.environ.get("OMP_WAIT_POLICY"))
            sys.meta_path.remove(self)
        return None
sys.meta_path.insert(0, SeeTorchLoad())
"""


def policy_when_torch_loads(code: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", POLICY_AT_TORCH_IMPORT + code], capture_output=True, text=True,
                          env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split("policy when torch loaded:", 1)[1].split()[0]


@pytest.mark.parametrize("code", ["import picsort.app.page", "import picsort.inference.classify",
                                  "import picsort.batch.sort",
                                  "from picsort.cli import main; main(['teach', 'no-such-folder', '--out', 'unused'])\n"
                                  "import torch"])
def test_serving_lets_idle_openmp_threads_sleep(code):
    assert policy_when_torch_loads(code) == "PASSIVE"


def test_training_keeps_openmp_threads_spinning_between_batches():
    # train.ipynb's imports, in its order: a sleeping policy made one epoch ~30 % slower (benchmarks/train_run.py)
    code = ("import picsort\nfrom picsort.inference.backbones import learner_architecture\n"
            "from picsort.training.export import export_model\n"
            "from picsort.training.notebook import fit_linear_head")
    assert policy_when_torch_loads(code) == "None"
