"""The one place that knows where picsort's folders are, and which environment variables move them."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_VARIABLE", "EXAMPLES_DIR", "JUPYTER_SHARE_DIR", "LABELS_VARIABLE", "MODEL_DIR", "MODEL_VARIABLE",
           "REPOSITORY", "cache_dir", "labels_dir", "model_dir"]

# The checkout this package sits in: the shipped model and the default label store live beside it.
REPOSITORY = Path(__file__).resolve().parent.parent
# The shipped model.
MODEL_DIR = REPOSITORY / "model"
# Example photos the app offers to try (two per class of the shipped model, with their licence).
EXAMPLES_DIR = REPOSITORY / "examples"
# Jupyter data the app needs: the Voila template "picsort" (share/jupyter/voila/templates/picsort).
JUPYTER_SHARE_DIR = REPOSITORY / "share" / "jupyter"
MODEL_VARIABLE = "PICSORT_MODEL_DIR"
LABELS_VARIABLE = "PICSORT_LABELS_DIR"
CACHE_VARIABLE = "PICSORT_CACHE"


def model_dir(folder: Path | str | None = None) -> Path:
    """The model folder to use: the one given, else `$PICSORT_MODEL_DIR`, else the shipped `model/`."""
    return Path(folder or os.environ.get(MODEL_VARIABLE) or MODEL_DIR)


def labels_dir(folder: Path | str | None = None) -> Path:
    """Where labelled images go: the folder given, else `$PICSORT_LABELS_DIR`, else `labels/` in the repository."""
    return Path(folder or os.environ.get(LABELS_VARIABLE) or REPOSITORY / "labels")


def cache_dir(folder: Path | str | None = None) -> Path:
    """Converted weights, search results, unpacked label zips: the folder given, else `$PICSORT_CACHE`,
    else ~/.cache/picsort."""
    return Path(folder or os.environ.get(CACHE_VARIABLE) or Path.home() / ".cache" / "picsort")
