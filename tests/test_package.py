"""The package's shape: which picsort module imports which, and that each has a test file of its own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "picsort"


def picsort_imports(path: Path) -> set[str]:
    """The picsort modules a file imports anywhere in it: at the top, inside functions and under TYPE_CHECKING
    (an import moved into a function still makes a cycle, only a later one)."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "picsort":
            modules.update(alias.name for alias in node.names if (PACKAGE / f"{alias.name}.py").exists())
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("picsort."):
            modules.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[1] for alias in node.names if alias.name.startswith("picsort."))
    return modules - {path.stem}


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
    graph = {path.stem: picsort_imports(path) for path in PACKAGE.glob("*.py")}
    assert graph["export"] >= {"model", "none_of_these"}  # the walk sees the package's imports at all
    cycle = import_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_every_module_has_a_test_file_of_its_own():
    tests = Path(__file__).resolve().parent
    modules = {path.stem for path in PACKAGE.glob("*.py")} - {"__init__", "__main__"}
    assert "labels" in modules  # the glob sees the package at all
    untested = sorted(module for module in modules if not (tests / f"test_{module}.py").is_file())
    assert not untested, f"no tests/test_<module>.py for: {', '.join(untested)}"
