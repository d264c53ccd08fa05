"""Tests for picsort.bulk: finding files, decoding ahead in batches, and sort_files (the CLI's library call)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PIL import Image

from picsort.bulk import UNSURE_FOLDER, classify_batches, classify_files, find_images, sort_files
from picsort.classify import load_model
from picsort.images import UnusableImageError
from picsort.results import ResultsFileError, escape_cell, path_from_cell, results_header

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """The examples' photos, bad files named .jpg, and a .txt a scan must leave out."""
    root = tmp_path_factory.mktemp("mixed")
    for number, photo in enumerate(sorted(EXAMPLES.glob("*.jpg"))[:3]):
        (root / f"{'abc'[number]}.jpg").write_bytes(photo.read_bytes())
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not a picture, just words\n")
    return root


def test_streaming_reads_paths_lazily_and_keeps_order(mixed):
    """classify_batches pulls paths a couple of batches ahead, never the whole list."""
    model = load_model()
    pulled = []

    def paths():
        for number in range(1000):
            pulled.append(number)
            yield str(mixed / "a.jpg") if number % 2 else str(mixed / "empty.jpg")

    batches = classify_batches(paths(), model, batch_size=4)
    first = next(batches)
    assert len([r for _, r in first if not isinstance(r, UnusableImageError)]) == 4
    assert len(pulled) <= 3 * 4 + 8  # two batches ahead (plus bad files riding along), not 1000
    batches.close()
    results = list(classify_files([mixed / "empty.jpg", mixed / "a.jpg", mixed / "text.jpg"], model, batch_size=2))
    assert [Path(p).name for p, _ in results] == ["empty.jpg", "a.jpg", "text.jpg"]
    # Only bad files: they still come out in bounded batches (so the CLI saves their rows as it goes).
    assert [len(b) for b in classify_batches([mixed / "text.jpg"] * 10, model, batch_size=2)] == [4, 4, 2]


# ---- resuming --------------------------------------------------------------------------------------------------
