"""Tests for picsort.photos.search, with a stand-in search client and a fake sleep (nothing really waits)."""

import json
import socket
import subprocess
import sys

import pytest
from ddgs.exceptions import DDGSException, RatelimitException, TimeoutException

from picsort.photos.search import SearchFailedError, search_categories, search_images


class StandInClient:
    """Has DDGS's `.images(query, **kwargs)`: raises the given errors in turn, then returns canned results."""

    def __init__(self, results=None, errors=()):
        self.results = results if results is not None else {}
        self.errors = list(errors)
        self.calls = []

    def images(self, query, **kwargs):
        self.calls.append((query, kwargs))
        if self.errors:
            raise self.errors.pop(0)
        urls = self.results.get(query, [f"https://img.example/{query}/{i}.jpg" for i in range(3)])
        return [{"title": f"result {i}", "image": url, "thumbnail": "t"} for i, url in enumerate(urls)]


class MustNotBeCalled:
    def images(self, query, **kwargs):
        raise AssertionError(f"the client was called for {query!r}; it should have been a cache hit")


class FakeSleep:
    def __init__(self):
        self.waits = []

    def __call__(self, seconds):
        self.waits.append(seconds)


@pytest.fixture
def sleep():
    return FakeSleep()


def test_success_first_time(tmp_path, sleep):
    client = StandInClient({"grizzly bear": ["https://a/1.jpg", "https://a/2.png"]})
    urls = search_images("grizzly bear", 50, cache_dir=tmp_path, client=client, sleep=sleep, pause=0)
    assert urls == ["https://a/1.jpg", "https://a/2.png"]
    assert len(client.calls) == 1
    query, kwargs = client.calls[0]
    assert query == "grizzly bear" and kwargs["max_results"] == 50 and "safesearch" in kwargs
    assert sleep.waits == []


def test_retries_after_rate_limits_then_succeeds(tmp_path, sleep):
    errors = [RatelimitException("202 Ratelimit"), TimeoutException("timed out"),
              DDGSException("https://duckduckgo.com 403 Forbidden")]
    client = StandInClient(errors=errors)
    urls = search_images("teddy bear", 10, cache_dir=tmp_path, client=client, sleep=sleep, pause=0, backoff=2.0)
    assert len(urls) == 3
    assert len(client.calls) == 4  # three failures, then success
    assert sleep.waits == [2.0, 4.0, 8.0]  # backoff * 2**attempt


def test_pause_before_network_search(tmp_path, sleep):
    search_images("black bear", cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=1.5)
    assert sleep.waits == [1.5]


def test_fails_after_last_retry_with_advice(tmp_path, sleep):
    client = StandInClient(errors=[RatelimitException("202 Ratelimit")] * 10)
    with pytest.raises(SearchFailedError) as info:
        search_images("brown bear", cache_dir=tmp_path, client=client, sleep=sleep, pause=0, retries=3, backoff=1.0)
    message = str(info.value)
    assert "brown bear" in message
    assert "rate-limiting" in message and "4 attempts" in message and "Wait a few minutes and re-run" in message
    assert "SOURCE" in message and "PICSORT_SOURCE" in message and "photos/grizzly/1.jpg" in message
    assert isinstance(info.value, RuntimeError)
    assert isinstance(info.value.__cause__, RatelimitException)
    assert len(client.calls) == 4  # the first try + 3 retries
    assert sleep.waits == [1.0, 2.0, 4.0]
    assert list(tmp_path.iterdir()) == []  # nothing cached for a failed search


def test_other_errors_fail_at_once_with_advice_and_cause(tmp_path, sleep):
    boom = ValueError("unexpected response")
    client = StandInClient(errors=[boom, boom])
    with pytest.raises(SearchFailedError) as info:
        search_images("panda", cache_dir=tmp_path, client=client, sleep=sleep, pause=0)
    assert "panda" in str(info.value) and "unexpected answer" in str(info.value) and "PICSORT_SOURCE" in str(info.value)
    assert info.value.__cause__ is boom
    assert len(client.calls) == 1 and sleep.waits == []

    client = StandInClient(errors=[DDGSException("ConnectError: dns error")])
    with pytest.raises(SearchFailedError):
        search_images("panda", cache_dir=tmp_path, client=client, sleep=sleep, pause=0)
    assert len(client.calls) == 1  # a generic ddgs error that is not a rate limit is not retried


def test_cache_hit_does_not_call_client(tmp_path, sleep):
    first = search_images("koala", 20, cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=0)
    again = search_images("koala", 20, cache_dir=tmp_path, client=MustNotBeCalled(), sleep=sleep, pause=5)
    assert again == first
    assert sleep.waits == []  # no pause before a cache hit either
    [cache_file] = tmp_path.glob("*.json")
    stored = json.loads(cache_file.read_text())
    assert stored["query"] == "koala" and stored["urls"] == first
    assert not list(tmp_path.glob(".*"))  # no temp file left behind


def test_different_max_images_is_a_different_cache_entry(tmp_path, sleep):
    search_images("otter", 20, cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=0)
    client = StandInClient()
    search_images("otter", 40, cache_dir=tmp_path, client=client, sleep=sleep, pause=0)
    assert len(client.calls) == 1 and client.calls[0][1]["max_results"] == 40
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_corrupt_cache_file_is_a_miss(tmp_path, sleep):
    search_images("seal", 20, cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=0)
    [cache_file] = tmp_path.glob("*.json")
    cache_file.write_text("{not json")
    client = StandInClient()
    assert len(search_images("seal", 20, cache_dir=tmp_path, client=client, sleep=sleep, pause=0)) == 3
    assert len(client.calls) == 1


