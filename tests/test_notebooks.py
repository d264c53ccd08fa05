"""Both notebooks run top to bottom under nbval: train.ipynb in smoke mode, app.ipynb as Voila would."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO


def run_nbval(notebook: str, env_extra: dict, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg", **env_extra}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
         "-q", "--rootdir", str(tmp_path), notebook],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def test_train_notebook_runs_in_smoke_mode_and_leaves_model_alone(photos, tmp_path):
    shipped = {p.name: p.stat().st_mtime_ns for p in (REPO / "model").iterdir()}
    result = run_nbval("train.ipynb", {"PICSORT_SMOKE": "1", "PICSORT_SOURCE": str(photos[0])}, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
    assert {p.name: p.stat().st_mtime_ns for p in (REPO / "model").iterdir()} == shipped


def test_app_notebook_runs(tmp_path):
    result = run_nbval("app.ipynb", {"PICSORT_LABELS_DIR": str(tmp_path / "labels")}, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
