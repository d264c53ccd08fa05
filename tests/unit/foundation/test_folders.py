"""folders.py: where picsort's folders are, and the environment variables that move them."""

from __future__ import annotations

from pathlib import Path

import pytest

from picsort.foundation import folders


@pytest.fixture(autouse=True)
def no_folder_variables(monkeypatch):
    for name in (folders.MODEL_VARIABLE, folders.LABELS_VARIABLE, folders.TEACH_VARIABLE, folders.CACHE_VARIABLE,
                 folders.DATA_VARIABLE):
        monkeypatch.delenv(name, raising=False)


def test_a_folder_given_wins_over_its_variable_which_wins_over_the_default(tmp_path, monkeypatch):
    assert folders.model_dir() == folders.MODEL_DIR
    monkeypatch.setenv(folders.MODEL_VARIABLE, str(tmp_path / "from-variable"))
    assert folders.model_dir() == tmp_path / "from-variable"
    assert folders.model_dir(tmp_path / "given") == tmp_path / "given"
    monkeypatch.setenv(folders.CACHE_VARIABLE, str(tmp_path / "cache"))
    assert folders.cache_dir() == tmp_path / "cache"


def test_taught_photos_sit_beside_the_labels_unless_told_otherwise(tmp_path, monkeypatch):
    monkeypatch.setenv(folders.LABELS_VARIABLE, str(tmp_path / "server" / "labels"))
    assert folders.labels_dir() == tmp_path / "server" / "labels"
    assert folders.teach_dir() == tmp_path / "server" / "taught"  # moving the labels moves both
    assert folders.teach_dir(labels=tmp_path / "elsewhere" / "labels") == tmp_path / "elsewhere" / "taught"
    monkeypatch.setenv(folders.TEACH_VARIABLE, str(tmp_path / "teach"))
    assert folders.teach_dir() == tmp_path / "teach"


def test_each_source_and_set_of_categories_gathers_into_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv(folders.DATA_VARIABLE, str(tmp_path))
    bears = {"grizzly": "grizzly bear", "black": "black bear"}
    run = folders.training_data_dir("search", bears, 150)
    assert run.parent == tmp_path and run.name.startswith("search-black-grizzly-")
    assert folders.training_data_dir("search", dict(reversed(bears.items())), 150) == run  # same run: reused
    others = [folders.training_data_dir("search", {**bears, "teddy": "teddy bear"}, 150),
              folders.training_data_dir("search", {**bears, "black": "american black bear"}, 150),
              folders.training_data_dir("search", bears, 50),
              folders.training_data_dir(tmp_path / "bears", bears, 150)]
    assert len({run, *others}) == 5
    assert others[-1].name.startswith("bears-black-grizzly-")


def test_a_card_records_the_source_without_the_machine_s_paths(tmp_path):
    assert folders.describe_source("search") == "search"
    assert folders.describe_source(tmp_path / "my photos") == "my photos"  # elsewhere: its name only
    assert folders.describe_source(Path("some/relative")) == "some/relative"
    home = folders.REPOSITORY or folders.DATA_HOME
    assert folders.describe_source(home / "data" / "bears") == "data/bears"


@pytest.mark.parametrize("forged", ["../" * 3 + "etc", "A" * 32, "0" * 31, "0" * 33, "0" * 31 + "/", "", None, 7,
                                    "0" * 32 + "\n", "０" * 32], ids=repr)
def test_only_a_visitor_id_names_a_visitors_teach_folder(tmp_path, forged):
    visitor = "0123456789abcdef" * 2
    assert folders.visitor_teach_dir(visitor, tmp_path) == tmp_path / "visitors" / visitor
    assert folders.is_visitor_id(visitor) and not folders.is_visitor_id(forged)
    with pytest.raises(ValueError, match="not a visitor id"):
        folders.visitor_teach_dir(forged, tmp_path)
