"""The rehearsal of a Binder pod, used by tests/test_binder_pod.py and benchmarks/binder_pod.py, never by serving:
its environment built as repo2docker builds it, its non-root user, mybinder's /etc/jupyter, and the server started
as mybinder starts it. It runs from a clone of the repository (`pip install -e .`): the pod's HOME is a clone of it.

What each piece copies (read from repo2docker at 808ae6bb and mybinder.org-deploy at 95860dbc):

- Python: the interpreter binder/runtime.txt names (`python-3.11`), as repo2docker reads that file; no such
  interpreter here is an error that says so (repo2docker would install it; this machine cannot).
- Base environment: repo2docker starts from its own conda environment (buildpacks/conda/environment.py-3.11.yml);
  BASE_PACKAGES are the Python packages in it, at the versions of its lock file, installed first. Then
  binder/requirements.txt as written, less the CPU wheel index this machine cannot reach (so torch is PyPI's
  build of the same version: bigger, same code on a CPU).
- The user: repo2docker builds as NB_USER (jovyan, uid 1000) with HOME=/home/jovyan, the repository copied into
  HOME (REPO_DIR), and runs ./binder/postBuild from there as that user. Here a throwaway system user gets a
  temporary HOME holding a clean clone of the repository's HEAD (not the working tree); uid 1000 when free.
- The image's layers: the environment is cached between runs (it takes minutes to install) and owned by that
  user, as repo2docker's is. What postBuild and the server write into it goes to an overlay in a private mount
  namespace, thrown away with the run, so the cache stays as installed.
- /etc/jupyter: mybinder mounts its own files there (mybinder/values.yaml `etcJupyter`, and
  mybinder/files/etc/jupyter), copied into mybinder_etc_jupyter/ beside this module. They are bind-mounted on /etc/jupyter in
  the server's mount namespace only. (JUPYTER_CONFIG_PATH would rank them above the user's ~/.jupyter, where
  postBuild puts the app's settings; on Binder /etc/jupyter ranks below it.)
- The start: mybinder runs the image's `jupyterhub-singleuser`, which needs a hub; here `jupyter server` with the
  same extensions, a token, and the default URL a Binder link's urlpath sets (/voila/render/app.ipynb). It
  listens on 127.0.0.1, not 0.0.0.0.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rehearsal.browser import BINDER, REPO, free_port, serve
from rehearsal.throwaway_cgroup import Cgroup

# Data of the rehearsal, not of the app: beside this module in a clone, left out of a regular install (which
# cannot rehearse: browser_rehearsal says so on import).
MYBINDER_ETC_JUPYTER = Path(__file__).resolve().parent / "mybinder_etc_jupyter"
DEFAULT_CACHE = Path("/var/cache/picsort-binder-pod")  # outside every checkout; readable by the pod's user

# repo2docker's base environment for Python 3.11 (buildpacks/conda/environment.py-3.11.yml, versions from
# environment.py-3.11-linux-64.lock): the packages pip also has. Left out: nodejs and pip (not Python packages
# the page sees). `jupyterhub` is pip's name for conda's jupyterhub-singleuser.
BASE_PACKAGES = ["ipywidgets==8.1.7", "jupyter-offlinenotebook==0.3.2", "jupyter-resource-usage==1.2.0",
                 "jupyter_server==2.17.0", "jupyterhub==5.4.0", "jupyterlab==4.4.9", "notebook==7.4.7"]
POD_MEMORY = 2_000_000_000  # mybinder's singleuser `memory.limit: 2G` (Kubernetes' G is 10^9 bytes)
ONE_CPU = (100_000, 100_000)  # its `cpu.limit: 1` as Kubernetes applies it: 100 ms of CPU time per 100 ms (us)
BINDER_UID = 1000  # repo2docker's NB_UID
BINDER_USER = "jovyan"
DEFAULT_URL = "/voila/render/app.ipynb"  # what ?urlpath=voila/render/app.ipynb in the Binder link sets


class PodSetupError(RuntimeError):
    """The pod cannot be built the way Binder builds it (with what is wrong and what to do)."""


# ---- Python from binder/runtime.txt ---------------------------------------------------------------------------
def runtime_version(runtime_txt: Path = BINDER / "runtime.txt") -> str:
    """The Python version binder/runtime.txt asks for, read as repo2docker reads it (name-version[-yyyy-mm-dd])."""
    text = runtime_txt.read_text().strip()
    parts = text.split("-")
    if len(parts) not in (2, 5) or parts[0] != "python" or not parts[1].replace(".", "").isdigit():
        raise PodSetupError(f"{runtime_txt} says {text!r}; repo2docker reads a Python version as python-3.X")
    return parts[1]


def usable_by_everyone(path: Path) -> bool:
    """Whether any user can run `path`: the pod's user must run the environment's Python, which links to it (an
    interpreter under root's 0700 home, as pyenv's, is out of its reach)."""
    real = path.resolve()
    return bool(real.stat().st_mode & 0o001) and all(parent.stat().st_mode & 0o001 for parent in real.parents)


def runtime_python(runtime_txt: Path = BINDER / "runtime.txt") -> str:
    """This machine's interpreter for the version runtime.txt names, one the pod's user can run; a PodSetupError
    if there is none."""
    version = runtime_version(runtime_txt)
    short = ".".join(version.split(".")[:2])
    folders = os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/bin", "/usr/bin"]
    candidates = [Path(folder) / f"python{short}" for folder in folders if folder]
    found = next((str(path) for path in candidates if path.is_file() and usable_by_everyone(path)), None)
    if found is None:
        raise PodSetupError(f"binder/runtime.txt asks for Python {version} (Binder builds with it) and this machine "
                            f"has no python{short} that every user can run (on PATH, /usr/local/bin or /usr/bin): "
                            f"install it (apt-get install python{short}) or change runtime.txt")
    actual = subprocess.run([found, "-c", "import platform; print(platform.python_version())"], check=True,
                            capture_output=True, text=True).stdout.strip()
    if not (actual + ".").startswith(version + "."):
        raise PodSetupError(f"binder/runtime.txt asks for Python {version}; {found} is Python {actual}")
    return found


# ---- the environment ----------------------------------------------------------------------------------------
def binder_requirements() -> str:
    """binder/requirements.txt as this machine can install it: without the CPU wheel index (unreachable here), so
    torch's `+cpu` builds become PyPI's builds of the same versions."""
    lines = []
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        if line.strip().startswith(("--extra-index-url", "--index-url")):
            continue
        lines.append(line.replace("+cpu", ""))
    return "\n".join(lines) + "\n"


def cache_folder() -> Path:
    return Path(os.environ.get("PICSORT_BINDER_CACHE", DEFAULT_CACHE))


def environment_folder(python: str) -> Path:
    """One folder per Python, base packages and requirements: a change to any of them builds anew."""
    version = subprocess.run([python, "-c", "import platform; print(platform.python_version())"], check=True,
                             capture_output=True, text=True).stdout.strip()
    key = f"python {version}\nbase {' '.join(BASE_PACKAGES)}\n{binder_requirements()}"
    return cache_folder() / f"env-{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def pip_install(folder: Path, *arguments: str) -> None:
    result = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", *arguments],
                            capture_output=True, text=True)
    if result.returncode:
        raise PodSetupError(f"pip install {' '.join(arguments)} failed:\n{result.stdout[-3000:]}\n"
                            f"{result.stderr[-3000:]}")


def pod_environment(owner: "PodUser") -> tuple[Path, float | None]:
    """(folder, install seconds or None when the cached one was used) of the pod's Python environment, owned by
    `owner` as repo2docker's is owned by NB_USER. Only one is kept: each is several GB."""
    python = runtime_python()
    folder = environment_folder(python)
    done = folder / "picsort-installed.json"
    seconds = None
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)  # an install cut short
        for old in folder.parent.glob("env-*"):
            shutil.rmtree(old, ignore_errors=True)
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(folder.parent, 0o755)
        started = time.monotonic()
        subprocess.run([python, "-m", "venv", str(folder)], check=True)
        pip_install(folder, *BASE_PACKAGES)
        requirements = folder / "binder-requirements.txt"
        requirements.write_text(binder_requirements())
        pip_install(folder, "-r", str(requirements))
        seconds = time.monotonic() - started
        done.write_text(json.dumps({"python": python, "base": BASE_PACKAGES, "requirements": binder_requirements(),
                                    "install_seconds": round(seconds, 1)}))
    if folder.stat().st_uid != owner.uid:
        subprocess.run(["chown", "-R", f"{owner.uid}:{owner.gid}", str(folder)], check=True)
    return folder, seconds


