"""Where a kernel's log goes: the server's log, never the visitor's browser.

Voila starts a kernel per page visit, and ipykernel forwards everything written to file descriptor 2 to the
page as a stream message: a warning or traceback written there would show server paths to every visitor.
"""

from __future__ import annotations

import io
import logging
import sys

__all__ = ["send_log_to_server", "server_log_stream"]


def server_log_stream():
    """The stream that reaches the server's log and never the visitor's browser.

    In a kernel, ipykernel forwards everything written to file descriptor 2 (`sys.__stderr__` included) to
    the browser as a stream message; it keeps a copy of the original descriptor for its own log, and so do we.
    """
    original = getattr(sys.stderr, "_original_stdstream_copy", None)
    if original is not None:
        return io.TextIOWrapper(io.FileIO(original, "w", closefd=False), write_through=True)
    return sys.__stderr__


def send_log_to_server() -> None:
    """Route picsort's log and Python warnings to the server log (once per process)."""
    for name in ("picsort", "py.warnings"):
        logger = logging.getLogger(name)
        if any(getattr(handler, "_picsort_server_log", False) for handler in logger.handlers):
            continue
        handler = logging.StreamHandler(server_log_stream())
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        handler._picsort_server_log = True
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)
