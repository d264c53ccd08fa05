"""MkDocs hooks: the reference pages are generated from the code at build time, so they cannot drift from it.

A page asks for a generated part with a marker on a line of its own:

- `<!-- picsort:cli -->`: every `picsort` sub-command's usage and options, from `picsort.cli.build_parser()`.
- `<!-- picsort:csv-columns -->`: the results CSV's columns in order, from `picsort.batch.columns.results_header`
  (for the shipped model's classes), each described by `picsort.batch.columns.COLUMNS`.
- `<!-- picsort:environment -->`: the environment variables picsort, train.ipynb, the tests and the rehearsals read,
  found in their code, with the file that reads each.
- `<!-- picsort:layout -->`: every module of each sub-package, with its docstring's first paragraph.

The benchmark results (`benchmarks/README.md`, `benchmarks/results/*.md`) become pages under `benchmarks/` as
they are, so the site shows the same files the benchmarks write.

Anything that cannot be generated (an unknown marker, a column or variable nobody described) is a warning, and
`mkdocs build --strict` turns warnings into a failed build.
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import logging
import os
import re
import sys
from pathlib import Path

from mkdocs.structure.files import File

REPO = Path(__file__).resolve().parents[1]
# The docs describe this checkout's code, whatever picsort is installed in the environment.
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

log = logging.getLogger("mkdocs.plugins.picsort")
MARKER = re.compile(r"^<!-- picsort:([a-z-]+) -->$", re.MULTILINE)


# ---------------------------------------------------------------------------------------------------- helpers

def text(value: str) -> str:
    """Plain text safe inside Markdown: no HTML, no emphasis, no links."""
    return re.sub(r"([\\`*_\[\]])", r"\\\1", html.escape(str(value), quote=False))


def cell(value: str) -> str:
    """Plain text for a table cell (one line, no column breaks)."""
    return text(" ".join(str(value).split())).replace("|", "&#124;")


def code(value: str) -> str:
    """Inline code, whatever backticks it holds."""
    value = str(value)
    fence = "``" if "`" in value else "`"
    return f"{fence}{value}{fence}" if fence == "`" else f"`` {value} ``"


def block(value: str) -> str:
    """A fenced block of preformatted text."""
    return f"```text\n{value.rstrip()}\n```"


# ---------------------------------------------------------------------------------------------------- the CLI

def _help(action: argparse.Action, prog: str) -> str:
    """An action's help as argparse prints it (`%(default)s` filled in, `%%` as %)."""
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    params = {name: value for name, value in vars(action).items() if value is not argparse.SUPPRESS}
    params["prog"] = prog
    for name, value in list(params.items()):
        if hasattr(value, "__name__"):
            params[name] = value.__name__
    return action.help % params


def _argument_name(action: argparse.Action) -> str:
    if action.option_strings:
        names = ", ".join(action.option_strings)
        takes_value = action.nargs != 0
        metavar = action.metavar or action.dest.upper()
        return f"{names} {metavar}" if takes_value else names
    return action.metavar or action.dest


