"""How picsort shows text a user handed us (file and class names) and sizes: in messages, on cards, in a terminal.
A name is data: shown without control, format or bidi characters (or with them escaped, for a terminal), bounded."""

from __future__ import annotations

import unicodedata

__all__ = ["escaped_text", "human_bytes", "shown_name"]


def human_bytes(count: int) -> str:
    """A byte count as people read it: '20 MB', '1.5 KB', '12 bytes'."""
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= size:
            return f"{round(count / size, 1):g} {unit}"
    return f"{count} bytes"


def shown_name(name: str, *, escaped: bool = False) -> str:
    """A user's file name made safe to show (messages, cards): no control, format or bidi characters (a bidi
    control would let "gpj.exe" display as "exe.jpg"; the others show as boxes), bounded length.

    `escaped`: for a terminal, where a file can be looked for again by what was printed, each such character is
    written as a backslash escape (`escaped_text`) instead of left out."""
    if escaped:
        text = escaped_text(str(name)).strip()
    else:
        text = "".join(ch for ch in str(name) if not unicodedata.category(ch).startswith("C")).strip()
    text = text or "unnamed file"
    return text if len(text) <= _MAX_SHOWN_NAME else text[: _MAX_SHOWN_NAME - 1] + "…"


def escaped_text(text: str) -> str:
    """`text` safe to print to a terminal: each control, format or bidi character as a backslash escape (`\\n`,
    `\\x1b`, `\\u202e`), and each byte that was not UTF-8 (surrogateescape, as os.fsdecode gives) as `\\xff`, so
    no escape sequence in a file name runs and nothing fails to print."""
    parts = []
    for ch in text:
        if "\udc80" <= ch <= "\udcff":
            parts.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif unicodedata.category(ch).startswith("C"):
            parts.append(ch.encode("unicode_escape", errors="backslashreplace").decode("ascii"))
        else:
            parts.append(ch)
    return "".join(parts)


_MAX_SHOWN_NAME = 120