# ---- the pod's limits ------------------------------------------------------------------------------------------
def pod_cgroup(name: str, memory_bytes: int = POD_MEMORY):
    """A cgroup (rehearsal.throwaway_cgroup) limited as mybinder limits a pod: memory, and one CPU's time by quota with
    every core visible (not a CPU set). Create it with `.create()` or `with`."""
    every_cpu = ",".join(map(str, sorted(os.sched_getaffinity(0))))
    return Cgroup(name, memory_bytes, cpus=every_cpu, cpu_quota=ONE_CPU)


# ---- the user -----------------------------------------------------------------------------------------------
@dataclass
class PodUser:
    name: str
    uid: int
    gid: int
    home: Path  # also REPO_DIR: the clean clone of the repository


def free_uid(start: int = BINDER_UID) -> int:
    uid = start
    while True:
        try:
            pwd.getpwuid(uid)
        except KeyError:
            try:
                grp.getgrgid(uid)
            except KeyError:
                return uid
        uid += 1


def name_taken(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@contextmanager
def pod_user():
    """A throwaway system user (jovyan, uid 1000 where free) whose HOME is a temporary clean clone of HEAD;
    removed, home and all, afterwards. Its processes must be gone by then (the pod's cgroup ends them)."""
    if os.geteuid() != 0:
        raise PodSetupError("adding the pod's user needs root")
    name = BINDER_USER if not name_taken(BINDER_USER) else f"{BINDER_USER}{os.getpid()}"
    uid = free_uid()
    home = Path(tempfile.mkdtemp(prefix="picsort-binder-home-"))
    try:
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(home)], check=True,
                       capture_output=True)
        subprocess.run(["useradd", "--system", "--uid", str(uid), "--user-group", "--no-create-home",
                        "--home-dir", str(home), "--shell", "/bin/bash", name], check=True, capture_output=True)
        try:
            user = PodUser(name, uid, pwd.getpwnam(name).pw_gid, home)
            subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(home)], check=True)
            yield user
        finally:
            subprocess.run(["userdel", name], capture_output=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)


