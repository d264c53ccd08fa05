"""voila_server.py (`picsort app`): with --lan, an address with a token to hand out and nothing without it; a
SIGTERM to picsort stops Voila and its kernels and frees the port. Real servers on this machine."""

from __future__ import annotations

import os
import re
import signal

import psutil

from rehearsal.browser import picsort_app_route
from tests.conftest import get, listening, open_page, port_of


def test_lan_prints_an_address_with_a_token_and_refuses_requests_without_it(tmp_path):
    with picsort_app_route(tmp_path, "--lan") as app:
        port = port_of(app)
        printed = re.search(rf"http://\S+:{port}/\?token=([0-9a-f]+)", app.log.read_text())
        assert printed, app.log_tail()
        token = printed.group(1)
        assert len(token) >= 32
        assert get(port, "/")[0] in (302, 403)  # to the login page, not the app
        assert get(port, "/?token=wrong")[0] in (302, 403)
        assert get(port, "/api/kernels/00000000-0000-0000-0000-000000000000")[0] == 403
        # With it, from any host name (people type the machine's address).
        assert get(port, f"/api/kernels/00000000-0000-0000-0000-000000000000?token={token}",
                   {"Host": f"192.0.2.7:{port}"})[0] == 404
        status, kernel_id = open_page(port, f"/?token={token}")
        assert status == 200 and kernel_id


def test_sigterm_to_picsort_stops_voila_and_its_kernels(tmp_path):
    with picsort_app_route(tmp_path) as app:
        status, kernel_id = open_page(port_of(app))
        assert status == 200 and kernel_id
        family = psutil.Process(app.process.pid).children(recursive=True)
        assert any(kernel_id in " ".join(member.cmdline()) for member in family), "no kernel process found"
        os.kill(app.process.pid, signal.SIGTERM)  # as `kill PID` does: picsort alone, not its process group
        assert app.process.wait(timeout=30) == 128 + signal.SIGTERM
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"still running after picsort stopped: {[member.cmdline() for member in alive]}"
        assert not listening(port_of(app))


def test_sigint_stops_picsort_app_started_with_sigint_ignored_as_a_background_job(tmp_path):
    """A shell starts `picsort app &` (in a script) or `nohup picsort app &` with SIGINT ignored; a SIGINT (kill
    -INT, or Ctrl-C once it is brought to the foreground) must still stop it and its kernels."""
    import sys

    ignoring = tmp_path / "python-ignoring-sigint"
    ignoring.write_text(f"#!/bin/sh\ntrap '' INT\nexec {sys.executable} \"$@\"\n")  # as the shell does for `&`
    ignoring.chmod(0o755)
    with picsort_app_route(tmp_path, python=str(ignoring)) as app:
        status, kernel_id = open_page(port_of(app))
        assert status == 200 and kernel_id
        family = psutil.Process(app.process.pid).children(recursive=True)
        assert any(kernel_id in " ".join(member.cmdline()) for member in family), "no kernel process found"
        os.kill(app.process.pid, signal.SIGINT)
        assert app.process.wait(timeout=30) == 130
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"still running after picsort stopped: {[member.cmdline() for member in alive]}"
        assert not listening(port_of(app))


def test_template_file_paths_that_name_no_file_answer_404_never_500(tmp_path):
    """Template files are served without the token (a page's styles load before it has one): a path that names no
    file is a 404, not an error inside Voila's handler (500 and a traceback for any client)."""
    with picsort_app_route(tmp_path, "--lan") as app:
        port = port_of(app)
        for path in ("/voila/templates/picsort/static/", "/voila/templates/picsort/static/..",
                     "/voila/templates/lab/static/", "/voila/templates/picsort", "/voila/templates/picsort/x/y",
                     "/voila/templates/%2e%2e/static/x"):
            assert get(port, path)[0] == 404, path
        assert get(port, "/voila/templates/picsort/static/index.css")[0] == 200  # the page's own still served
        assert "Traceback" not in app.log.read_text()


def test_the_voila_command_listens_on_this_machine_only_unless_lan_asks_for_a_token():
    from picsort.serving.voila_server import voila_command

    alone = voila_command(["--debug"], lan=False, port=8899)
    assert "--port=8899" in alone and alone[-1] == "--debug"
    assert not any("0.0.0.0" in part or part == "--token" for part in alone)
    shared = voila_command([], lan=True, port=8899)
    assert "--Voila.ip=0.0.0.0" in shared and "--token" in shared and "--Voila.port_retries=0" in shared
