"""Draw picsort's import graph, one box per sub-package, for the design notes: `python docs/import_graph.py`.

Reads every module under src/picsort with the standard library's `ast` (nothing is imported, so it runs without
picsort's dependencies), counts the imports from one sub-package's modules into another's (an arrow's label: how
many module-to-module imports; imports made inside functions count too), and writes docs/design/import-graph.dot
and, with Graphviz's `dot` (`apt-get install graphviz`), docs/design/import-graph.svg. The boxes stand in rows by
the floors pyproject.toml's import-linter contract names (cli > app > serving | web > batch | training >
inference > photos > foundation); an arrow that points up a floor would break that contract and is drawn red.
"""

from __future__ import annotations

import argparse
import ast
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "picsort"
OUT = REPO / "docs" / "design"
# Top floor first, as in pyproject.toml's [[tool.importlinter.contracts]] "layers"; side by side share one.
FLOORS = [["cli"], ["app"], ["serving", "web"], ["batch", "training"], ["inference"], ["photos"], ["foundation"]]
# What each box holds, in a few words (shown under its name).
ROLES = {
    "cli": "picsort classify / teach / app / train",
    "app": "the page, cards, Teach, widgets",
    "serving": "Voila server, kernel websocket, limits",
    "web": "export-web: the model as a static page",
    "batch": "folders into a CSV, copies, Dask",
    "training": "teach, export, notebook helpers",
    "inference": "classify, the network, none of these",
    "photos": "images, labels, sources, search",
    "foundation": "folders, files, CPUs, memory, URLs",
    "picsort": "picsort.teach; shims picsort.classify, picsort.bulk",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def box(module: str) -> str:
    """The box a module belongs to: its sub-package, `cli`, or `picsort` for the top level's other modules."""
    parts = module.split(".")
    if len(parts) == 1:
        return "picsort"
    second = parts[1]
    if (PACKAGE / second).is_dir() or second == "cli":
        return second
    return "picsort"  # __main__, the shims picsort.classify and picsort.bulk


def imports(path: Path, module: str) -> set[str]:
    """picsort modules (or packages) that `module` imports."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "picsort"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([base] if base else []))
            if base.split(".")[0] == "picsort":
                found.add(base)
    return found


def edges() -> tuple[Counter, Counter]:
    """(arrows between boxes with their counts, modules per box)."""
    arrows, sizes = Counter(), Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        sizes[box(source)] += 1
        for target in imports(path, source):
            if box(source) != box(target) and target != "picsort":
                arrows[box(source), box(target)] += 1
    return arrows, sizes


def floor(name: str) -> int | None:
    return next((number for number, names in enumerate(FLOORS) if name in names), None)


def dot_source(arrows: Counter, sizes: Counter) -> str:
    lines = ["digraph picsort {",
             '  graph [rankdir=TB, ranksep=0.45, nodesep=0.35, fontname="DejaVu Sans", bgcolor="white",',
             '         label="picsort\'s import graph: one box per sub-package (modules in it); '
             'an arrow A -> B: A imports B (how many imports)", labelloc=b, fontsize=11];',
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#4a6fa5", fontname="DejaVu Sans", '
             'fontsize=12];',
             '  edge [color="#555555", fontname="DejaVu Sans", fontsize=10, arrowsize=0.7];']
    for name in sorted(sizes):
        label = f"{'picsort (top level)' if name == 'picsort' else name} ({sizes[name]})\\n{ROLES.get(name, '')}"
        fill = ', fillcolor="#f4f4f4", color="#999999"' if floor(name) is None else ""
        lines.append(f'  "{name}" [label="{label}"{fill}];')
    for names in FLOORS:
        present = [name for name in names if name in sizes]
        if len(present) > 1:
            lines.append("  { rank=same; " + " ".join(f'"{name}";' for name in present) + " }")
    # Invisible arrows down the floors keep each floor in its own row, whatever the imports.
    tops = [next(name for name in names if name in sizes) for names in FLOORS if any(name in sizes for name in names)]
    lines += [f'  "{upper}" -> "{lower}" [style=invis, weight=10];' for upper, lower in zip(tops, tops[1:])]
    for (source, target), count in sorted(arrows.items()):
        upward = floor(source) is not None and floor(target) is not None and floor(target) <= floor(source)
        style = ', color="#c0392b", fontcolor="#c0392b", penwidth=2, constraint=false' if upward else ""
        lines.append(f'  "{source}" -> "{target}" [label="{count}"{style}];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT,
                        help="folder for import-graph.dot and .svg (default: %(default)s)")
    options = parser.parse_args(argv)
    arrows, sizes = edges()
    options.out.mkdir(parents=True, exist_ok=True)
    dot_file = options.out / "import-graph.dot"
    dot_file.write_text(dot_source(arrows, sizes))
    print(f"wrote {dot_file}: {len(sizes)} boxes, {len(arrows)} arrows, {sum(sizes.values())} modules")
    if shutil.which("dot") is None:
        print("Graphviz's dot is not installed (apt-get install graphviz): no SVG drawn", file=sys.stderr)
        return 1
    svg = options.out / "import-graph.svg"
    subprocess.run(["dot", "-Tsvg", str(dot_file), "-o", str(svg)], check=True)
    print(f"wrote {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
