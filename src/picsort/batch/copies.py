"""Where `--copy-to` puts a classified file, and the copy itself (never over a different file, never half)."""

from __future__ import annotations

import filecmp
import itertools
import os
from pathlib import Path

from picsort.foundation import vocabulary
from picsort.foundation.files import copy_atomically
from picsort.foundation.vocabulary import UNSURE_FOLDER
from picsort.inference.classify import Prediction

__all__ = ["UNSURE_FOLDER", "answer_folder", "copy_into"]


def answer_folder(result: Prediction, unsure_folder: str = UNSURE_FOLDER) -> str:
    """The folder of `copy_to` a classified file is copied into: its class, `unsure_folder` or `none`
    (picsort.foundation.vocabulary.answer_folder)."""
    return vocabulary.answer_folder(result.label, none_of_these=result.none_of_these, unsure=result.unsure,
                                    unsure_in=unsure_folder)


def copy_into(source: str, folder: Path) -> Path:
    """Copy `source` into `folder` without overwriting a different file; returns where the copy is.

    A file of the same name and the same bytes counts as already copied (a resumed run); a different
    one keeps its name and the copy gets a `-1`, `-2`... suffix.
    """
    folder.mkdir(parents=True, exist_ok=True)
    name = os.path.basename(source)
    stem, suffix = os.path.splitext(name)
    for number in itertools.count():
        target = folder / (name if number == 0 else f"{stem}-{number}{suffix}")
        if not target.exists():
            # Copied under a hidden temporary name, flushed to disk and linked into place: a run killed or a disk
            # full mid-copy never leaves a half file that looks real, and a file another worker gave this name
            # since the check above is kept (FileExistsError: look at it as any file found there).
            try:
                return copy_atomically(source, target, overwrite=False)
            except FileExistsError:
                pass
        if target.is_file() and filecmp.cmp(source, target, shallow=False):
            return target
    raise AssertionError("unreachable")
