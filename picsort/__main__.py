"""`python -m picsort ...`: the command line (see picsort.cli), with process settings for batch work."""

import os

# Before torch loads OpenMP: let its idle threads sleep instead of spin. Spinning, the model's threads
# and the decoding threads (or any other program) fight over a small machine's cores; with a busy
# 2-core machine the model ran several times slower (benchmarks/cli_throughput.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from picsort.bulk import reuse_freed_memory  # noqa: E402

reuse_freed_memory()

from picsort.cli import main  # noqa: E402

raise SystemExit(main())
