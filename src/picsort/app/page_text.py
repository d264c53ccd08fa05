"""What the page says, and how it says it safely: the title and intro from the model card, the limits the upload
zone states, the note that labels are shared, and the small HTML helpers every part of the page writes with.

Names come from users and class names from model cards: everything shown goes through :func:`escape`.
"""

from __future__ import annotations

import datetime
import html
from typing import Any

import ipywidgets as widgets

from picsort.foundation.shown_text import human_bytes
from picsort.foundation.vocabulary import keys_help
from picsort.photos.images import ACCEPTED_FORMATS_TEXT, MAX_UPLOAD_BYTES

__all__ = ["SHARED_TEXT", "escape", "html_widget", "intro_text", "limits_text", "listed"]

SHARED_TEXT = ("Labels are shared: everyone using this app on this server saves into the same labels, so the "
               "counts include theirs, and when two people label one photo differently the latest label counts. "
               "Your cards say so when you next label, undo or add photos.")


def escape(text: Any) -> str:
    """Text made safe for an HTML widget: file names come from users and must never become markup."""
    return html.escape(str(text), quote=True)


def html_widget(text: str, css_class: str) -> widgets.HTML:
    """An HTML widget with a stable CSS class (the browser test and the stylesheet use these)."""
    widget = widgets.HTML(text)
    widget.add_class(css_class)
    return widget


def listed(names: list[str], joiner: str = "or") -> str:
    """'a', 'a or b', 'a, b or c' in bold."""
    bold = [f"<b>{escape(name)}</b>" for name in names]
    return bold[0] if len(bold) == 1 else ", ".join(bold[:-1]) + f" {joiner} " + bold[-1]


def limits_text() -> str:
    """The limits the page states: the decoder's own (picsort.photos.images)."""
    return (f"{ACCEPTED_FORMATS_TEXT}; up to {human_bytes(MAX_UPLOAD_BYTES)} each; as many photos as you "
            f"like at once.")


def intro_text(classes: list[str], card: dict) -> str:
    """Title and intro from the model card: what it tells apart, how it was made, and its limit."""
    facts = []
    trained = card.get("trained")
    if trained:
        try:
            facts.append(f"trained on {datetime.datetime.fromisoformat(trained):%-d %B %Y}")
        except ValueError:
            facts.append(f"trained {escape(trained)}")
    photos = sum((card.get("images_per_class") or {}).values())
    if photos:
        facts.append(f"from {photos} photos")
    validation = card.get("validation") or {}
    if "error_rate" in validation:
        checked = f" of {validation['images']}" if validation.get("images") else ""
        facts.append(f"wrong on {validation['error_rate'] * 100:.1f}%{checked} validation photos")
    about = f"<p>The model: {', '.join(facts)}.</p>" if facts else ""
    return (
        f'<h1 class="picsort-title">Is it {listed(classes)}?</h1>'
        f"<p>Drop photos and the model says which of {listed(classes, 'and')} each one shows, how sure it "
        f"is, and (<i>Why?</i>) what it looked at.</p>{about}"
        f"<p>It knows only these {len(classes)} classes; when a photo looks like none of them, its card says "
        f"so.</p><p>Label photos with the buttons on each card to collect training data (keys on the card "
        f"in focus: {keys_help(classes)}).</p>"
        f'<p class="picsort-shared">{SHARED_TEXT}</p>')
