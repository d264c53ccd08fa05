"""testing.py: the phone-sized picture the tests and benchmarks use."""

from __future__ import annotations

from PIL import Image

from rehearsal.phone_sized import PHONE_SIZE, phone_sized


def test_a_picture_becomes_twelve_megapixels_with_its_aspect_kept():
    assert PHONE_SIZE == (4032, 3024)
    assert phone_sized(Image.new("RGB", (400, 300))).size == PHONE_SIZE
    wide = phone_sized(Image.new("RGB", (300, 200)))
    assert abs(wide.width / wide.height - 1.5) < 0.01 and abs(wide.width * wide.height / 12e6 - 1) < 0.02
