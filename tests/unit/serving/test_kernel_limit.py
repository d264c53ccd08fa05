"""The server runs no more kernels than its memory holds: past the limit a visit waits for a page to close, then
is told plainly that the server is full, and the server keeps answering.

The limit comes from the memory the process may use (its cgroup's limit, as in a Binder pod, or the machine's);
checked on made-up cgroup files. Then real servers on 127.0.0.1 with a limit of two kernels: `picsort app` asked
for its page eight times at once, and the Binder route asked for kernels through its API.
"""

from __future__ import annotations

import http.client
import json
import time
from concurrent.futures import ThreadPoolExecutor

import psutil

from picsort.serving.kernel_limit import KERNEL_BYTES, SERVER_BYTES, default_max_kernels, memory_limit
from rehearsal.browser import binder_route, picsort_app_route
from tests.conftest import open_page, port_of
from tests.unit.foundation.test_cpu_quota import fake_proc, write

GIB = 2**30
LIMIT_OPTIONS = ("--BoundedKernelManager.max_kernels=2", "--BoundedKernelManager.wait_seconds=1")


# ---- the limit -----------------------------------------------------------------------------------------------
def test_a_pod_of_2_gb_runs_two_kernels(tmp_path):
    write(tmp_path / "cg2" / "pod", {"memory.max": str(2 * GIB)})
    proc = fake_proc(tmp_path, "0::/pod\n", ["30 1 0:26 / {root}/cg2 rw - cgroup2 cgroup2 rw"])
    assert memory_limit(proc) == 2 * GIB
    assert default_max_kernels(proc) == (2 * GIB - SERVER_BYTES) // KERNEL_BYTES == 2


def test_a_limit_higher_up_counts_and_no_limit_means_the_machines_memory(tmp_path):
    write(tmp_path / "cg1" / "user", {"memory.limit_in_bytes": str(GIB)})
    write(tmp_path / "cg1" / "user" / "session", {"memory.limit_in_bytes": str(2**63 - 4096)})  # v1: no limit
    proc = fake_proc(tmp_path, "4:memory:/user/session\n",
                     ["31 1 0:27 / {root}/cg1 rw - cgroup cgroup rw,memory"])
    assert memory_limit(proc) == GIB
    assert default_max_kernels(proc) == 1  # at least one, even where one does not fit
    (tmp_path / "none").mkdir()
    unlimited = fake_proc(tmp_path / "none", "0::/\n", [])
    assert memory_limit(unlimited) == psutil.virtual_memory().total


# ---- real servers ----------------------------------------------------------------------------------------
def visit(port: int) -> tuple[int, str]:
    """(status, the kernel id or the error page's text) of one visit to the app's page."""
    status, kernel_id = open_page(port)
    if status == 200:
        return status, kernel_id
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", "/")
    return status, connection.getresponse().read().decode()


def test_eight_visits_at_once_start_two_kernels_and_the_rest_are_told_the_server_is_full(tmp_path):
    with picsort_app_route(tmp_path, "--MappingKernelManager.cull_idle_timeout=0", *LIMIT_OPTIONS) as app:
        port = port_of(app)
        voila, = psutil.Process(app.process.pid).children()
        with ThreadPoolExecutor(8) as pool:
            visits = list(pool.map(lambda _: visit(port), range(8)))
        statuses = sorted(status for status, _ in visits)
        assert statuses == [200, 200] + [503] * 6, app.log_tail()
        refusal = next(text for status, text in visits if status == 503)
        assert "Server full: 2 pages open" in refusal and "try again in a minute" in refusal
        assert "cdn" not in refusal.lower()  # the error page is offline too
        assert len(voila.children()) == 2  # one process per kernel

        # A page closing (the tab-close beacon) makes room for the next visit, which waits for it.
        kernel_id = next(text for status, text in visits if status == 200)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        xsrf = "5ea1ed" * 4  # as the page sends it: the same token in a cookie and a header
        connection.request("POST", f"/voila/api/shutdown/{kernel_id}",
                           headers={"Cookie": f"_xsrf={xsrf}", "X-XSRFToken": xsrf})
        assert connection.getresponse().status == 204
        status, _ = visit(port)
        assert status == 200, app.log_tail()


def test_the_binder_route_starts_no_more_kernels_than_its_limit(tmp_path):
    with binder_route(tmp_path, wrap=lambda command: [*command, *LIMIT_OPTIONS]) as jupyter:
        port = port_of(jupyter)

        def start_kernel() -> tuple[int, dict]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            connection.request("POST", "/api/kernels", body="{}",
                               headers={"Authorization": f"token {jupyter.token}"})
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")

        assert [start_kernel()[0] for _ in range(2)] == [201, 201]
        started = time.monotonic()
        status, reply = start_kernel()
        assert status == 503 and "Server full" in reply.get("message", "") + reply.get("reason", ""), reply
        assert time.monotonic() - started < 10  # waited its second, then answered
