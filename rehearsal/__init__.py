"""Rehearsals the tests and benchmarks use, not shipped in the wheel: a Binder pod (a 2 GB, one-CPU cgroup
and mybinder's Jupyter config), a real browser against a served app, throw-away cgroups, phone-sized photos,
free ports."""