def test_urls_deduplicated_in_order(tmp_path, sleep):
    urls = ["https://a/1.jpg", "https://a/2.jpg", "https://a/1.jpg", "https://a/3.jpg", "https://a/2.jpg"]
    client = StandInClient({"fox": urls})
    assert search_images("fox", cache_dir=tmp_path, client=client, sleep=sleep, pause=0) == [
        "https://a/1.jpg",
        "https://a/2.jpg",
        "https://a/3.jpg",
    ]


def test_no_results_is_empty_list_and_not_cached(tmp_path, sleep):
    client = StandInClient({"zzzz": []})
    assert search_images("zzzz", cache_dir=tmp_path, client=client, sleep=sleep, pause=0) == []
    # ddgs itself reports "nothing found" as an exception, not an empty list.
    client = StandInClient(errors=[DDGSException("No results found.")])
    assert search_images("zzzz", cache_dir=tmp_path, client=client, sleep=sleep, pause=0) == []
    assert list(tmp_path.iterdir()) == []
    assert sleep.waits == []


def test_works_without_cache_dir(sleep):
    client = StandInClient()
    search_images("wolf", client=client, sleep=sleep, pause=0)
    search_images("wolf", client=client, sleep=sleep, pause=0)
    assert len(client.calls) == 2


def test_categories_pause_only_between_network_queries(tmp_path, sleep):
    search_images("grizzly bear", 30, cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=0)
    client = StandInClient()
    queries = {"grizzly": "grizzly bear", "black": "black bear", "teddy": "teddy bear"}
    found = search_categories(queries, 30, cache_dir=tmp_path, client=client, pause=1.0, sleep=sleep)
    assert list(found) == ["grizzly", "black", "teddy"]
    assert all(len(urls) == 3 for urls in found.values())
    assert [query for query, _ in client.calls] == ["black bear", "teddy bear"]  # grizzly was cached
    assert sleep.waits == [1.0]  # between black and teddy; none before the first search or the cache hit

    again = search_categories(queries, 30, cache_dir=tmp_path, client=MustNotBeCalled(), pause=1.0, sleep=sleep)
    assert again == found
    assert sleep.waits == [1.0]


def test_categories_from_list_and_retry_options_passed_on(tmp_path, sleep):
    client = StandInClient(errors=[RatelimitException("ratelimit")])
    found = search_categories(["cat", "dog"], 5, cache_dir=tmp_path, client=client, pause=0.5, sleep=sleep, backoff=3.0)
    assert list(found) == ["cat", "dog"]
    assert sleep.waits == [3.0, 0.5]  # cat's retry backoff, then the pause before dog
    with pytest.raises(TypeError):
        search_categories(["cat"], 5, cache_dir=tmp_path, client=client, sleep=sleep, colour="red")


def test_without_ddgs_importing_works_and_a_search_says_what_to_install(tmp_path, sleep):
    """Binder installs no ddgs (binder/requirements.txt): the app and picsort teach import this module there."""
    code = """
import sys
sys.modules["ddgs"] = sys.modules["ddgs.exceptions"] = None  # import ddgs raises ImportError, as if not installed
from picsort.photos.search import SearchFailedError, search_images
class Offline:
    def images(self, *args, **kwargs):
        raise ConnectionError("no network")
for client in (Offline(), None):
    try:
        search_images("lynx", 5, client=client, pause=0)
    except SearchFailedError as error:
        print(error)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    offline, missing = result.stdout.splitlines()
    assert "cannot reach DuckDuckGo" in offline
    assert "needs the ddgs package, which is not installed: pip install -r requirements.txt" in missing


def test_cache_hit_needs_no_ddgs_client(tmp_path, sleep, monkeypatch):
    import ddgs

    search_images("lynx", 10, cache_dir=tmp_path, client=StandInClient(), sleep=sleep, pause=0)

    class NoNetwork:
        def __init__(self, *args, **kwargs):
            raise AssertionError("a cache hit must not create a DDGS client")

    monkeypatch.setattr(ddgs, "DDGS", NoNetwork)
    assert len(search_images("lynx", 10, cache_dir=tmp_path, sleep=sleep)) == 3
    assert len(search_categories(["lynx"], 10, cache_dir=tmp_path, sleep=sleep)["lynx"]) == 3


def test_offline_says_so_and_how_to_train_without_search(tmp_path, sleep):
    """A real ddgs client whose every connection is refused (a proxy on a closed local port), as offline."""
    from ddgs import DDGS

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    client = DDGS(proxy=f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(SearchFailedError) as info:
        search_images("grizzly bear", cache_dir=tmp_path, client=client, sleep=sleep, pause=0)
    message = str(info.value)
    assert "cannot reach DuckDuckGo" in message and "offline" in message
    assert "Re-running will not help until it is online" in message and "Wait a few minutes" not in message
    assert "SOURCE" in message and "PICSORT_SOURCE" in message and "one sub-folder of photos per category" in message
    assert "bing" not in message.lower()  # ddgs falls back to Bing; the notebook speaks of DuckDuckGo
    assert sleep.waits == []  # offline is not retried


def test_a_dns_failure_is_offline_not_a_rate_limit(tmp_path, sleep):
    error = DDGSException("DNSError: error sending request for url (https://duckduckgo.com/?q=x) > error resolving DNS")
    with pytest.raises(SearchFailedError, match="cannot reach DuckDuckGo"):
        search_images("x", cache_dir=tmp_path, client=StandInClient(errors=[error]), sleep=sleep, pause=0)
    assert sleep.waits == []
