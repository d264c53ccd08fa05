"""How a benchmark hands over its table: printed, and written to `benchmarks/results/` unless it ran --quick."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def publish(lines: list[str], results: Path, quick: bool) -> None:
    """Print the table made of `lines`; unless `quick`, also write it to `results`."""
    table = "\n".join(lines) + "\n"
    print()
    print(table)
    if not quick:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(table)
        print(f"written to {results.relative_to(REPO)}")
