"""Photos named by fsspec URLs (`s3://bucket/prefix`, `gs://...`, `file:///...`): told from paths, listed, read.

fsspec (and s3fs for `s3://`) are imported only when a URL is used, so a run over folders on disk loads neither.
Credentials and endpoints come the standard way of each backend: for S3 the `AWS_*` environment variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for an S3 API other than Amazon's, such as
MinIO or a test server), `~/.aws/`, or an instance role. On a cluster each worker reads the photos itself, so the
workers need the same variables as the client.
"""

from __future__ import annotations

import posixpath
import re
from collections import Counter
from collections.abc import Callable, Iterator

__all__ = ["UnreadableURLError", "find_url_images", "is_url", "read_url", "url_exists"]


class UnreadableURLError(OSError):
    """An object at a URL that cannot be read; the message names it and says why, for the user."""

# "scheme://": a string like this is a URL, never a path (a folder named "s3:" would have to be given as ./s3:/...).
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")


def is_url(item: object) -> bool:
    """Whether `item` is a URL string (`s3://...`) rather than a path."""
    return isinstance(item, str) and _URL.match(item) is not None


def _filesystem(url: str):
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url)
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package (s3fs, gcsfs) missing
        raise ValueError(f"cannot read {url}: {exc}") from None


def url_exists(url: str) -> bool:
    """Whether the object or prefix at `url` exists."""
    fs, path = _filesystem(url)
    return fs.exists(path)


def read_url(url: str, limit: int) -> bytes:
    """At most `limit` bytes of the object at `url` (an `UnreadableURLError` saying why it could not be read)."""
    name = posixpath.basename(url.rstrip("/")) or url
    try:
        fs, path = _filesystem(url)
        with fs.open(path, "rb") as file:
            return file.read(limit)
    except FileNotFoundError as exc:
        raise UnreadableURLError(f"'{name}' was not found") from exc
    except IsADirectoryError as exc:
        raise UnreadableURLError(f"'{name}' is a folder, not an image") from exc
    except Exception as exc:  # noqa: BLE001 - network and permission errors of any backend: one file's row
        raise UnreadableURLError(f"'{name}' could not be read ({type(exc).__name__}: {exc})") from exc


def find_url_images(url: str, is_image: Callable[[str], bool], recursive: bool = False,
                    not_images: Counter | None = None) -> Iterator[str]:
    """The image objects under the URL of a prefix (or the URL itself, an object), as URLs.

    As `picsort.batch.sort.find_images` does for folders: image suffixes only, hidden names left out, sub-prefixes
    only when `recursive`, names sorted within each prefix. Listed one prefix at a time, so the first photos
    come before a large tree is listed whole (a flat prefix of millions is one listing: S3 gives no order
    to start from otherwise). `is_image(name)` says which names to take (`picsort.photos.images.is_image_file`).
    """
    fs, root = _filesystem(url)
    if fs.isfile(root):
        yield url
        return
    for folder, folders, files in fs.walk(root, maxdepth=None if recursive else 1, topdown=True):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if not is_image(name):
                if not_images is not None:
                    not_images[posixpath.splitext(name)[1].lower() or "no extension"] += 1
                continue
            yield fs.unstrip_protocol(posixpath.join(folder, name))
