"""Cleaning decisions that outlive one notebook session.

`ImageClassifierCleaner` forgets its marks when you switch category or restart the kernel. Gathered files are
named by content hash, so a decision ("delete 3f2a…", "move 9b1c… to grizzly") can be written down once and
applied again to a fresh download or copy of the same photos.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from picsort.photos.photo_folders import photos_by_class


def apply_cleaning(path: Path | str, decisions_file: Path | str) -> dict[str, int]:
    """Apply recorded decisions to `path/<class>/<hash>.<ext>`; returns counts of deleted, moved, not found."""
    decisions = json.loads(Path(decisions_file).read_text())
    done = {"deleted": 0, "moved": 0, "not found": 0}
    by_stem = {file.stem: file for files in photos_by_class(path).values() for file in files}
    for stem in decisions.get("delete", {}):
        file = by_stem.get(stem)
        if file is None:
            done["not found"] += 1
            continue
        file.unlink()
        done["deleted"] += 1
    for stem, label in decisions.get("move", {}).items():
        file = by_stem.get(stem)
        if file is None:
            done["not found"] += 1
            continue
        target = Path(path) / label / file.name
        target.parent.mkdir(exist_ok=True)
        os.replace(file, target)
        done["moved"] += 1
    return done
