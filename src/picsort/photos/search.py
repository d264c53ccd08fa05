"""Image search on DuckDuckGo through the `ddgs` package, with retries and an on-disk cache.

DuckDuckGo rate-limits scripted searches often, so a 403/202 or a timeout is the normal
case, not an edge case: we back off and retry, and we cache every successful query so a
re-run of the notebook never searches again for what it already has.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from picsort.foundation.files import write_atomically

__all__ = ["SearchFailedError", "search_images", "search_categories"]

logger = logging.getLogger(__name__)

# Fixed rather than a parameter: the cache key is (query, max_images) only, so letting
# safesearch vary would hand back results cached under another setting.
SAFESEARCH = "moderate"

# What in a plain DDGSException means "you are being rate-limited": ddgs raises
# RatelimitException for some engines but only a generic DDGSException for others.
# Status codes as whole words, so a "2025" or a port number in the text does not match.
_RATELIMIT_PATTERN = re.compile(r"\b(?:202|403|429)\b|rate[ -]?limit", re.IGNORECASE)

# ddgs raises DDGSException("No results found.") when every engine came back empty.
_NO_RESULTS_MARKER = "no results found"


class SearchFailedError(RuntimeError):
    """An image search failed for good (after retries, or on an error retrying cannot fix)."""


# What in an error means "this machine cannot reach the search at all": no network, no DNS, a firewall.
_OFFLINE_PATTERN = re.compile(
    r"dns|resolv|name or service not known|nodename nor servname|getaddrinfo|connecterror|connection refused"
    r"|network is unreachable|no route to host|os error (?:101|111|113)", re.IGNORECASE)

_OWN_PHOTOS = (
    "use photos you already have: set SOURCE in the notebook's first cell (or the environment variable "
    "PICSORT_SOURCE) to a folder with one sub-folder of photos per category, named like the categories, "
    "for example photos/grizzly/1.jpg, photos/black/1.jpg, photos/teddy/1.jpg"
)


def _is_offline(err: BaseException) -> bool:
    """True when the error says the network itself is missing (DNS, refused or unreachable connection)."""
    return isinstance(err, (ConnectionError, OSError)) or bool(_OFFLINE_PATTERN.search(str(err)))


def _failure_message(query: str, err: BaseException, cache_dir: Path | None, attempts: int = 1) -> str:
    """Why the search failed and what the notebook user can do about it, in that situation."""
    if _is_offline(err):
        return (f"Image search for {query!r} failed: this machine cannot reach DuckDuckGo (it looks offline, "
                f"or a firewall or proxy blocks it). Re-running will not help until it is online. To train "
                f"offline, {_OWN_PHOTOS}.")
    cached = (f"queries already answered are cached in {cache_dir} and are not searched again"
              if cache_dir is not None else "pass a cache_dir so answered queries are not searched again")
    if _is_ratelimit(err):
        return (f"Image search for {query!r} failed: DuckDuckGo is rate-limiting this machine ({attempts} "
                f"attempts refused). Wait a few minutes and re-run the cell ({cached}). Or {_OWN_PHOTOS}.")
    # Engines' own URLs (ddgs falls back to other search engines) would only confuse: name the error kind.
    detail = re.sub(r"https?://\S+", "<url>", str(err))[:200]
    return (f"Image search for {query!r} failed: DuckDuckGo gave an unexpected answer ({type(err).__name__}: "
            f"{detail}). Re-run the cell later ({cached}), or {_OWN_PHOTOS}.")


def _cache_path(cache_dir: Path, query: str, max_images: int) -> Path:
    """Cache file for one (query, max_images); hashed so any query text makes a safe file name."""
    key = json.dumps([query, max_images], ensure_ascii=False)
    return cache_dir / f"{hashlib.sha256(key.encode('utf-8')).hexdigest()[:16]}.json"


def _read_cache(path: Path, query: str, max_images: int) -> list[str] | None:
    """Cached URLs, or None on a miss (a missing, unreadable or mismatching file is a miss)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    # A corrupt or foreign file just means we search again; never fail the notebook on it.
    if not isinstance(data, dict) or data.get("query") != query or data.get("max_images") != max_images:
        return None
    urls = data.get("urls")
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) for u in urls):
        return None
    return urls


def _write_cache(path: Path, query: str, max_images: int, urls: list[str]) -> None:
    """Store URLs atomically, so an interrupted run never leaves a half-written cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"query": query, "max_images": max_images, "urls": urls}
    write_atomically(path, json.dumps(payload, ensure_ascii=False, indent=1).encode("utf-8"))


def _ddgs_errors():
    """ddgs's exceptions module, imported only where a search runs: the app and `picsort teach` import this module
    (through picsort.photos.sources) where ddgs is not installed (binder/requirements.txt has no search). None without
    ddgs, where no error can be one of ddgs's."""
    try:
        import ddgs.exceptions
    except ImportError:
        return None
    return ddgs.exceptions


def _is_ddgs_error(err: BaseException) -> bool:
    errors = _ddgs_errors()
    return errors is not None and isinstance(err, errors.DDGSException)


