"""remote.py: photos named by fsspec URLs, told from paths, listed and read (here through file:// URLs)."""

from __future__ import annotations

from collections import Counter

import pytest

from picsort.foundation.remote import UnreadableURLError, find_url_images, is_url, read_url, url_exists
from picsort.photos.images import is_image_file


def test_urls_are_told_from_paths():
    assert is_url("s3://bucket/photos") and is_url("file:///tmp/x.jpg")
    assert not is_url("photos/s3:/x.jpg") and not is_url("C:photos") and not is_url(None)


def test_a_prefix_lists_its_images_sorted_and_counts_what_it_left_out(tmp_path):
    for name in ("b.jpg", "a.png", ".hidden.jpg", "notes.txt", "sub/c.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    url = f"file://{tmp_path}"
    not_images = Counter()
    top = [u.rsplit("/", 1)[1] for u in find_url_images(url, is_image_file, not_images=not_images)]
    assert top == ["a.png", "b.jpg"] and not_images == {".txt": 1}
    assert [u.rsplit("/", 2)[1:] for u in find_url_images(url, is_image_file, recursive=True)][-1] == ["sub", "c.jpg"]
    assert url_exists(f"{url}/b.jpg") and not url_exists(f"{url}/missing.jpg")


def test_reading_is_limited_and_a_missing_object_is_named(tmp_path):
    (tmp_path / "big.jpg").write_bytes(b"0123456789")
    assert read_url(f"file://{tmp_path}/big.jpg", 4) == b"0123"
    with pytest.raises(UnreadableURLError, match="'missing.jpg' was not found"):
        read_url(f"file://{tmp_path}/missing.jpg", 4)
    with pytest.raises(ValueError, match="cannot read nosuchscheme://x"):
        url_exists("nosuchscheme://x")
