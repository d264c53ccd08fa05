"""The widgets' front-end code (picsort.app.widget_scripts): each widget's script, shared files included, loads."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from picsort.app.camera_widget import Camera
from picsort.app.cards import ProblemCard, ResultCard
from picsort.app.upload_widget import UploadZone
from picsort.app.widget_scripts import widget_script


@pytest.mark.skipif(shutil.which("node") is None, reason="node checks the scripts' syntax")
@pytest.mark.parametrize("widget", [ResultCard, ProblemCard, UploadZone, Camera], ids=lambda w: w.__name__)
def test_each_widget_script_is_one_module_the_browser_can_load(widget, tmp_path):
    # A shared function written again in a widget's own file is a module's "already declared" error: no widget.
    script = tmp_path / "widget.mjs"
    script.write_text(widget._esm)
    result = subprocess.run(["node", "--check", str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert widget._esm.count("function h(") == 1 and widget._esm.count("export default") == 1


def test_a_script_that_is_not_in_the_package_is_named():
    with pytest.raises(FileNotFoundError, match="no_such_widget.js"):
        widget_script("dom.js", "no_such_widget.js")
