"""picsort: build, share and demo your own image classifier (fast.ai lesson 2)."""

import os

# Before torch loads OpenMP (the app, the CLI and the API import torch only through picsort): let idle
# OpenMP threads sleep instead of spin. On a small machine shared with anything else (decoding threads,
# other Voila kernels) spinning threads fight over the cores: measured on 2 busy cores, one image took
# 266-1842 ms with spinning threads and 41-58 ms with sleeping ones (benchmarks/app_speed.py,
# benchmarks/cli_throughput.py). Where torch was imported first (train.ipynb imports fastai first),
# this changes nothing.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
