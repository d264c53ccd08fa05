"""browser_rehearsal.py: what the browser tests build on. (Its servers and pages are used, and so tested, by
test_server_safety, test_kernel_limit, test_kernel_culling, test_offline and test_binder_pod.)"""

from __future__ import annotations

from PIL import Image

from rehearsal.browser import make_phone_photos, off_the_machine
from rehearsal.phone_sized import PHONE_SIZE


def test_only_requests_that_leave_the_machine_are_reported():
    urls = ["http://127.0.0.1:8866/voila/static/main.js", "ws://localhost:8866/api/kernels/x/channels",
            "data:image/png;base64,AAAA", "blob:http://127.0.0.1:8866/1234",
            "https://cdn.jsdelivr.net/npm/x.js", "http://192.0.2.7/", "wss://example.org/socket"]
    assert off_the_machine(urls) == urls[4:]


def test_phone_photos_are_12_megapixel_jpegs_as_heavy_as_a_phone_s(tmp_path):
    photo, = make_phone_photos(tmp_path, 1)
    with Image.open(photo) as image:
        assert image.format == "JPEG" and image.size == PHONE_SIZE
    assert 2.5 * 2**20 < photo.stat().st_size < 5 * 2**20
