"""Every route to the app works without the internet: in Chromium, with every request the page makes recorded,
no request goes anywhere but the machine serving it, and the app is on the page and answers.

The three routes (rehearsal.browser): `picsort app`, `voila app.ipynb` run in the repository (voila.json),
and the Binder route (jupyter server with the voila extension, set up by binder/postBuild in temporary Jupyter
folders). Known CDN loads this guards against: the Font Awesome stylesheets of Voila's lab template, and the
MathJax script Voila's page loads from cdnjs unless the server's settings name no MathJax.
"""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import pytest

from rehearsal.browser import (
    CARD,
    EXAMPLES,
    PAGE_SECONDS,
    binder_route,
    browser,
    off_the_machine,
    picsort_app_route,
    record_requests,
    voila_route,
    wait_for_app,
    wait_for_cards,
)

pytestmark = pytest.mark.slow  # Chromium on each of the three routes

ROUTES = {"picsort app": picsort_app_route, "voila app.ipynb": voila_route, "binder route": binder_route}
EXAMPLE_COUNT = len([path for path in EXAMPLES.iterdir() if path.suffix == ".jpg"])


@pytest.mark.parametrize("route", ROUTES)
def test_the_page_makes_no_request_off_the_machine(route, chromium, tmp_path):
    with ROUTES[route](tmp_path) as server, browser(chromium) as launched:
        context = launched.new_context()
        requests = record_requests(context)
        page = context.new_page()
        page.goto(server.page_url, timeout=PAGE_SECONDS * 1000)
        wait_for_app(page)
        page.locator(".picsort-examples").click()
        wait_for_cards(page, EXAMPLE_COUNT)
        page.wait_for_load_state("networkidle")
        assert page.locator(".picsort-drop").is_visible()
        assert page.locator(CARD).count() == EXAMPLE_COUNT
        places = Counter(f"{urlsplit(url).scheme}://{urlsplit(url).hostname or ''}" for url in requests)
        print(f"{route}: {len(requests)} requests: {dict(places)}")
        assert len(requests) > 10  # the recording works: the page's own scripts and styles are in it
        assert off_the_machine(requests) == []
