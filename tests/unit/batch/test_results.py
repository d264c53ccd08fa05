"""The results CSV of a bulk sort (picsort.batch.results): one line a row, safe in a spreadsheet, resumable, never
written over someone else's file. Whole runs through `picsort classify` are test_bulk's and test_cli's."""

from __future__ import annotations

import csv
import os

import pytest

from picsort.batch.results import (
    ResultsFileError,
    escape_cell,
    format_rows,
    open_results,
    path_from_cell,
    path_key,
    results_header,
    upgrade_results,
)
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference.classify import Prediction
from picsort.photos.images import UnusableImageError

CLASSES = ["black", "grizzly"]
HEADER = "path,class,closest,probability,p_black,p_grizzly,unsure,none_of_these,error\n"


def answer(closest="black", none_of_these=False, unsure=False) -> Prediction:
    other = "grizzly" if closest == "black" else "black"
    return Prediction(closest, 0.75, {closest: 0.75, other: 0.25}, unsure=unsure, none_of_these=none_of_these)


def append(out, rows):
    file, done, upgraded = open_results(out, CLASSES)
    with file:
        file.write(format_rows(rows, CLASSES))
    return done, upgraded


def test_a_new_file_gets_the_header_then_one_line_a_file(tmp_path):
    out = tmp_path / "results.csv"
    done, upgraded = append(out, [("a.jpg", answer()), ("b.jpg", answer("grizzly", unsure=True)),
                                  ("c.jpg", answer(none_of_these=True)), ("d.jpg", UnusableImageError("d.jpg is empty"))])
    assert done == set() and not upgraded
    assert out.read_text() == HEADER + (
        "a.jpg,black,black,0.75000000,0.75000000,0.25000000,false,false,\n"
        "b.jpg,grizzly,grizzly,0.75000000,0.25000000,0.75000000,true,false,\n"
        f"c.jpg,{NONE_LABEL},black,0.75000000,0.75000000,0.25000000,false,true,\n"
        "d.jpg,,,,,,false,false,d.jpg is empty\n")
    assert out.read_text().splitlines()[0].split(",") == results_header(CLASSES)


def test_a_reopened_file_knows_its_files_however_they_were_named_and_drops_a_half_written_row(tmp_path):
    out = tmp_path / "results.csv"
    append(out, [("./a.jpg", answer()), ("b.jpg", UnusableImageError("b.jpg is empty"))])
    with open(out, "a") as file:
        file.write("c.jpg,bla")  # a run killed mid-row
    done, _ = append(out, [("c.jpg", answer())])
    assert done == {path_key("a.jpg"), path_key("b.jpg")}
    lines = out.read_text().splitlines()
    assert lines[-1].startswith("c.jpg,black,") and len(lines) == 4 and "c.jpg,bla\n" not in out.read_text()


def test_a_header_cut_short_by_a_kill_is_written_again(tmp_path):
    out = tmp_path / "results.csv"
    out.write_text(HEADER[:20])
    assert append(out, [("a.jpg", answer())]) == (set(), False)
    assert out.read_text().startswith(HEADER) and out.read_text().count("path,") == 1


@pytest.mark.parametrize("text, words", [
    ("dear diary\n", "is not a picsort results file"),
    ("path,class,closest,probability,p_cat,p_dog,unsure,none_of_these,error\n", "another model or an older picsort"),
], ids=["someone's notes", "another model's results"])
def test_a_file_that_is_not_this_model_s_results_is_refused_and_left_as_it_was(tmp_path, text, words):
    out = tmp_path / "results.csv"
    out.write_text(text)
    with pytest.raises(ResultsFileError, match=words):
        open_results(out, CLASSES)
    assert out.read_text() == text


def test_a_folder_is_refused_as_the_results_file(tmp_path):
    with pytest.raises(ResultsFileError, match="not a regular file"):
        open_results(tmp_path, CLASSES)


def test_an_older_picsort_s_results_are_rewritten_in_today_s_columns(tmp_path):
    out = tmp_path / "results.csv"
    out.write_text("path,class,probability,p_black,p_grizzly,unsure,none_of_these,error\n"
                   "a.jpg,black,0.75,0.75,0.25,no,yes,\n"
                   "b.jpg,grizzly,0.51,0.49,0.51,yes,no,\n"
                   "c.jpg,,,,,,,c.jpg is empty\n")
    upgrade_results(out, CLASSES)
    rows = list(csv.DictReader(out.open()))
    assert [(row["class"], row["closest"], row["unsure"], row["none_of_these"]) for row in rows] == [
        (NONE_LABEL, "black", "false", "true"), ("grizzly", "grizzly", "true", "false"), ("", "", "false", "false")]
    assert rows[2]["error"] == "c.jpg is empty"


@pytest.mark.parametrize("name", ["plain.jpg", "=SUM(A1).jpg", "'x.jpg", "a\\nb\\\\c\\t.jpg",
                                  os.fsdecode(b"caf\xe9 \xff.jpg"), "\u2028sep.jpg", "ok\\x41.jpg"])
def test_path_cells_are_one_safe_line_and_give_the_path_back(name):
    cell = escape_cell(name, path=True)
    assert "\n" not in cell and "\r" not in cell and cell[0] not in "=+-@"
    cell.encode("utf-8")  # no lone surrogates left
    assert path_from_cell(cell) == name


def test_a_message_that_looks_like_a_formula_is_not_run_by_a_spreadsheet():
    assert escape_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")" and escape_cell("-5 bytes") == "'-5 bytes"
    assert escape_cell("'quoted") == "'quoted"  # only a path cell doubles a leading quote

