"""The results CSV of a bulk sort: one row per file, safe to open in a spreadsheet, resumable after a kill.

Every row is one physical line: control characters (a newline in a file name) and bytes that are not UTF-8
are written as backslash escapes (`\\n`, `\\xff`; a backslash itself as `\\\\`), so a run killed mid-write
leaves at most one partial last line, and the file is always valid UTF-8. Text cells that a spreadsheet
would run as a formula (starting with `=`, `+`, `-`, `@`) get a leading `'`, as spreadsheets expect.
An existing file is only ever appended to, and only when its first line is this model's header; one an older
picsort wrote for this model is first rewritten, whole and at once, in today's columns (`upgrade_results`).

The columns and what each holds are `picsort.batch.columns.COLUMNS`, the one description the CLI's help and the
docs print.
"""

from __future__ import annotations

import csv
import io
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path

from picsort.batch.columns import results_header
from picsort.foundation.files import write_atomically
from picsort.foundation.remote import is_url
from picsort.foundation.vocabulary import NONE_LABEL
from picsort.photos.images import UnusableImageError

__all__ = ["ResultsFileError", "escape_cell", "format_rows", "open_results", "path_from_cell", "path_key",
           "results_header", "upgrade_results"]

_FORMULA_STARTS = ("=", "+", "-", "@")
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})")
_HEADER_LIMIT = 64 * 1024  # a first line longer than this is not a header of ours


class ResultsFileError(Exception):
    """The --out file is not a results file of this model; nothing in it was changed."""


def _old_header(classes: list[str]) -> list[str]:
    """The columns picsort wrote before `closest`: `class` was the top class even for "none of these" photos,
    and the flags were `yes`/`no`."""
    return ["path", "class", "probability", *(f"p_{name}" for name in classes), "unsure", "none_of_these",
            "error"]


def _flag(value: bool) -> str:
    return "true" if value else "false"


def escape_cell(text: str, *, path: bool = False) -> str:
    """`text` as one spreadsheet-safe line: control characters and non-UTF-8 bytes as backslash escapes,
    and a leading `'` when it would start like a formula. For a `path` cell, one that starts with `'` gets
    one more, so `path_from_cell` can always take the marker off."""
    parts = []
    for ch in text:
        if ch in _ESCAPES:
            parts.append(_ESCAPES[ch])
        elif "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (surrogateescape, as os.fsdecode gives)
            parts.append(f"\\x{ord(ch) - 0xdc00:02x}")
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp"):
            parts.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            parts.append(ch)
    cell = "".join(parts)
    return "'" + cell if cell.startswith(_FORMULA_STARTS + (("'",) if path else ())) else cell


def path_from_cell(cell: str) -> str:
    """The path an `escape_cell`-written cell holds (surrogate-escaped where it was not UTF-8)."""
    if cell.startswith("'"):
        cell = cell[1:]

    def unescape(match: re.Match) -> str:
        code = match.group(1)
        if code[0] == "x":
            value = int(code[1:], 16)
            return chr(0xdc00 + value) if value >= 0x80 else chr(value)
        if code[0] == "u":
            return chr(int(code[1:], 16))
        return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[code]

    return _UNESCAPE.sub(unescape, cell)


def path_key(path: str) -> str:
    """How a path is recognised as done: absolute and normalised, so `./a.jpg` and `a.jpg` match (a URL as it is)."""
    return path if is_url(path) else os.path.normcase(os.path.abspath(path))


