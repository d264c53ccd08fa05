"""The columns of `picsort classify`'s CSV and what each holds: written once, for the CSV itself (results), the
CLI's help and the docs. Imports nothing, so `picsort --help` works where no library is installed."""

from __future__ import annotations

__all__ = ["COLUMNS", "columns_text", "results_header"]

# The CSV's columns in order, with what each holds; `p_<class>` stands for one column per class of the model.
COLUMNS = {
    "path": "the file",
    "class": "the answer, what the file was sorted as: a class, or none when the photo looks like none of the "
             "classes; empty when the file could not be used",
    "closest": "the class with the top probability, also for none rows",
    "probability": "the closest class's probability",
    "p_<class>": "every class's probability, a column each",
    "unsure": "true when the top probability is below the threshold, else false (false on error rows)",
    "none_of_these": "true when the photo looks like none of the classes, else false (false on error rows)",
    "error": "why the file could not be used; empty otherwise",
}


def results_header(classes: list[str]) -> list[str]:
    """The CSV's columns for a model with these classes (`COLUMNS` says what each holds)."""
    header: list[str] = []
    for column in COLUMNS:
        header += [f"p_{name}" for name in classes] if column == "p_<class>" else [column]
    return header


def columns_text() -> str:
    """The columns as one paragraph of plain text (the CLI's help)."""
    return "; ".join(f"{column}: {meaning}" for column, meaning in COLUMNS.items())