def _arguments_table(parser: argparse.ArgumentParser) -> str:
    rows = ["| argument | what it does |", "|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            continue
        required = " (required)" if action.required and action.option_strings else ""
        rows.append(f"| {code(_argument_name(action))} | {cell(_help(action, parser.prog))}{required} |")
    return "\n".join(rows)


def cli_reference() -> str:
    from picsort.cli import build_parser

    # argparse wraps usage lines to the terminal's width: the same width on every machine that builds the site.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        return _cli_reference(build_parser())
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _cli_reference(parser: argparse.ArgumentParser) -> str:
    parts = [f"## `{parser.prog}`", "", cell(parser.description or ""), "", block(parser.format_usage()), "",
             _arguments_table(parser), ""]
    commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    summaries = {choice.dest: choice.help for action in commands for choice in action._choices_actions}
    for action in commands:
        for name, sub in action.choices.items():
            parts += [f"## `{parser.prog} {name}`", "", cell(summaries.get(name, "")), "", block(sub.format_usage()),
                      "", text(sub.description or "").strip(), "", _arguments_table(sub), ""]
            if sub.epilog:
                parts += [block(sub.epilog), ""]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------- the CSV

def csv_reference() -> str:
    from picsort.batch import columns

    classes = json.loads((REPO / "model" / "model.json").read_text())["classes"]
    described = columns.COLUMNS  # the one description of the columns, which `picsort classify --help` prints too
    rows = ["| # | column | what it holds |", "|---|---|---|"]
    for number, column in enumerate(columns.results_header(classes), 1):
        generic = "p_<class>" if column in {f"p_{name}" for name in classes} else column
        description = described.get(column) or described.get(generic)
        if description is None:
            log.warning("the results CSV's column %r is not in picsort.batch.columns.COLUMNS", column)
            description = ""
        rows.append(f"| {number} | {code(column)} | {cell(description)} |")
    generic_header = ", ".join(columns.results_header(["<class>"]))
    return (f"For the shipped model (classes {', '.join(code(name) for name in classes)}), in this order; another "
            f"model has one `p_` column per class of its own: {code(generic_header)}.\n\n" + "\n".join(rows))


# ---------------------------------------------------------------------------------------------------- environment

# Variables read by code outside picsort's folders module: what each does, from the code that reads it. A variable
# found in the code and missing here (or listed here and no longer read) warns, so this list follows the code.
OTHER_VARIABLES = {
    "HF_HUB_OFFLINE": "Set to 1 when picsort is imported, unless already set: the pretrained weights are local files, "
                      "and without it timm asks the Hugging Face hub first (a minute of retries when offline).",
    "OMP_WAIT_POLICY": "Set to PASSIVE when serving (the app's kernel, the CLI, the API), unless already set: idle "
                       "OpenMP threads sleep instead of spinning, leaving the cores to decoding threads and other "
                       "kernels.",
    "XDG_DATA_HOME": "Where a regular (not editable) install writes by default: `$XDG_DATA_HOME/picsort` "
                     "(labels/, taught/, data/); in a clone, the clone itself.",
    "JUPYTER_PATH": "`picsort app` puts the repository's (or the install's) `share/jupyter` first on it, for the "
                    "offline page template; your own entries are kept after it.",
    "PICSORT_CATEGORIES": "train.ipynb: the categories, e.g. `church, gas_pump=gas pump` (folder names, each with its "
                          "search term), instead of editing the first cell.",
    "PICSORT_SOURCE": "train.ipynb: `search` (DuckDuckGo, the default), a folder with one sub-folder of photos per "
                      "category, or a labels zip from the app.",
    "PICSORT_OUTPUT": "train.ipynb: the model folder to write (default: a new dated folder under `models/`).",
    "PICSORT_SMOKE": "train.ipynb: `1` runs every step fast on a few small images and writes to a throw-away folder "
                     "(what the tests do).",
    "PICSORT_TEST_PHOTOS": "Tests: the class-folder set of real photos the tests that need more than `examples/` use "
                           "(default `../shared/datasets/bears`; without it they skip, and fail in CI).",
    "CI": "Tests: `true` turns a skip for missing photos into a failure (`.ci/run` sets it).",
    "PICSORT_SCREENSHOT": "Tests: where `tests/end_to_end/test_browser.py -k whole_loop` saves its screenshot "
                          "(e.g. `docs/app-screenshot.png`); otherwise it stays in the test's temporary folder.",
    "PICSORT_BINDER_CACHE": "Tests: where the Binder-pod rehearsal caches its Python environment (default "
                            "`/var/cache/picsort-binder-pod`, about 6 GB).",
}
# Read by Jupyter's mybinder configuration copied into the Binder-pod rehearsal, not by picsort.
_NOT_OURS = ("rehearsal/mybinder_etc_jupyter/",)
# In tests/ and rehearsal/, only these are settings a person gives; the rest is the tests' own plumbing.
_TESTING_PREFIXES = ("PICSORT_", "CI")
_READ = re.compile(r"""(?:environ\.get|environ\.setdefault|getenv)\(\s*["']([A-Z][A-Z0-9_]+)["']"""
                   r"""|environ\[\s*["']([A-Z][A-Z0-9_]+)["']\s*\]""")


def _string_constants(tree: ast.AST) -> dict[str, str]:
    """Module-level NAME = "TEXT" assignments (a variable's name kept in a constant)."""
    constants = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _python_reads(path: Path) -> dict[str, list[str]]:
    """{variable: [docstrings of the functions that read it]} for one Python file."""
    source = path.read_text()
    tree = ast.parse(source)
    constants = _string_constants(tree)
    found: dict[str, list[str]] = {}
    for match in _READ.finditer(source):
        found.setdefault(match.group(1) or match.group(2), [])
    # environ.get(SOME_VARIABLE): a name whose value is a variable's name.
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.Module)):
            continue
        for call in ast.walk(node):
            if not (isinstance(call, ast.Call) and call.args and isinstance(call.args[0], ast.Name)):
                continue
            called = ast.unparse(call.func)
            if called.endswith(("environ.get", "environ.setdefault", "getenv")) and call.args[0].id in constants:
                docs = found.setdefault(constants[call.args[0].id], [])
                if isinstance(node, ast.FunctionDef) and ast.get_docstring(node):
                    docs.append(ast.get_docstring(node))
    return found