def open_results(out: Path, classes: list[str]):
    """Open `out` for appending rows; returns `(file, keys of the files already in it, upgraded)`.

    A missing or empty file gets the header. An existing one must start with this model's header
    (ResultsFileError otherwise, and the file is left exactly as it was), or with the header an older
    picsort wrote for this model: then it is rewritten in today's columns first (`upgraded` is True). Its
    partial last line, if a killed run left one, is cut off so the resumed run starts on a clean line.
    """
    header = results_header(classes)
    header_line = _header_line(header)
    if out.exists() and not out.is_file():
        raise ResultsFileError(f"{out} is not a regular file: give a CSV file name")
    done: set[str] = set()
    upgraded = False
    if out.exists() and out.stat().st_size:
        with open(out, "rb") as file:
            first = file.readline(_HEADER_LIMIT)
        if first == _header_line(_old_header(classes)):
            _drop_partial_last_line(out)
            upgrade_results(out, classes)
            first, upgraded = header_line, True
        if first != header_line:
            if header_line.startswith(first) and first == out.read_bytes():
                out.write_bytes(b"")  # only our own header, cut short by a kill: nothing else to keep
            else:
                raise ResultsFileError(_not_ours(out, first, header))
        else:
            _drop_partial_last_line(out)
            with open(out, newline="", encoding="utf-8", errors="surrogateescape") as file:
                reader = csv.reader(file)
                next(reader)
                for row in reader:
                    if len(row) == len(header) and row[0]:
                        done.add(path_key(path_from_cell(row[0])))
    file = open(out, "a", newline="", encoding="utf-8")
    if file.tell() == 0:
        file.write(header_line.decode("utf-8"))
        file.flush()
    return file, done, upgraded


def upgrade_results(out: Path, classes: list[str]) -> None:
    """Rewrite a results file an older picsort wrote for this model (`_old_header`) in today's columns.

    A "none of these" row's `class` becomes `none`, the class it held moves to `closest`, and `yes`/`no`
    become `true`/`false`: the same rows a run today writes. The file is replaced whole (write_atomically),
    so a kill leaves either the old file or the new one. Lines that are not rows of ours are kept as they were.
    """
    old = _old_header(classes)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([escape_cell(name) for name in results_header(classes)])
    with open(out, newline="", encoding="utf-8", errors="surrogateescape") as file:
        reader = csv.reader(file)
        next(reader)  # the old header
        for row in reader:
            if len(row) != len(old):
                writer.writerow(row)
                continue
            # The cells stay as the older picsort escaped them: only the answer and the flags change.
            path, label, probability, *rest = row
            *probabilities, unsure, none_of_these, error = rest
            answer = NONE_LABEL if label and none_of_these == "yes" else label
            writer.writerow([path, answer, label, probability, *probabilities, _flag(unsure == "yes"),
                             _flag(none_of_these == "yes"), error])
    write_atomically(out, buffer.getvalue().encode("utf-8", errors="surrogateescape"))


def format_rows(results: Iterable, classes: list[str]) -> str:
    """CSV text for `(path, Prediction or UnusableImageError)` pairs: one line each."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    for path, result in results:
        if isinstance(result, UnusableImageError):
            writer.writerow([escape_cell(path, path=True), "", "", "", *([""] * len(classes)), _flag(False),
                             _flag(False), escape_cell(str(result))])
        else:
            # 8 decimals: finer than a float32 probability needs to stay within 1e-7 of the model's value.
            writer.writerow([escape_cell(path, path=True), escape_cell(result.label), escape_cell(result.closest),
                             f"{result.probability:.8f}", *(f"{result.probabilities[name]:.8f}" for name in classes),
                             _flag(result.unsure), _flag(result.none_of_these), ""])
    return buffer.getvalue()


def _header_line(header: list[str]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow([escape_cell(name) for name in header])
    return buffer.getvalue().encode("utf-8")


def _not_ours(out: Path, first: bytes, header: list[str]) -> str:
    text = first.decode("utf-8", errors="replace").rstrip("\n")
    shown = escape_cell(text[:60]) + ("..." if len(text) > 60 else "")
    if text.startswith("path,class,"):
        return (f"{out} holds results written by another model or an older picsort (its columns: {shown}): "
                f"give a new --out file")
    return (f"{out} is not a picsort results file (its first line is {shown!r}); picsort never overwrites "
            f"other files: give a new --out file name")


def _drop_partial_last_line(out: Path) -> None:
    """Cut a half-written last row (a run killed mid-write); the header line is whole, so it stays."""
    with open(out, "rb+") as file:
        end = file.seek(0, os.SEEK_END)
        position, chunk = end, 64 * 1024
        cut = 0
        while position > 0:  # read backwards: the file may be large, the damage is only at its end
            start = max(0, position - chunk)
            file.seek(start)
            data = file.read(position - start)
            newline = data.rfind(b"\n")
            if newline >= 0:
                cut = start + newline + 1
                break
            position = start
        if cut < end:
            file.truncate(cut)
