"""A free TCP port on 127.0.0.1, for the servers tests and benchmarks start (Voila, Dask, moto, http.server)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the OS picks it; another process could still take it before we bind)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
