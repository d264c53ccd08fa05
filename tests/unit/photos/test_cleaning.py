"""Cleaning decisions recorded once (by content hash) are applied again to a fresh copy of the photos."""

from __future__ import annotations

import json

from picsort.photos.cleaning import apply_cleaning
from picsort.photos.sources import gather_from_folder
from tests.conftest import make_synthetic_photos


def test_recorded_cleaning_deletes_and_moves_by_hash(tmp_path):
    source = make_synthetic_photos(tmp_path / "source", per_class=3)
    data = tmp_path / "data"
    gather_from_folder(source, data)
    black = sorted((data / "black").iterdir())
    decisions = tmp_path / "cleaning.json"
    decisions.write_text(json.dumps({"delete": {black[0].stem: "not a bear"},
                                     "move": {black[1].stem: "grizzly"}, }))
    assert apply_cleaning(data, decisions) == {"deleted": 1, "moved": 1, "not found": 0}
    assert not black[0].exists() and (data / "grizzly" / black[1].name).exists()
    assert apply_cleaning(data, decisions) == {"deleted": 0, "moved": 1, "not found": 1}  # same end state
