"""The websocket between a page and its kernel, as both ways of serving the app run it: v1 protocol only, and
every frame checked before it is read.

`voila.json` (Voila.kernel_websocket_connection_class, for `picsort app`) and
`binder/jupyter_server_config.json` (ServerApp.kernel_websocket_connection_class, for the Binder route) name
`KernelWebsocketConnection`. What it closes, in jupyter_server 2.21 and Voila 0.5.13:

- A client that does not offer the `v1.kernel.websocket.jupyter.org` subprotocol gets the legacy protocol.
  Voila's handler (`VoilaKernelWebsocketHandler.write_message`) reads every binary message it sends as v1, so
  the first 8 bytes of a legacy message with buffers become an offset count: the server spins at 100 % CPU,
  growing, and answers nothing else. jupyter_server's legacy reader (`deserialize_binary_message`) builds a
  format string as long as a count the client chooses, too. Voila's page speaks v1 (JupyterLab 4's services),
  so other clients are refused at the handshake.
- `deserialize_msg_from_ws_v1` trusts the offset count in a frame's first 8 bytes: 16 bytes claiming 2**62
  offsets spin the server the same way. `check_v1_frame` reads the count and offsets within the frame's
  length first; a frame that does not fit closes its websocket with the reason.
- Nothing bounds the websockets one kernel takes: each holds its own zmq sockets (1,000 to one kernel: +94 MB
  of server and 2,200 file descriptors). A page needs one (two while it reloads), so a kernel takes at most
  MAX_CONNECTIONS; more are refused at the handshake (503).
"""

from __future__ import annotations

import struct
from collections import Counter

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection
from tornado import web

__all__ = ["MAX_CONNECTIONS", "V1_PROTOCOL", "FrameError", "KernelWebsocketConnection", "check_v1_frame"]

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
# A v1 frame's parts: the channel name, then header, parent header, metadata and content, then any buffers.
MESSAGE_PARTS = 5
# The page sends one photo per message and widgets a few buffers; the cap keeps a frame of millions of empty
# parts (all within its length) from costing the server a Python object and a zmq frame each.
MAX_BUFFERS = 1024
INVALID_PAYLOAD = 1007  # the websocket close code for data that does not fit its protocol (RFC 6455)
MAX_CONNECTIONS = 8  # websockets to one kernel at once


class FrameError(ValueError):
    """A websocket frame that is not a well-formed v1 kernel message; the text says what is wrong."""


def check_v1_frame(frame: bytes | str) -> tuple[int, ...]:
    """The offsets of a v1 frame's parts, once they are known to fit in it; FrameError otherwise.

    Layout: an 8-byte little-endian count n, n 8-byte offsets, then the parts. Part i runs from offset i to
    offset i + 1, so there is one offset more than parts.
    """
    if not isinstance(frame, bytes):
        raise FrameError("a text frame; the v1 kernel protocol sends binary frames only")
    size = len(frame)
    if size < 8:
        raise FrameError(f"a {size}-byte frame, shorter than its 8-byte offset count")
    count = int.from_bytes(frame[:8], "little")
    most = MESSAGE_PARTS + MAX_BUFFERS + 1
    if not MESSAGE_PARTS + 1 <= count <= most:
        raise FrameError(f"{count} offsets; a kernel message has {MESSAGE_PARTS + 1} to {most}")
    table_end = 8 * (count + 1)
    if table_end > size:
        raise FrameError(f"{count} offsets need {table_end} bytes, the frame has {size}")
    offsets = struct.unpack_from(f"<{count}Q", frame, 8)
    if offsets[0] < table_end:
        raise FrameError(f"the first part starts at byte {offsets[0]}, inside the offset table ({table_end} bytes)")
    for index, (start, end) in enumerate(zip(offsets, offsets[1:])):
        if end < start:
            raise FrameError(f"part {index} ends at byte {end}, before it starts ({start})")
    if offsets[-1] > size:
        raise FrameError(f"the last part ends at byte {offsets[-1]}, past the frame's end ({size})")
    try:
        frame[offsets[0]:offsets[1]].decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("the channel name is not UTF-8") from None
    return offsets


class KernelWebsocketConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, speaking only v1 and reading only frames that fit."""

    # Not configurable: the legacy protocol ("") is what Voila misreads. The handler's select_subprotocol
    # reads this, so a client that offers v1 always gets it.
    kernel_ws_protocol = V1_PROTOCOL
    # Websockets admitted to each kernel id and not yet closed, counted from the handshake on (jupyter_server
    # counts them only once open, so a burst of handshakes would all pass its count).
    _admitted: Counter = Counter()

    async def prepare(self):
        """Refuse, at the handshake, a client that would get the legacy protocol, and one more websocket to a
        kernel that has MAX_CONNECTIONS."""
        handler = self.websocket_handler
        header = handler.request.headers.get("Sec-WebSocket-Protocol", "")
        offered = [name.strip() for name in header.split(",") if name.strip()]
        if V1_PROTOCOL not in offered:
            problem = (f"this server speaks only the {V1_PROTOCOL} kernel protocol; the client offered "
                       f"{', '.join(offered) or 'no subprotocol'}")
            self.log.warning("Refused a kernel websocket from %s: %s", handler.request.remote_ip, problem)
            # The answer is written here: HTTPError's error page fails to render in standalone Voila.
            handler.set_status(400)
            handler.set_header("Content-Type", "text/plain; charset=UTF-8")
            raise web.Finish(problem + "\n")
        if self._admitted[self.kernel_id] >= MAX_CONNECTIONS:
            self.log.warning("Refused a kernel websocket from %s: kernel %s has %d already", handler.request.remote_ip,
                             self.kernel_id, MAX_CONNECTIONS)
            handler.set_status(503)
            handler.set_header("Content-Type", "text/plain; charset=UTF-8")
            raise web.Finish(f"this kernel has {MAX_CONNECTIONS} connections already, the most it takes\n")
        self._admitted[self.kernel_id] += 1
        self._counted = True
        try:
            await super().prepare()
        except BaseException:
            self._release()
            raise

    def disconnect(self):
        self._release()
        super().disconnect()

    def _release(self) -> None:
        if getattr(self, "_counted", False):
            self._counted = False
            self._admitted[self.kernel_id] -= 1
            if self._admitted[self.kernel_id] <= 0:
                del self._admitted[self.kernel_id]

    def handle_incoming_message(self, incoming_msg: bytes | str) -> None:
        """Pass a frame on to the kernel once it is known to fit; close the websocket on one that does not."""
        try:
            check_v1_frame(incoming_msg)
        except FrameError as problem:
            handler = self.websocket_handler
            self.log.warning("Closing the kernel websocket from %s: %s", handler.request.remote_ip, problem)
            handler.close(INVALID_PAYLOAD, str(problem).encode("utf-8")[:123].decode("utf-8", "ignore"))
            return
        super().handle_incoming_message(incoming_msg)