def _is_ratelimit(err: BaseException) -> bool:
    """True for errors worth retrying after a pause."""
    errors = _ddgs_errors()
    if errors is None:
        return False
    if isinstance(err, (errors.RatelimitException, errors.TimeoutException)):
        return True
    if isinstance(err, errors.DDGSException):
        return bool(_RATELIMIT_PATTERN.search(str(err)))
    return False


def _image_urls(results: Any, max_images: int) -> list[str]:
    """The `image` field of each result, de-duplicated in order, at most max_images."""
    urls = (r.get("image") for r in results or [] if isinstance(r, Mapping))
    unique = dict.fromkeys(u.strip() for u in urls if isinstance(u, str) and u.strip())
    return list(unique)[:max_images]


def _search(
    query: str,
    max_images: int,
    *,
    cache_dir: Path | str | None,
    client: Any,
    retries: int,
    backoff: float,
    pause: float,
    sleep: Callable[[float], Any],
) -> tuple[list[str], bool]:
    """search_images, also telling whether the network was used (search_categories needs to know)."""
    if max_images < 1:
        # ddgs reads max_results=0 as "no limit", which is never what a caller means.
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    cache = Path(cache_dir) if cache_dir is not None else None
    path = _cache_path(cache, query, max_images) if cache is not None else None
    if path is not None and (cached := _read_cache(path, query, max_images)) is not None:
        return cached, False

    if pause > 0:
        sleep(pause)
    if client is None:
        try:
            from ddgs import DDGS  # created only on a cache miss: a fully cached re-run needs no network
        except ImportError:
            raise SearchFailedError(f"Image search for {query!r} needs the ddgs package, which is not installed: "
                                    f"pip install -r requirements.txt (it pins ddgs). Or {_OWN_PHOTOS}.") from None
        client = DDGS()

    retries = max(0, retries)
    for attempt in range(retries + 1):
        try:
            results = client.images(query, max_results=max_images, safesearch=SAFESEARCH)
        except Exception as err:  # noqa: BLE001 - sorted into retry / empty / fail below
            if _is_ddgs_error(err) and _NO_RESULTS_MARKER in str(err).lower():
                # Not cached, so a re-run searches again: ddgs also reports a silently
                # blocked search this way, and a later try may well find images.
                logger.warning("Image search for %r found no images.", query)
                return [], True
            if _is_offline(err) or not _is_ratelimit(err):
                raise SearchFailedError(_failure_message(query, err, cache)) from err
            if attempt == retries:
                raise SearchFailedError(_failure_message(query, err, cache, attempts=retries + 1)) from err
            wait = backoff * 2**attempt
            logger.info("Image search for %r rate-limited (%r); retrying in %.0f s.", query, err, wait)
            sleep(wait)
            continue
        urls = _image_urls(results, max_images)
        if not urls:
            logger.warning("Image search for %r found no images.", query)
        elif path is not None:
            _write_cache(path, query, max_images, urls)
        return urls, True
    raise AssertionError("unreachable")  # the loop always returns or raises


def search_images(
    query: str,
    max_images: int = 100,
    *,
    cache_dir: Path | str | None = None,
    client: Any = None,
    retries: int = 5,
    backoff: float = 2.0,
    pause: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
) -> list[str]:
    """Image URLs for `query` from DuckDuckGo (via `ddgs`), de-duplicated, cached in `cache_dir`.

    `client` is anything with `.images(query, **kwargs)` (default: a new `ddgs.DDGS()`).
    Rate limits and timeouts are retried `retries` times, waiting `backoff * 2**attempt`
    seconds; `pause` seconds are waited before a network search (never before a cache hit)
    to stay under DuckDuckGo's limits. A query with no results gives `[]` and is not cached.
    Raises SearchFailedError, whose message says what the user can do, when searching fails.
    """
    urls, _ = _search(
        query,
        max_images,
        cache_dir=cache_dir,
        client=client,
        retries=retries,
        backoff=backoff,
        pause=pause,
        sleep=sleep,
    )
    return urls


def search_categories(
    queries: Mapping[str, str] | Sequence[str],
    max_images: int = 100,
    *,
    cache_dir: Path | str | None,
    client: Any = None,
    pause: float = 1.0,
    sleep: Callable[[float], Any] = time.sleep,
    **kw: Any,
) -> dict[str, list[str]]:
    """Image URLs per category: `queries` maps category -> query (a list uses each query as its category).

    Waits `pause` seconds between searches that use the network, not around cache hits.
    Other keyword arguments (retries, backoff) go to `search_images`. If one category fails,
    the ones before it are already cached, so a re-run carries on where it stopped.
    """
    unknown = set(kw) - {"retries", "backoff"}
    if unknown:
        raise TypeError(f"search_categories() got unexpected keyword arguments: {sorted(unknown)}")
    pairs = list(queries.items()) if isinstance(queries, Mapping) else [(q, q) for q in queries]
    found: dict[str, list[str]] = {}
    searched = False  # no pause before the first network search
    for category, query in pairs:
        found[category], used_network = _search(
            query,
            max_images,
            cache_dir=cache_dir,
            client=client,
            retries=kw.get("retries", 5),
            backoff=kw.get("backoff", 2.0),
            pause=pause if searched else 0.0,
            sleep=sleep,
        )
        searched = searched or used_network
    return found
