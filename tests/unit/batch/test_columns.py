"""The CSV's columns, described once: the header in order, and the CLI's help printing every description."""


def test_the_columns_are_described_once_and_the_help_prints_that_description():
    from picsort.batch.columns import COLUMNS, results_header
    from picsort.cli import build_parser

    assert results_header(["cat", "dog"]) == ["path", "class", "closest", "probability", "p_cat", "p_dog", "unsure",
                                              "none_of_these", "error"]
    subcommands = next(a for a in build_parser()._actions if a.dest == "command")
    shown = " ".join(subcommands.choices["classify"].format_help().split())
    for column, meaning in COLUMNS.items():
        assert f"{column}: {' '.join(meaning.split())}" in shown