# ---- running in the pod -------------------------------------------------------------------------------------
def pod_env(user: PodUser, environment: Path) -> dict:
    """The variables a repo2docker image sets (HOME, USER, PATH with ~/.local/bin and the environment first)."""
    return {"HOME": str(user.home), "USER": user.name, "NB_USER": user.name, "REPO_DIR": str(user.home),
            "SHELL": "/bin/bash", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONUNBUFFERED": "1",
            "PATH": os.pathsep.join([f"{user.home}/.local/bin", str(environment / "bin"), "/usr/local/sbin",
                                     "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]),
            "HF_HUB_OFFLINE": "1"}  # this machine has no internet; the app loads nothing from a hub anyway


MOUNT_SCRIPT = r"""
environment=$1 layer=$2 etc_jupyter=$3 uid=$4 gid=$5; shift 5
mount -t overlay picsort-pod-env -o "lowerdir=$environment,upperdir=$layer/upper,workdir=$layer/work" "$environment"
if [ -n "$etc_jupyter" ]; then mount --bind -o ro "$etc_jupyter" /etc/jupyter; fi
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
"""


def as_pod_user(command: list[str], user: PodUser, environment: Path, layer: Path,
                etc_jupyter: Path | None = None) -> list[str]:
    """`command` run as `user` in a mount namespace of its own, where `environment` is writable through an
    overlay whose changes land in `layer` (the cache stays as installed), and `etc_jupyter` is /etc/jupyter."""
    for part in ("upper", "work"):
        (layer / part).mkdir(parents=True, exist_ok=True)
    return ["unshare", "--mount", "--propagation", "private", "--", "/bin/sh", "-c", MOUNT_SCRIPT, "sh",
            str(environment), str(layer), str(etc_jupyter or ""), str(user.uid), str(user.gid), *command]


def run_post_build(user: PodUser, environment: Path, layer: Path) -> str:
    """./binder/postBuild from REPO_DIR as the user, as repo2docker runs it; returns its output."""
    post_build = user.home / "binder" / "postBuild"
    post_build.chmod(0o755)
    result = subprocess.run(as_pod_user(["./binder/postBuild"], user, environment, layer), cwd=user.home,
                            env=pod_env(user, environment), capture_output=True, text=True)
    if result.returncode:
        raise PodSetupError(f"binder/postBuild failed as {user.name}:\n{result.stdout[-3000:]}\n"
                            f"{result.stderr[-3000:]}")
    return result.stdout + result.stderr


@contextmanager
def etc_jupyter_mount_point():
    """/etc/jupyter must exist to mount mybinder's files on it; made empty here if absent, removed afterwards."""
    target = Path("/etc/jupyter")
    made = not target.exists()
    if made:
        target.mkdir()
    try:
        yield
    finally:
        if made:
            try:
                target.rmdir()
            except OSError:  # something else put files there meanwhile: leave it
                pass


def mybinder_etc_jupyter(folder: Path) -> Path:
    """A copy of mybinder's /etc/jupyter, readable by the pod's user."""
    shutil.copytree(MYBINDER_ETC_JUPYTER, folder)
    folder.chmod(0o755)
    return folder


def server_command(port: int, token: str) -> list[str]:
    """The Jupyter server as mybinder's pod runs it (jupyterhub-singleuser's flags, without a hub)."""
    return ["jupyter", "server", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--ServerApp.default_url={DEFAULT_URL}", f"--IdentityProvider.token={token}"]


@contextmanager
def binder_pod_route(work: Path, user, environment: Path, wrap=lambda command: command):
    """The Binder route as a Binder pod serves it: binder/postBuild run as the pod's non-root `user` in its HOME (a
    clean clone), then the server as mybinder starts it, as that user, with mybinder's /etc/jupyter; `wrap` puts
    it in the pod's cgroup. The page is the server's default URL."""
    layer = work / "environment-layer"  # what the pod writes into its environment: thrown away with `work`
    run_post_build(user, environment, layer)
    etc_jupyter = mybinder_etc_jupyter(work / "etc-jupyter")
    port, token = free_port(), secrets.token_hex(16)
    command = wrap(as_pod_user(server_command(port, token), user, environment, layer, etc_jupyter))
    with etc_jupyter_mount_point(), serve(command, base_url=f"http://127.0.0.1:{port}/", page_path="", token=token,
                                          log=work / "jupyter-server.log", env=pod_env(user, environment),
                                          cwd=user.home) as server:
        yield server


if __name__ == "__main__":  # build (or check) the cached environment: python -m rehearsal.binder
    with pod_user() as who:
        where, took = pod_environment(who)
        print(where, "reused" if took is None else f"installed in {took:.0f} s", file=sys.stderr)
