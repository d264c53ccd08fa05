"""picsort's log and Python's warnings go to the server's log, never to the visitor's page."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def page_and_server_log(code: str) -> tuple[str, str]:
    """Run `code` (which drives a real kernel and prints what reaches the page as lines starting "PAGE:"); returns
    (those lines, the process's stderr, where the kernel's server log goes)."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return "".join(line for line in done.stdout.splitlines(keepends=True) if line.startswith("PAGE:")), done.stderr

def test_a_kernels_warnings_reach_the_server_log_and_not_the_page():
    # In a real kernel (ipykernel), as Voila starts one: what the page would get is the kernel's stream output.
    code = textwrap.dedent('''
        from jupyter_client.manager import start_new_kernel
        km, kc = start_new_kernel()
        try:
            kc.execute_interactive(
                "import logging, warnings\\n"
                "from picsort.serving.server_log import send_log_to_server\\n"
                "send_log_to_server()\\n"
                "logging.getLogger('picsort.app.page').warning('SERVER-ONLY log line')\\n"
                "warnings.warn('SERVER-ONLY warning')\\n"
                "print('to the page')",
                output_hook=lambda msg: print("PAGE:", msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
                timeout=120)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    ''')
    page, server_log = page_and_server_log(code)
    assert "to the page" in page
    assert "SERVER-ONLY" not in page
    assert "SERVER-ONLY log line" in server_log and "SERVER-ONLY warning" in server_log  # the kernel's own stderr


def test_a_forged_widget_update_of_the_wrong_type_sends_the_page_no_traceback():
    """A client may send any `update` to any widget of its kernel (here a Text's value as a number): ipywidgets
    refuses it with an exception the comm manager logs, and a log line on the kernel's stderr would reach the
    page, traceback and server paths included. It must go to the server's log only."""
    code = textwrap.dedent('''
        import queue
        import time
        from jupyter_client.manager import start_new_kernel
        km, kc = start_new_kernel()
        try:
            seen = []
            kc.execute_interactive(
                "import ipywidgets\\n"
                "from picsort.serving.server_log import send_log_to_server\\n"
                "send_log_to_server()\\n"
                "box = ipywidgets.Text()\\n"
                "print('MODEL', box.model_id)",
                output_hook=lambda msg: seen.append(msg["content"].get("text", "")), timeout=120)
            model_id = "".join(seen).split("MODEL ")[1].split()[0]
            forged = kc.session.msg("comm_msg", {"comm_id": model_id,
                                                 "data": {"method": "update", "state": {"value": 12345}}})
            kc.shell_channel.send(forged)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:  # what the kernel sends every page of it (iopub)
                try:
                    msg = kc.get_iopub_msg(timeout=0.5)
                except queue.Empty:
                    continue
                if msg["msg_type"] in ("stream", "error"):
                    print("PAGE:", repr(msg["content"]))
            kc.execute_interactive("print('value', repr(box.value))", timeout=60,
                                   output_hook=lambda msg: print("PAGE:", repr(msg["content"]))
                                   if msg["msg_type"] in ("stream", "error") else None)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    ''')
    page, server_log = page_and_server_log(code)
    assert "value ''" in page  # the forged value was not taken, and the kernel still answers
    assert "Traceback" not in page and "TraitError" not in page, page
    assert "TraitError" in server_log  # the details are in the server's log
