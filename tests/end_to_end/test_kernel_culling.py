"""Kernels of closed tabs go away; an open tab's kernel stays, on both ways of serving the app.

Each kernel holds the model and every photo of its visit (hundreds of MB), and a Binder pod has 2 GB: a
closed tab must not keep one. The server's culler (voila.json, binder/jupyter_server_config.json) shuts
down kernels that have had no page connected and nothing to do for a minute; a connected tab, however
idle, is never culled. On the Binder route a tab closed normally loses its kernel at once too: Voila's
page sends a beacon to /voila/api/shutdown on `beforeunload`, which binder/voila.py makes work. Plain
`voila app.ipynb` refuses that beacon (no `_xsrf` cookie, voila-dashboards/voila#1458) and relies on the culler.
"""

from __future__ import annotations

import json
import time

import pytest

from rehearsal.browser import (
    BINDER,
    EXAMPLES,
    REPO,
    binder_route,
    browser,
    page_kernel_id,
    upload,
    voila_route,
    wait_for_app,
    wait_for_cards,
)

pytestmark = pytest.mark.slow  # waits for the culler: about 2 min a route

CONFIGS = {"voila": REPO / "voila.json", "binder": BINDER / "jupyter_server_config.json"}
ROUTES = {"voila": voila_route, "binder": binder_route}
BEACON_WORKS = {"voila": False, "binder": True}
SHUTDOWN_SECONDS = 30  # the beacon's shutdown: a kernel takes a few seconds to stop on a busy machine


def culling(route: str) -> dict:
    return json.loads(CONFIGS[route].read_text())["MappingKernelManager"]


def wait_until_gone(server, kernel_id: str, seconds: float) -> float:
    """Seconds until the server no longer lists the kernel; fails after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if server.kernel(kernel_id) is None:
            return time.monotonic() - started
        time.sleep(1)
    pytest.fail(f"kernel {kernel_id} still running {seconds:.0f} s after its tab closed: {server.kernel(kernel_id)}")


@pytest.mark.parametrize("route", ["voila", "binder"])
def test_closed_tabs_lose_their_kernels_and_an_open_idle_tab_keeps_its_own(route, chromium, tmp_path):
    settings = culling(route)
    # Within about a minute of a tab dying; a connected kernel is never culled, busy ones wait till done.
    assert settings["cull_connected"] is False and settings["cull_busy"] is False
    cull_within = settings["cull_idle_timeout"] + settings["cull_interval"] + 15  # + a slow shutdown
    assert cull_within <= 90

    with ROUTES[route](tmp_path) as server, browser(chromium) as chrome:
        context = chrome.new_context()
        pages = {}
        for name in ("open", "closed", "crashed"):  # the tab that stays is loaded first: it is idle longest
            page = context.new_page()
            page.goto(server.page_url)
            wait_for_app(page)
            pages[name] = page
            if name == "open":
                open_since = time.monotonic()
        kernels = {name: page_kernel_id(page) for name, page in pages.items()}
        assert len(set(kernels.values())) == 3
        assert all(server.kernel(kernel) for kernel in kernels.values())

        # Closed as a person closes a tab: the page's unload handler asks for its kernel's shutdown.
        pages["closed"].close(run_before_unload=True)
        wait_until_gone(server, kernels["closed"], SHUTDOWN_SECONDS if BEACON_WORKS[route] else cull_within)
        # Gone without unload handlers (a crashed or discarded tab): the culler's job.
        pages["crashed"].close(run_before_unload=False)
        closed_at = time.monotonic()
        wait_until_gone(server, kernels["crashed"], cull_within)
        print(f"{route}: crashed tab's kernel culled {time.monotonic() - closed_at:.0f} s after the tab closed")

        # The open tab has now been open longer than the cull timeout, with a culler pass since, and lives. (Its
        # page pings the kernel to notice when the session ends, so it is never idle for long: what keeps it is
        # its connection, which the culler leaves alone.)
        time.sleep(max(0.0, settings["cull_interval"] + 1 - (time.monotonic() - closed_at)))
        model = server.kernel(kernels["open"])
        assert model is not None, "the open tab's kernel was shut down"
        assert time.monotonic() - open_since > settings["cull_idle_timeout"], model
        assert model["connections"] >= 1, model
        # ... and still answers.
        upload(pages["open"], [EXAMPLES / "grizzly-1.jpg"])
        wait_for_cards(pages["open"], 1)
        assert "grizzly-1.jpg" in pages["open"].locator(".picsort-card").first.inner_text()
        context.close()