def environment_variables() -> dict[str, dict]:
    """{name: {"files": [...], "docs": [...]}} for every variable read in src/, rehearsal/, tests/ and train.ipynb."""
    found: dict[str, dict] = {}
    paths = sorted(path for folder in ("src", "rehearsal", "tests") for path in (REPO / folder).rglob("*.py"))
    for path in paths:
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith(_NOT_OURS):
            continue
        for name, docs in _python_reads(path).items():
            if relative.startswith(("tests/", "rehearsal/")) and not name.startswith(_TESTING_PREFIXES):
                continue  # a test setting up or reading the machine's own variables (PATH, PYTHONPATH...)
            entry = found.setdefault(name, {"files": [], "docs": []})
            entry["files"].append(relative)
            entry["docs"] += docs
    notebook = json.loads((REPO / "train.ipynb").read_text())
    for cell_ in notebook["cells"]:
        if cell_["cell_type"] == "code":
            for match in _READ.finditer("".join(cell_["source"])):
                entry = found.setdefault(match.group(1) or match.group(2), {"files": [], "docs": []})
                if "train.ipynb" not in entry["files"]:
                    entry["files"].append("train.ipynb")
    # Test files that keep a variable's name in a constant (SCREENSHOT_VARIABLE = "PICSORT_SCREENSHOT") and read it
    # through a helper.
    for path in sorted((REPO / "tests").rglob("*.py")):
        for constant, value in _string_constants(ast.parse(path.read_text())).items():
            if constant.endswith("_VARIABLE") and re.fullmatch(r"[A-Z][A-Z0-9_]+", value):
                entry = found.setdefault(value, {"files": [], "docs": []})
                relative = path.relative_to(REPO).as_posix()
                if relative not in entry["files"]:
                    entry["files"].append(relative)
    return found


def _first_sentence(docstring: str) -> str:
    """A docstring's first paragraph, on one line (docstrings are written in Markdown: they are shown as such)."""
    return " ".join(docstring.split("\n\n")[0].split())


def environment_reference() -> str:
    found = environment_variables()
    for name in sorted(set(OTHER_VARIABLES) - set(found)):
        log.warning("docs/hooks.py describes the environment variable %s, which no code reads any more", name)
    package, others = [], []
    for name in sorted(found, key=lambda name: (not name.startswith("PICSORT_"), name)):
        entry = found[name]
        description = OTHER_VARIABLES.get(name) or "; ".join(_first_sentence(doc) for doc in entry["docs"])
        if not description:
            log.warning("the environment variable %s (read in %s) is not described: add it to OTHER_VARIABLES in "
                        "docs/hooks.py or give the function that reads it a docstring", name, ", ".join(entry["files"]))
        files = ", ".join(code(file) for file in entry["files"])
        row = f"| {code(name)} | {' '.join(description.split())} | {files} |"
        testing = all(file.startswith(("tests/", "rehearsal/")) for file in entry["files"])
        (others if testing else package).append(row)
    head = ["| variable | what it does | read in |", "|---|---|---|"]
    return ("### picsort and train.ipynb\n\n" + "\n".join(head + package)
            + "\n\n### Tests and rehearsals\n\n" + "\n".join(head + others))


# ---------------------------------------------------------------------------------------------------- layout

def layout_reference() -> str:
    """Each sub-package's modules with the first sentence of their docstrings, read with ast (nothing imported)."""
    package = REPO / "src" / "picsort"
    sections = []
    groups = [("picsort (top level)", sorted(package.glob("*.py")))]
    groups += [(f"picsort.{folder.name}", sorted(folder.glob("*.py")))
               for folder in sorted(path for path in package.iterdir() if (path / "__init__.py").is_file())]
    for title, paths in groups:
        rows = ["| module | what it is |", "|---|---|"]
        for path in paths:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            first = " ".join(docstring.split("\n\n")[0].split())
            if not first:
                log.warning("%s has no docstring to describe it in the design notes", path.relative_to(REPO))
            rows.append(f"| {code(path.relative_to(REPO).as_posix())} | {first} |")
        sections.append(f"### `{title}`\n\n" + "\n".join(rows))
    return "\n\n".join(sections)


GENERATORS = {"cli": cli_reference, "csv-columns": csv_reference, "environment": environment_reference,
              "layout": layout_reference}


# ---------------------------------------------------------------------------------------------------- hooks

BENCHMARKS = REPO / "benchmarks"


def on_files(files, config):
    """benchmarks/README.md and benchmarks/results/*.md as pages of the site (benchmarks/all.md, results/)."""
    generated = {"benchmarks/all.md": BENCHMARKS / "README.md"}
    for result in sorted((BENCHMARKS / "results").glob("*.md")):
        generated[f"benchmarks/results/{result.name}"] = result
    for uri, source in generated.items():
        files.append(File.generated(config, uri, content=source.read_text()))
    return files


def on_page_markdown(markdown, page, config, files):
    def replace(match: re.Match) -> str:
        generator = GENERATORS.get(match.group(1))
        if generator is None:
            log.warning("%s: unknown marker %r (known: %s)", page.file.src_uri, match.group(0), ", ".join(GENERATORS))
            return match.group(0)
        return generator()

    return MARKER.sub(replace, markdown)
