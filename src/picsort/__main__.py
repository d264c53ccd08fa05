"""`python -m picsort ...`: the same as the `picsort` command (see picsort.cli)."""

from picsort.cli import run

if __name__ == "__main__":
    raise SystemExit(run())
