"""The widgets' front-end code: a widget's own .js file with the shared ones it uses put before it.

anywidget loads each widget's `_esm` alone from a blob URL, where one file cannot import another, so code that
several widgets use (dom.js's `h`, acknowledged_messages.js) is written once and put before each widget's own here.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC", "static_text", "widget_script"]

STATIC = Path(__file__).parent / "static"  # the widgets' .js and .css files


def widget_script(*names: str) -> str:
    """The package's .js files `names` (file names in static/), one after another: the shared files
    first, the widget's own (the one with `export default`) last."""
    return "\n".join(static_text(name) for name in names)


def static_text(name: str) -> str:
    """The text of one front-end file (`static/<name>`)."""
    return (STATIC / name).read_text()
