"""The package's shape: no module imports itself through others, and each module has a unit test file of its own
(tests/unit/<sub-package>/test_<module>.py) that imports it or runs it by name. The layers between sub-packages are
import-linter's contracts in pyproject.toml, checked by `lint-imports` in .ci/run."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
PACKAGE = SRC / "picsort"
SHIMS = {"picsort.classify", "picsort.bulk"}  # old names kept for one release; their homes are tested


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(SRC).with_suffix("").parts)


def modules() -> dict[str, Path]:
    """Every picsort module by dotted name, packages' `__init__` as the package's own name."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        found[name.removesuffix(".__init__")] = path
    return found


def picsort_imports(path: Path, known: set[str]) -> set[str]:
    """The picsort modules a file imports anywhere in it: at the top, inside functions and under TYPE_CHECKING
    (an import moved into a function still makes a cycle, only a later one)."""
    imported = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("picsort"):
            for alias in node.names:
                imported.add(f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in known else node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names if alias.name.startswith("picsort"))
    own = module_name(path).removesuffix(".__init__") if path.is_relative_to(SRC) else None
    return (imported & known) - {own}


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` (module -> modules it imports) as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        if module in path:
            return path[path.index(module):] + [module]
        if module in done:
            return None
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            cycle = visit(imported)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        cycle = visit(module)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert import_cycle({"model": {"none_of_these"}, "none_of_these": {"files", "model"}, "files": set()}) == [
        "model", "none_of_these", "model"]
    assert import_cycle({"export": {"model", "none_of_these"}, "none_of_these": {"model"}, "model": set()}) is None


def test_no_picsort_module_imports_itself_through_others():
    found = modules()
    # Packages' __init__ files only describe; a module importing its own package is not a cycle through it.
    graph = {name: picsort_imports(path, set(found)) - {name.rsplit(".", 1)[0]} for name, path in found.items()}
    assert {"picsort.inference.model", "picsort.inference.none_of_these"} <= graph["picsort.training.export"]
    cycle = import_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_every_module_has_a_unit_test_file_that_imports_or_runs_it():
    found = modules()
    assert "picsort.photos.labels" in found  # the walk sees the package at all
    missing = []
    for name, path in found.items():
        parts = name.split(".")
        if path.name in {"__init__.py", "__main__.py"} or name in SHIMS:
            continue
        mirror = REPO / "tests" / "unit" / Path(*parts[1:-1]) / f"test_{parts[-1]}.py"
        if not mirror.is_file():
            missing.append(f"{name}: no {mirror.relative_to(REPO)}")
        elif name not in picsort_imports(mirror, set(found)) and name not in mirror.read_text():
            missing.append(f"{name}: {mirror.relative_to(REPO)} neither imports nor runs it")
    assert not missing, "\n".join(missing)


def test_the_old_names_still_work_and_say_where_things_moved():
    import subprocess
    import sys

    script = ("import warnings; warnings.simplefilter('error')\n"
              "try:\n    from picsort.classify import load_model\nexcept DeprecationWarning as e: print(e)\n"
              "try:\n    from picsort.bulk import sort_files\nexcept DeprecationWarning as e: print(e)\n"
              "warnings.simplefilter('ignore')\n"
              "from picsort.classify import load_model as old; from picsort.inference.classify import load_model\n"
              "from picsort.bulk import sort_files as old_sort; from picsort.batch.sort import sort_files\n"
              "import picsort; print(old is load_model, old_sort is sort_files, callable(picsort.teach))\n")
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "picsort.classify moved to picsort.inference.classify" in shown
    assert "picsort.bulk moved to picsort.batch.sort" in shown
    assert shown.strip().endswith("True True True")
