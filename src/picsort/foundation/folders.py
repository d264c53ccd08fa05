"""Where picsort's folders are (the model to serve, examples, labels, Teach mode's models, caches, training data)
in a clone or an installed copy, and the environment variables that move them."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from pathlib import Path
from typing import Mapping

__all__ = ["APP_DIR", "CACHE_VARIABLE", "DATA_HOME", "DATA_VARIABLE", "EXAMPLES_DIR", "JUPYTER_SHARE_DIR",
           "LABELS_VARIABLE", "MODEL_DIR", "MODEL_VARIABLE", "REPOSITORY", "TEACH_VARIABLE", "cache_dir",
           "describe_source", "is_visitor_id", "labels_dir", "model_dir", "teach_dir", "teach_features_dir",
           "training_data_dir", "visitor_teach_dir"]

_CLONE = Path(__file__).resolve().parents[3]  # src/picsort/foundation/folders.py -> the clone, when it is one
# The clone this package runs from (`pip install -e .`, or PYTHONPATH=src), else None (a regular install).
REPOSITORY: Path | None = _CLONE if (_CLONE / "pyproject.toml").is_file() and (_CLONE / "model").is_dir() else None
# Where the shipped files are: the clone's own, else where a regular install put them (pyproject's data-files).
_SHIPPED = REPOSITORY or Path(sys.prefix) / "share" / "picsort"
# What picsort writes by default (labels/, taught/, data/): in the clone, else in $XDG_DATA_HOME/picsort.
DATA_HOME = REPOSITORY or Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "picsort"
# The shipped model.
MODEL_DIR = _SHIPPED / "model"
# Example photos the app offers to try (two per class of the shipped model, with their licence).
EXAMPLES_DIR = _SHIPPED / "examples"
# The folder `picsort app` serves: app.ipynb and voila.json.
APP_DIR = _SHIPPED
# Jupyter data the app needs: the Voila template "picsort" (share/jupyter/voila/templates/picsort).
JUPYTER_SHARE_DIR = (REPOSITORY or Path(sys.prefix)) / "share" / "jupyter"
MODEL_VARIABLE = "PICSORT_MODEL_DIR"
LABELS_VARIABLE = "PICSORT_LABELS_DIR"
TEACH_VARIABLE = "PICSORT_TEACH_DIR"
CACHE_VARIABLE = "PICSORT_CACHE"
DATA_VARIABLE = "PICSORT_DATA"
# A visitor id, as a page makes it (picsort.app.session_widget): 128 random bits in lowercase hex. Nothing else may
# name a visitor's folder, so no id a client sends can lead out of `visitors/` or into another's.
_VISITOR_ID = re.compile(r"[0-9a-f]{32}")


def model_dir(folder: Path | str | None = None) -> Path:
    """The model folder to use: the one given, else `$PICSORT_MODEL_DIR`, else the shipped `model/`."""
    return Path(folder or os.environ.get(MODEL_VARIABLE) or MODEL_DIR)


def labels_dir(folder: Path | str | None = None) -> Path:
    """Where labelled images go: the folder given, else `$PICSORT_LABELS_DIR`, else `labels/` in `DATA_HOME`."""
    return Path(folder or os.environ.get(LABELS_VARIABLE) or DATA_HOME / "labels")


def teach_dir(folder: Path | str | None = None, *, labels: Path | str | None = None) -> Path:
    """Where the app's Teach mode keeps the photos it is taught (a label store of their own: a new kernel finds
    them again, and they download as a labels zip): the folder given, else `$PICSORT_TEACH_DIR`, else `taught/`
    beside the labels folder (`labels_dir(labels)`), so moving a server's labels moves both."""
    return Path(folder or os.environ.get(TEACH_VARIABLE) or labels_dir(labels).parent / "taught")


def is_visitor_id(value: object) -> bool:
    """True for a visitor id: exactly 32 lowercase hex digits."""
    return isinstance(value, str) and _VISITOR_ID.fullmatch(value) is not None


def visitor_teach_dir(visitor: str, folder: Path | str | None = None, *, labels: Path | str | None = None) -> Path:
    """One visitor's Teach folder: `visitors/<visitor id>` in `teach_dir(folder, labels=labels)`, so each browser
    finds its own photos again and nobody else's. ValueError for anything but a visitor id (`is_visitor_id`)."""
    if not is_visitor_id(visitor):
        raise ValueError("not a visitor id")
    return teach_dir(folder, labels=labels) / "visitors" / visitor


def teach_features_dir(store_root: Path | str) -> Path:
    """Where Teach mode keeps each photo's features and thumbnail beside a visitor's photos (a hidden folder, so
    the label store and the labels zip never take it for a class), so Teach reopens without decoding them."""
    return Path(store_root) / ".features"


def cache_dir(folder: Path | str | None = None) -> Path:
    """Converted weights, search results, unpacked label zips: the folder given, else `$PICSORT_CACHE`,
    else ~/.cache/picsort."""
    return Path(folder or os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "picsort")


def training_data_dir(source: Path | str, categories: Mapping[str, str], images_per_class: int | None = None) -> Path:
    """Where train.ipynb gathers the photos of one run: `<source>-<categories>-<hash>` in `$PICSORT_DATA`, else in
    `data/` in `DATA_HOME` (the clone).

    A folder of its own for each source, set of categories (with their search terms) and sample size, so a run
    trains on exactly what it names: photos gathered for other categories or from another source are never
    mixed in, and running the same settings again reuses (and resumes) what was gathered.
    """
    key = json.dumps({"source": _source_key(source), "categories": dict(categories),
                      "images_per_class": images_per_class}, sort_keys=True)
    readable = "-".join([Path(str(source)).stem if str(source) != "search" else "search", *sorted(categories)])
    readable = re.sub(r"[^\w.-]+", "_", readable)[:80]
    root = Path(os.environ.get(DATA_VARIABLE) or DATA_HOME / "data")
    return root / f"{readable}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def describe_source(source: Path | str) -> str:
    """The source as a model card records it: "search", a path relative to the repository when it is inside
    it, a relative path as given, and of a path elsewhere only its name (nothing of the machine it ran on)."""
    if str(source) == "search":
        return "search"
    path = Path(source)
    try:
        return path.resolve().relative_to(REPOSITORY or DATA_HOME).as_posix()
    except ValueError:
        return path.as_posix() if not path.is_absolute() else path.name


def _source_key(source: Path | str) -> str:
    return "search" if str(source) == "search" else str(Path(source).resolve())
