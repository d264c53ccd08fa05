"""README's promises that are facts about the repository: checked here so a fork learns when they go stale."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlparse

import tomllib

REPO = Path(__file__).resolve().parents[2]
# What the badge opens: the app served by Voila inside Binder's Jupyter server (binder/postBuild).
APP_PATH = "voila/render/app.ipynb"


def binder_link(repository_url: str) -> str:
    """The Binder address that opens the app of the GitHub repository at `repository_url`, newest commit."""
    address = urlparse(repository_url)
    owner_and_name = address.path.strip("/").removesuffix(".git")
    assert address.netloc == "github.com" and owner_and_name.count("/") == 1, (
        f"pyproject.toml's Repository ({repository_url}) is not https://github.com/<owner>/<repo>: "
        "the badge's address cannot be made from it")
    return f"https://mybinder.org/v2/gh/{owner_and_name}/HEAD?urlpath={APP_PATH}"


def test_binder_link_is_made_from_a_github_address():
    assert binder_link("https://github.com/someone/picsort-fork.git") == \
        "https://mybinder.org/v2/gh/someone/picsort-fork/HEAD?urlpath=voila/render/app.ipynb"


def test_the_binder_badge_opens_the_repository_pyproject_names():
    """A fork changes pyproject.toml's Repository; this says what the badge must then be."""
    repository = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    expected = binder_link(repository)
    links = re.findall(r"\((https://mybinder\.org/v2/[^)\s]*)\)", (REPO / "README.md").read_text())
    assert links, "README.md has no Binder badge"
    for link in links:
        assert link == expected, (f"README.md's Binder badge opens {link}, but pyproject.toml's Repository is "
                                  f"{repository}: make the badge's link {expected}")


def test_readme_stays_short_and_its_links_lead_somewhere():
    """README is the front door (<= 150 lines); the user guide and design notes live in docs/, and every link
    README makes to a file of the repository must find it there."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150, "README.md is over 150 lines: move the detail into a docs/ page"
    for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", readme):
        if not urlparse(target).scheme:
            assert (REPO / target).exists(), f"README.md links to {target}, which is not in the repository"


def test_the_quick_start_puts_the_cpu_wheels_tip_before_the_commands():
    """Someone on workshop Wi-Fi reads the tip before running step 1, and the test command is the one .ci/run runs."""
    readme = (REPO / "README.md").read_text()
    tip = readme.index("--index-url https://download.pytorch.org/whl/cpu")
    step_1 = readme.index("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt -e . && "
                          ".venv/bin/picsort app")
    step_2 = readme.index(".venv/bin/pip install -r requirements-dev.txt && .venv/bin/ruff check .")
    assert tip < step_1 < step_2


def test_the_readme_test_command_runs_what_ci_runs():
    """.ci/run installs and then runs README's checks one by one: the two lists must stay the same."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if "pip install -r requirements-dev.txt" in line)
    readme_checks = line.split(" && ")
    readme_checks = readme_checks[readme_checks.index(".venv/bin/pip install -r requirements-dev.txt") + 1:]
    ci_checks = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()
                 if line.startswith(".venv/bin/") and "pip install" not in line]
    assert readme_checks == ci_checks
    assert '.venv/bin/python -m pytest -ra -m "not slow"' in ci_checks and ".venv/bin/lint-imports" in ci_checks
