"""What the page says (picsort.app.page_text): the intro from the model card, the limits, text never markup."""

from __future__ import annotations

from picsort.app.page import build_app
from picsort.app.page_text import escape, intro_text, limits_text, listed
from picsort.foundation.shown_text import human_bytes
from picsort.photos.images import ACCEPTED_FORMATS_TEXT, MAX_UPLOAD_BYTES
from tests.unit.app.conftest import model_with_classes, page_text


def test_the_page_says_what_it_serves_from_the_model_card(tmp_path):
    folder = model_with_classes(tmp_path / "model", ["polar bear", "cat", "dog"],
                                trained="2026-03-05T10:00:00+00:00",
                                validation={"error_rate": 0.125, "images": 40})
    text = page_text(build_app(folder, tmp_path / "labels"))
    assert "Is it <b>polar bear</b>, <b>cat</b> or <b>dog</b>?" in text
    assert "trained on 5 March 2026" in text and "from 30 photos" in text
    assert "wrong on 12.5% of 40 validation photos" in text
    assert "bear" not in text.replace("polar bear", "")  # nothing about bears but the class name


def test_names_become_text_never_markup_and_are_listed_in_bold():
    assert escape('<img src=x onerror="a">') == "&lt;img src=x onerror=&quot;a&quot;&gt;"
    assert listed(["a"]) == "<b>a</b>"
    assert listed(["a", "<b>"], "and") == "<b>a</b> and <b>&lt;b&gt;</b>"
    assert listed(["a", "b", "c"]) == "<b>a</b>, <b>b</b> or <b>c</b>"


def test_the_intro_states_only_what_the_card_says():
    bare = intro_text(["cat", "dog"], {})
    assert "Is it <b>cat</b> or <b>dog</b>?" in bare and "The model:" not in bare and "1–2 the classes" in bare
    told = intro_text(["cat", "dog"], {"trained": "not a date", "images_per_class": {"cat": 3, "dog": 4},
                                       "validation": {"error_rate": 0.25}})
    assert "<p>The model: trained not a date, from 7 photos, wrong on 25.0% validation photos.</p>" in told


def test_the_limits_are_the_decoder_s():
    assert limits_text().startswith(ACCEPTED_FORMATS_TEXT) and human_bytes(MAX_UPLOAD_BYTES) in limits_text()
