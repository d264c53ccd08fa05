"""`python -m picsort ...`: the command line (see picsort.cli)."""

import os

# Before torch loads OpenMP: let its idle threads sleep instead of spin. With the default (spinning),
# the model's two threads on a 2-core machine that is doing anything else (our decoding threads, another
# program) ran 4-7x slower than one thread; sleeping costs next to nothing (benchmarks/cli_throughput.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from picsort.cli import main  # noqa: E402

raise SystemExit(main())
