"""The docs site: built strictly (any warning fails it: a broken link, a column or variable nobody described), then
checked for what a reader would notice: a reference page that no longer matches the code, a page that loads
something from another site, a missing picture of the import graph."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from picsort.batch.results import results_header
from picsort.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
SUB_PACKAGES = sorted(path.name for path in (REPO / "src" / "picsort").iterdir() if (path / "__init__.py").is_file())


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `mkdocs build --strict` makes it, in a temporary folder (never site/ in the checkout)."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout}\n{result.stderr}"
    return out


def page_text(site: Path, page: str) -> str:
    """A page's main text as a reader sees it: tags dropped, entities decoded."""
    source = (site / page / "index.html").read_text()
    main = source[source.index('role="main"'):]
    return html.unescape(re.sub(r"<[^>]+>", " ", main))


def options_of(parser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings]


def test_the_cli_page_names_every_command_and_option_the_parser_has(site):
    text = page_text(site, "reference/cli")
    parser = build_parser()
    missing = [option for option in options_of(parser) if option not in text]
    commands = next(action for action in parser._actions if action.__class__.__name__ == "_SubParsersAction")
    for name, command in commands.choices.items():
        if f"picsort {name}" not in text:
            missing.append(f"picsort {name}")
        section = text[text.index(f"usage: picsort {name}"):]
        end = section.find("usage: picsort ", 1)  # the next command's section
        section = section if end < 0 else section[:end]
        missing += [f"picsort {name} {option}" for option in options_of(command)
                    if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", section)]
    assert not missing, f"docs/reference/cli.md does not show: {missing}"


def test_the_csv_page_lists_the_results_columns_in_order(site):
    classes = json.loads((REPO / "model" / "model.json").read_text())["classes"]
    source = (site / "reference" / "csv" / "index.html").read_text()
    shown = re.findall(r"<tr>\s*<td>\d+</td>\s*<td><code>([^<]+)</code></td>", source)
    assert shown == results_header(classes)


def test_no_page_loads_a_script_stylesheet_or_font_from_another_site(site):
    """The docs, like the app, work offline and tell no other site who reads them."""
    outside = re.compile(r"^\s*(https?:)?//", re.IGNORECASE)
    found = []
    for page in site.rglob("*.html"):
        for tag in re.findall(r"<(?:script|link|img|iframe|source)\b[^>]*>", page.read_text(), re.IGNORECASE):
            for address in re.findall(r"""\b(?:src|href)\s*=\s*["']([^"']*)["']""", tag, re.IGNORECASE):
                if outside.match(address):
                    found.append(f"{page.relative_to(site)}: {tag}")
    for sheet in site.rglob("*.css"):
        for address in re.findall(r"""(?:url\(|@import\s+)["']?([^"')\s;]+)""", sheet.read_text(errors="replace")):
            if outside.match(address):
                found.append(f"{sheet.relative_to(site)}: {address}")
    assert not found, "loaded from another site:\n" + "\n".join(found)


def test_the_import_graph_is_drawn_and_shown_in_the_design_notes(site):
    picture = site / "design" / "import-graph.svg"
    assert picture.is_file(), "docs/design/import-graph.svg is missing: run python docs/import_graph.py"
    drawn = picture.read_text()
    assert drawn.lstrip().startswith(("<?xml", "<svg", "<!--")) and "</svg>" in drawn
    undrawn = [name for name in SUB_PACKAGES if f">{name} (" not in drawn]
    assert not undrawn, f"the import graph has no box for {undrawn}: run python docs/import_graph.py again"
    layers = (site / "design" / "layers" / "index.html").read_text()
    assert re.search(r"""<img\b[^>]*\bsrc=["']\.\./import-graph\.svg["']""", layers), \
        "the design notes do not show the import graph"


def test_the_environment_page_names_every_variable_picsort_and_train_ipynb_read(site):
    text = page_text(site, "reference/environment")
    sources = [path.read_text() for path in (REPO / "src").rglob("*.py")] + [(REPO / "train.ipynb").read_text()]
    named = {name for source in sources for name in re.findall(r"\bPICSORT_[A-Z_]+\b", source)}
    missing = sorted(name for name in named if name not in text)
    assert not missing, f"docs/reference/environment.md does not name {missing}"
