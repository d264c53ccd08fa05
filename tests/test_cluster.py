"""Tests for `picsort classify` on a Dask cluster (picsort.cluster) and on fsspec URLs (s3:// through moto's server).

The cluster tests start a real `dask scheduler` and `dask worker` processes from this venv on 127.0.0.1 (free
ports, one thread each, their working folder a temp folder, not the repository), and stop them after.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


def test_classify_on_one_process_never_imports_dask(tmp_path):
    """Dask is for --workers/--scheduler only: the everyday command stays as light as it was."""
    code = ("import sys; from picsort.cli import main; status = main(['classify', sys.argv[1], '--out', sys.argv[2]]); "
            "print('imported:', sorted(name for name in ('dask', 'distributed') if name in sys.modules), status)")
    done = subprocess.run([sys.executable, "-c", code, str(EXAMPLES), str(tmp_path / "out.csv")], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert done.stdout.splitlines()[-1] == "imported: [] 0", done.stdout + done.stderr
    assert (tmp_path / "out.csv").read_text().count("\n") == 1 + 6  # the header and the six example photos
