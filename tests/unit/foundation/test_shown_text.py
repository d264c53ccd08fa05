"""Names a user handed us, shown safely: on a page without control characters, in a terminal escaped; sizes as
people read them."""

from picsort.foundation.shown_text import escaped_text, human_bytes, shown_name


def test_a_name_printed_to_a_terminal_has_its_control_characters_escaped_not_run():

    name = "a\x1b[2J\nb\u202egpj.exe\udcff.jpg"  # clear-screen, newline, bidi override, a byte that is not UTF-8
    assert shown_name(name, escaped=True) == "a\\x1b[2J\\nb\\u202egpj.exe\\xff.jpg"
    assert shown_name(name) == "a[2Jbgpj.exe.jpg"  # on a page they are left out
    assert escaped_text("plain words: café") == "plain words: café"
    assert len(shown_name("\x1b" * 1000, escaped=True)) <= 120


def test_a_bidi_control_cannot_turn_a_name_around_on_a_page_and_long_names_are_cut():
    assert shown_name("photo\u202egpj.exe") == "photogpj.exe"
    assert shown_name("") == "unnamed file"
    long = shown_name("a" * 500)
    assert len(long) == 120 and long.endswith("…")


def test_sizes_read_as_people_read_them():
    assert human_bytes(20 * 1024 * 1024) == "20 MB"
    assert human_bytes(1536) == "1.5 KB"
    assert human_bytes(12) == "12 bytes"
