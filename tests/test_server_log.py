"""picsort's log and Python's warnings go to the server's log, never to the visitor's page."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_a_kernels_warnings_reach_the_server_log_and_not_the_page():
    # In a real kernel (ipykernel), as Voila starts one: what the page would get is the kernel's stream output.
    code = textwrap.dedent('''
        from jupyter_client.manager import start_new_kernel
        km, kc = start_new_kernel()
        try:
            kc.execute_interactive(
                "import logging, warnings\\n"
                "from picsort.server_log import send_log_to_server\\n"
                "send_log_to_server()\\n"
                "logging.getLogger('picsort.app').warning('SERVER-ONLY log line')\\n"
                "warnings.warn('SERVER-ONLY warning')\\n"
                "print('to the page')",
                output_hook=lambda msg: print("PAGE:", msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None,
                timeout=120)
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    page = "".join(line for line in done.stdout.splitlines(keepends=True) if line.startswith("PAGE:"))
    assert "to the page" in page
    assert "SERVER-ONLY" not in page
    assert "SERVER-ONLY log line" in done.stderr and "SERVER-ONLY warning" in done.stderr  # the kernel's own stderr
