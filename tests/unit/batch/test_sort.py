"""Tests for picsort.batch.sort: finding files and sort_files (the CLI's library call); the streaming under it is
test_batches'."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas
import pytest

from picsort.batch.results import ResultsFileError, results_header
from picsort.batch.sort import find_images, sort_files
from picsort.cli import summary
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.inference.classify import load_model

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"


# ---- resuming --------------------------------------------------------------------------------------------------


# ---- sort_files: the library call under `picsort classify` ------------------------------------------------


class _NoneForTeddies:
    """The shipped model, but whatever it calls teddy is reported as looking like none of the classes."""

    def __init__(self):
        self.model = load_model()
        self.classes, self.threshold = self.model.classes, self.model.threshold

    def __getattr__(self, name):
        return getattr(self.model, name)

    def answers(self, photos, threshold=None):  # the one rule every classify call answers by
        return [replace(real, none_of_these=real.closest == "teddy")
                for real in self.model.answers(photos, threshold)]


def test_sort_files_counts_and_copies_none_of_these_apart(examples_and_bad_files, tmp_path):
    out, sorted_dir = tmp_path / "results.csv", tmp_path / "sorted"
    report = sort_files([examples_and_bad_files], _NoneForTeddies(), out, copy_to=sorted_dir)
    rows = list(csv.DictReader(open(out, encoding="utf-8")))
    assert {Path(row["path"]).name for row in rows} == {"a.jpg", "b.jpg", "c.jpg", "empty.jpg", "text.jpg"}
    teddies = [row for row in rows if row["closest"] == "teddy"]
    assert teddies and all(row["class"] == NONE_LABEL and row["none_of_these"] == "true" for row in teddies)
    assert all(row["none_of_these"] == "false" for row in rows if row["closest"] != "teddy")
    assert report.none_of_these == len(teddies) and report.errors == 2
    assert report.processed == 5 and report.copied == 3 and not report.interrupted
    assert sorted(p.name for p in (sorted_dir / "none").iterdir()) == sorted(Path(r["path"]).name for r in teddies)
    assert report.counts["teddy"] == 0
    again = sort_files([examples_and_bad_files], _NoneForTeddies(), out)
    assert again.already_done == 5 and again.processed == 0


def test_pandas_reads_the_flags_as_booleans_and_class_never_names_a_none_of_these_photo(examples_and_bad_files, tmp_path):
    out = tmp_path / "results.csv"
    sort_files([examples_and_bad_files], _NoneForTeddies(), out)
    frame = pandas.read_csv(out)
    assert frame["unsure"].dtype == bool and frame["none_of_these"].dtype == bool  # error rows included
    flagged = frame[frame["none_of_these"]]
    assert list(flagged["class"]) == [NONE_LABEL] and list(flagged["closest"]) == ["teddy"]
    assert frame[frame["class"] == "teddy"].empty
    assert (frame["class"] == frame["closest"]).sum() == 2  # the black and the grizzly: sure, and like the training photos


def test_a_csv_an_older_picsort_wrote_is_rewritten_in_today_s_columns_and_resumed(examples_and_bad_files, tmp_path):
    model = load_model()
    p = ",".join(f"p_{name}" for name in model.classes)
    others = ",".join("0.00000001" for _ in model.classes[1:])
    # As picsort wrote it before `closest`: a "none of these" photo headlined its closest class, flags yes/no;
    # an odd name's cell escaped; the last row cut short by a kill.
    old = (f"path,class,probability,{p},unsure,none_of_these,error\n"
           f"{examples_and_bad_files / 'a.jpg'},teddy,0.99999998,{others},0.99999998,no,yes,\n"
           f"'=gone\\nnow.jpg,black,0.51,0.51,0.48,0.01,yes,no,\n"
           f"{examples_and_bad_files / 'empty.jpg'},,,{','.join('' for _ in model.classes)},,,"
           f"{examples_and_bad_files / 'empty.jpg'} is empty\n"
           f"{examples_and_bad_files / 'b.jpg'},gri")
    out = tmp_path / "results.csv"
    out.write_text(old, encoding="utf-8")

    report = sort_files([examples_and_bad_files], model, out)

    assert report.upgraded and report.already_done == 2 and report.processed == 3
    assert "written by an older picsort" in summary(report)
    frame = pandas.read_csv(out, keep_default_na=False)
    assert list(frame.columns) == results_header(model.classes)
    by_name = {Path(path).name: row for path, row in zip(frame["path"], frame.to_dict("records"))}
    assert sorted(by_name) == ["'=gone\\nnow.jpg", "a.jpg", "b.jpg", "c.jpg", "empty.jpg", "text.jpg"]  # once each
    assert "\n'=gone\\nnow.jpg,black,black,0.51,0.51,0.48,0.01,true,false,\n" in out.read_text()
    assert (by_name["a.jpg"]["class"], by_name["a.jpg"]["closest"]) == (NONE_LABEL, "teddy")
    assert by_name["a.jpg"]["none_of_these"] is True and by_name["a.jpg"]["unsure"] is False
    assert by_name["empty.jpg"]["error"].endswith("is empty") and by_name["empty.jpg"]["class"] == ""
    assert frame["unsure"].dtype == bool and frame["none_of_these"].dtype == bool
    again = sort_files([examples_and_bad_files], model, out)
    assert not again.upgraded and again.already_done == 5 and again.processed == 0
    assert again.out.read_text().count("path,class,") == 1


def test_sort_files_refuses_a_file_that_is_not_its_results(examples_and_bad_files, tmp_path):
    out = tmp_path / "notes.txt"
    out.write_text("dear diary")
    with pytest.raises(ResultsFileError, match="not a picsort results file"):
        sort_files([examples_and_bad_files], load_model(), out)
    assert out.read_text() == "dear diary"


def test_folder_scans_count_what_they_leave_out(tmp_path):
    for name in ("a.jpg", "b.PDF", "c.pdf", "README", ".hidden.pdf"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.txt").write_text("x")
    left_out = Counter()
    assert [Path(p).name for p in find_images([tmp_path], recursive=True, not_images=left_out)] == ["a.jpg"]
    assert left_out == {".pdf": 2, "no extension": 1, ".txt": 1}  # hidden files are not counted
