"""Download many image URLs into one folder, keeping only real, distinct images.

Why not fastai's `download_images`: it gives no count of what failed and why, does not
check that the bytes are an image, does not de-duplicate by content, cannot resume an
interrupted run, and names files by uuid (so a re-run downloads everything again).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import requests
import urllib3

from picsort.foundation.files import write_atomically
from picsort.photos.images import MAX_UPLOAD_BYTES, ImageTooLargeError, UnusableImageError, usable_image_extension

__all__ = ["FAILURE_REASONS", "RECORD_NAME", "DownloadReport", "download_images"]

TIMEOUT, HTTP_ERROR, NOT_AN_IMAGE, TOO_LARGE, CONNECTION_ERROR = (
    "timeout",
    "http error",
    "not an image",
    "too large",
    "connection error",
)
FAILURE_REASONS = (TIMEOUT, HTTP_ERROR, NOT_AN_IMAGE, TOO_LARGE, CONNECTION_ERROR)

RECORD_NAME = ".downloads.json"
_SAVE_EVERY = 50  # URLs between saves of the record: an interrupted run loses at most this many
_CHUNK = 64 * 1024

# Some image hosts refuse python-requests' default User-Agent outright.
_HEADERS = {"User-Agent": "Mozilla/5.0 (compatible; picsort image downloader)", "Accept": "image/*,*/*;q=0.8"}


@dataclass
class DownloadReport:
    """What one `download_images` run did; `str()` gives a one-line summary."""

    downloaded: int = 0
    duplicate: int = 0  # same bytes as another URL of this run or a file already in dest
    skipped: int = 0  # downloaded by an earlier run, so not fetched again
    failed: dict[str, int] = field(default_factory=dict)  # reason -> count
    files: list[Path] = field(default_factory=list)  # image files in dest for these URLs, each once
    failures: list[tuple[str, str]] = field(default_factory=list)  # (url, reason)

    def __str__(self) -> str:
        total = sum(self.failed.values())
        line = f"{self.downloaded} downloaded, {self.duplicate} duplicate, {self.skipped} already there, {total} failed"
        if total:
            order = sorted(self.failed.items(), key=lambda kv: (-kv[1], _reason_rank(kv[0])))
            line += " (" + ", ".join(f"{n} {reason}" for reason, n in order if n) + ")"
        return line


def _reason_rank(reason: str) -> int:
    return FAILURE_REASONS.index(reason) if reason in FAILURE_REASONS else len(FAILURE_REASONS)


class _Failed(Exception):
    """One URL failed for one of FAILURE_REASONS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fetch(url: str, timeout: float, max_bytes: int) -> bytes:
    """The body of `url`, or _Failed; the whole download must finish within about `timeout` seconds."""
    # requests' own timeout bounds the connect and each single read, not the total: a server
    # that trickles a byte now and then would never time out, hence our own deadline too.
    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, stream=True, timeout=(timeout, timeout), headers=_HEADERS) as resp:
            if resp.status_code >= 400:
                raise _Failed(HTTP_ERROR)
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise _Failed(TOO_LARGE)  # refuse before reading a single byte of it
            body = bytearray()
            # read1, not iter_content: iter_content blocks until a whole chunk has arrived,
            # which a slow server can stretch far past the deadline we check between chunks.
            while chunk := resp.raw.read1(_CHUNK, decode_content=True):
                body += chunk
                # Counted after decompression, so a small gzip bomb is caught as well.
                if len(body) > max_bytes:
                    raise _Failed(TOO_LARGE)
                if time.monotonic() > deadline:
                    raise _Failed(TIMEOUT)
            return bytes(body)
    except (requests.Timeout, urllib3.exceptions.TimeoutError) as err:  # ConnectTimeout is a ConnectionError too
        raise _Failed(TIMEOUT) from err
    except requests.TooManyRedirects as err:
        raise _Failed(HTTP_ERROR) from err
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as err:
        # Refused, reset, DNS, body cut short, and URLs requests cannot even try.
        raise _Failed(CONNECTION_ERROR) from err


