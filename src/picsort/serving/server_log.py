"""Where a kernel's log goes: the server's log, never the visitor's browser.

Voila starts a kernel per page visit, and ipykernel forwards everything written to file descriptor 2 to the
page as a stream message: a warning or traceback written there would show server paths to every visitor.
ipywidgets does worse with a message from the page it cannot take (a forged `update` with a value of the wrong
type, a malformed message): it sends the page the whole traceback. Those go to the server's log too.
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


# Besides picsort's own: the comm manager's errors (a message for a widget target that does not exist) would
# otherwise reach logging's last resort, the kernel's stderr, and so the page.
_LOGGERS = ("picsort", "py.warnings", "Comm", "ipykernel.comm")


def send_log_to_server() -> None:
    """Route picsort's log, Python warnings and the widgets' errors to the server log (once per process)."""
    _log_widget_message_errors()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if any(getattr(handler, "_picsort_server_log", False) for handler in logger.handlers):
            continue
        handler = logging.StreamHandler(server_log_stream())
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        handler._picsort_server_log = True
        logger.addHandler(handler)
        logger.propagate = False
    logging.captureWarnings(True)


def _log_widget_message_errors() -> None:
    """Make a widget's failure to handle a message from the page a line in the server's log, not a traceback on
    the page: every widget, ipywidgets' own included, since a client can send any widget of its kernel anything."""
    try:
        from ipywidgets import Widget
    except ImportError:  # nothing to guard
        return
    handler = Widget._handle_msg
    if getattr(handler, "_picsort_logged", False):
        return
    # ipywidgets wraps the method (_show_traceback, a closure without functools.wraps) to send the page the
    # traceback of whatever it raises: call the method it wraps, so what it raises comes here instead.
    inner = next((cell.cell_contents for cell in handler.__closure__ or () if callable(cell.cell_contents)), handler)

    def handle_msg(self, msg):
        try:
            return inner(self, msg)
        except Exception:  # noqa: BLE001 - whatever the page sent, the details stay on the server
            logging.getLogger("picsort.widgets").warning("refused a message from the page for a %s widget",
                                                         type(self).__name__, exc_info=True)
            return None

    handle_msg._picsort_logged = True
    Widget._handle_msg = handle_msg