def _download_one(url: str, timeout: float, max_bytes: int) -> tuple[str, bytes] | str:
    """(file name, bytes) for a good image, or the failure reason. Runs in a worker thread."""
    try:
        data = _fetch(url, timeout, max_bytes)
        # Never trusts the URL or the Content-Type: the bytes must be a whole image picsort can use.
        ext = usable_image_extension(data)
    except _Failed as failed:
        return failed.reason
    except ImageTooLargeError:
        return TOO_LARGE
    except UnusableImageError:
        return NOT_AN_IMAGE
    return f"{hashlib.sha256(data).hexdigest()[:16]}.{ext}", data


def _load_record(path: Path) -> dict[str, str]:
    """url -> file name or failure reason, from an earlier run; empty if missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # worst case we fetch again; never fail a download over a damaged record
    if not isinstance(data, dict):
        return {}
    return {u: v for u, v in data.items() if isinstance(u, str) and isinstance(v, str)}


def _save_record(path: Path, record: dict[str, str]) -> None:
    write_atomically(path, json.dumps(record, indent=1, ensure_ascii=False).encode("utf-8"))


def _is_file_name(value: str) -> bool:
    """Manifest values are file names or failure reasons; reasons never contain a dot."""
    return value not in FAILURE_REASONS and Path(value).name == value and "." in value


def download_images(
    urls: Iterable[str],
    dest: Path | str,
    *,
    max_workers: int = 8,
    timeout: float = 10.0,
    max_bytes: int = MAX_UPLOAD_BYTES,
    progress: bool = True,
) -> DownloadReport:
    """Download `urls` into `dest` in parallel, keeping only real images, named `<sha256[:16]>.<ext>`.

    Identical images are stored once. `dest/.downloads.json` records each URL's file (or
    failure reason), so a re-run skips URLs already downloaded, even if you have since
    deleted the file (e.g. while cleaning the data set), and retries the ones that failed.
    Delete that file to start over.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    record_path = dest / RECORD_NAME
    record = _load_record(record_path)
    report = DownloadReport()

    all_urls = [u.strip() for u in urls if isinstance(u, str) and u.strip()]
    todo: list[str] = []
    seen: set[str] = set()
    for url in all_urls:
        if url in seen:
            report.duplicate += 1  # the same URL twice can only give the same bytes twice
        elif _is_file_name(record.get(url, "")):
            report.skipped += 1
        else:
            todo.append(url)
        seen.add(url)

    failures: dict[str, str] = {}
    stored_this_run: set[str] = set()
    if todo:
        pool = ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(todo))))
        try:
            futures = {pool.submit(_download_one, url, timeout, max_bytes): url for url in todo}
            done = as_completed(futures)
            if progress:
                from fastprogress import progress_bar

                done = progress_bar(done, total=len(futures))
            for n, future in enumerate(done, 1):
                url = futures.pop(future)  # drop our reference, or every image's bytes stay in memory
                outcome = future.result()
                if isinstance(outcome, str):
                    failures[url] = record[url] = outcome
                else:
                    name, data = outcome
                    target = dest / name
                    if name in stored_this_run or target.exists():
                        report.duplicate += 1
                    else:
                        write_atomically(target, data)
                        stored_this_run.add(name)
                        report.downloaded += 1
                    record[url] = name  # duplicates too: a re-run need not fetch them again
                if n % _SAVE_EVERY == 0:
                    _save_record(record_path, record)
        finally:
            # On Ctrl-C or an error, don't start the queued URLs; keep what we already have.
            pool.shutdown(wait=False, cancel_futures=True)
            _save_record(record_path, record)

    report.failures = [(url, failures[url]) for url in todo if url in failures]
    counts = Counter(reason for _, reason in report.failures)
    report.failed = {reason: counts[reason] for reason in FAILURE_REASONS if counts[reason]}
    files = dict.fromkeys(
        dest / record[url] for url in all_urls if _is_file_name(record.get(url, ""))
    )
    report.files = [path for path in files if path.exists()]
    return report
