"""No client can take the server down, and only local names reach the local server.

Real servers on 127.0.0.1 (`picsort app`'s Voila, and the Binder route: jupyter server with the voila
extension), real websocket clients (tornado's) sending what an attacker would: a legacy-protocol client, v1
frames whose offsets do not fit, requests and websockets for another host name. After each attack the server
must answer a new request within 3 s, its memory never 100 MB above what it was when the attack began.
picsort.serving.kernel_websocket and picsort.serving.voila_server are what keep these.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import struct
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

import psutil
import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClosedError, websocket_connect

from picsort.photos.images import MAX_UPLOAD_BYTES
from picsort.serving.kernel_websocket import INVALID_PAYLOAD, MAX_CONNECTIONS, V1_PROTOCOL, check_v1_frame
from rehearsal.browser import REPO, binder_route, picsort_app_route
from tests.conftest import get, open_page, port_of

ANSWER_SECONDS = 3
GROWTH_LIMIT = 100 * 2**20


# ---- servers -------------------------------------------------------------------------------------------
@dataclass
class Running:
    """A server under attack: where it is, its process (for memory), a kernel, the token if it has one."""

    port: int
    process: psutil.Process
    kernel_id: str
    token: str = ""

    def path(self, path: str) -> str:
        joiner = "&" if "?" in path else "?"
        return f"/{path}{joiner}token={self.token}" if self.token else f"/{path}"


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """`picsort app`, with a kernel started by loading its page."""
    # Culling off: the kernel under attack must outlive a slow run of this module.
    with picsort_app_route(tmp_path_factory.mktemp("picsort-app"), "--MappingKernelManager.cull_idle_timeout=0") as app:
        status, kernel_id = open_page(port_of(app))
        assert status == 200 and kernel_id, app.log_tail()
        voila, = psutil.Process(app.process.pid).children()
        yield Running(port_of(app), voila, kernel_id)


@pytest.fixture(scope="module")
def binder_server(tmp_path_factory):
    """The Binder route (jupyter server, voila extension, binder/postBuild's config), with a kernel."""
    with binder_route(tmp_path_factory.mktemp("binder-route")) as jupyter:
        port = port_of(jupyter)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", "/api/kernels", body="{}", headers={"Authorization": f"token {jupyter.token}"})
        kernel = json.loads(connection.getresponse().read())
        yield Running(port, psutil.Process(jupyter.process.pid), kernel["id"], jupyter.token)


@pytest.fixture(params=["app_server", "binder_server"])
def server(request):
    return request.getfixturevalue(request.param)


# ---- clients -------------------------------------------------------------------------------------------
def answers_within(server: Running, seconds: float) -> float:
    """Seconds the server takes to answer a new request (an API call through its event loop)."""
    try:
        status, took = get(server.port, server.path(f"api/kernels/{server.kernel_id}"), timeout=seconds)
    except (TimeoutError, socket.timeout):
        pytest.fail(f"the server did not answer a new request within {seconds} s")
    assert status == 200
    return took


def channels_request(server: Running, headers: dict | None = None) -> HTTPRequest:
    path = server.path(f"api/kernels/{server.kernel_id}/channels?session_id={uuid.uuid4().hex}")
    return HTTPRequest(f"ws://127.0.0.1:{server.port}{path}", headers=headers or {}, connect_timeout=30,
                       request_timeout=60)


def v1_message(msg_type: str, content: dict | None = None, channel: str = "shell") -> bytes:
    """A well-formed v1 frame, laid out as JupyterLab's services lay it out."""
    header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex, "msg_type": msg_type,
              "version": "5.3", "date": datetime.now(timezone.utc).isoformat()}
    parts = [channel.encode()] + [json.dumps(part).encode() for part in (header, {}, {}, content or {})]
    table_end = 8 * (len(parts) + 2)
    offsets = [table_end]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


def msg_type_of(frame: bytes) -> str:
    offsets = check_v1_frame(frame)
    return json.loads(frame[offsets[1]:offsets[2]])["msg_type"]


async def until_closed(socket_, seconds: float) -> tuple[int | None, str | None]:
    """(close code, reason) once the server closes the websocket; (None, None) if it has not within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            message = await asyncio.wait_for(socket_.read_message(), deadline - time.monotonic())
        except asyncio.TimeoutError:
            break
        if message is None:
            return socket_.close_code, socket_.close_reason
    socket_.close()
    return None, None


# ---- the attacks: each returns what the attacker saw ---------------------------------------------------
def legacy_message(msg_type: str, content: dict) -> str:
    header = {"msg_id": uuid.uuid4().hex, "username": "test", "session": uuid.uuid4().hex, "msg_type": msg_type,
              "version": "5.3", "date": datetime.now(timezone.utc).isoformat()}
    return json.dumps({"header": header, "parent_header": {}, "metadata": {}, "content": content,
                       "channel": "shell"})


async def legacy_client(server: Running) -> str:
    """A client without the v1 subprotocol. If let in, it does what any page may (asks the widget manager for
    the widgets and clicks "Try these examples"), so the kernel sends messages with buffers (the cards'
    pictures), which Voila misreads as v1; then it sends a legacy binary frame claiming 2**31 - 1 buffers."""
    try:
        socket_ = await websocket_connect(channels_request(server))
    except HTTPClientError as refused:
        return f"refused: {refused.code} {refused.response.body.decode().strip()}"
    control = uuid.uuid4().hex
    socket_.write_message(legacy_message("comm_open", {"comm_id": control, "target_name": "jupyter.widget.control",
                                                       "data": {}}))
    socket_.write_message(legacy_message("comm_msg", {"comm_id": control, "data": {"method": "request_states"}}))
    button = None
    while button is None:  # in the widgets the server replays or the state the widget manager sends
        try:
            message = await asyncio.wait_for(socket_.read_message(), 5)
        except asyncio.TimeoutError:
            break
        if isinstance(message, str):
            content = json.loads(message)["content"]
            data = content.get("data", {}) if isinstance(content, dict) else {}
            widgets = {content.get("comm_id"): data} if "state" in data else data.get("states", {})
            button = next((model_id for model_id, widget in widgets.items()
                           if "example" in str(widget.get("state", {}).get("description", "")).lower()), None)
    if button:
        socket_.write_message(legacy_message("comm_msg", {"comm_id": button,
                                                          "data": {"method": "custom", "content": {"event": "click"}}}))
        await asyncio.sleep(3)
    socket_.write_message(struct.pack("!iI", 2**31 - 1, 8) + b"{}", binary=True)
    code, reason = await until_closed(socket_, 5)
    return f"let in; closed: {code} {reason}"


def v1_attack(make_frame):
    """A v1 client sending the frame `make_frame()` makes (made only when the attack runs)."""

    async def attack(server: Running) -> str:
        socket_ = await websocket_connect(channels_request(server), subprotocols=[V1_PROTOCOL])
        frame = make_frame()
        await socket_.write_message(frame, binary=isinstance(frame, bytes))
        code, reason = await until_closed(socket_, 5)
        assert code == INVALID_PAYLOAD, f"the server did not close the websocket on a bad frame ({code} {reason})"
        return f"closed: {code} {reason}"

    return attack


def offsets_frame(offsets: list[int], size: int) -> bytes:
    table = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return table + bytes(size - len(table))


def huge_buffer_frame(size: int) -> bytes:
    """A well-formed v1 comm message carrying one buffer of `size` bytes (a photo is at most MAX_UPLOAD_BYTES)."""
    parts = [b"shell", b"{}", b"{}", b"{}", b"{}", bytes(size)]
    offsets = [8 * (len(parts) + 2)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


async def too_big_frame(server: Running) -> str:
    """A v1 client sending a well-formed 100 MB frame: over the server's message cap (a photo is at most
    MAX_UPLOAD_BYTES), so the server drops the connection rather than holding the frame."""
    socket_ = await websocket_connect(channels_request(server), subprotocols=[V1_PROTOCOL])
    try:
        await socket_.write_message(huge_buffer_frame(100 * 2**20), binary=True)
    except WebSocketClosedError:
        return "closed while the frame was being sent"
    message = await asyncio.wait_for(socket_.read_message(), 30)
    assert message is None, "the server kept the websocket open after a 100 MB frame"
    return f"closed: {socket_.close_code} {socket_.close_reason}"


async def big_request_bodies(server: Running, count: int = 3, size: int = 90 * 2**20) -> str:
    """`count` clients at once, each POSTing a `size`-byte body (to a URL that takes none): tornado reads a body
    whole before any handler sees the request, so a server must refuse one larger than it needs."""

    async def post() -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"POST /{server.path('api/kernels').lstrip('/')} HTTP/1.1\r\nHost: localhost\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        chunk = bytes(2**20)
        try:
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await writer.drain()
            answer = await reader.readline()
        except (ConnectionError, OSError):
            answer = b"connection closed while sending"
        writer.close()
        return answer.decode(errors="replace").strip() or "connection closed"

    answers = await asyncio.gather(*(post() for _ in range(count)))
    return "; ".join(sorted(set(answers)))


async def many_websockets(server: Running, count: int = 40) -> str:
    """`count` websockets to one kernel at once (each costs the server zmq sockets and ~0.1 MB); then all closed."""

    async def connect():
        try:
            return await websocket_connect(channels_request(server), subprotocols=[V1_PROTOCOL])
        except HTTPClientError as refused:
            return refused.code

    outcomes = await asyncio.gather(*(connect() for _ in range(count)))
    opened = [outcome for outcome in outcomes if not isinstance(outcome, int)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, int)]
    for socket_ in opened:
        socket_.close()
    await asyncio.sleep(1)  # the server notices the closes
    assert len(opened) <= MAX_CONNECTIONS and set(refused) <= {503}, (len(opened), refused)
    return f"{len(opened)} opened, {len(refused)} refused with 503"


def empty_parts_frame(count: int) -> bytes:
    """A frame for the shell channel with `count` empty parts after it, every offset within the frame."""
    table_end = 8 * (count + 3)
    offsets = [table_end, table_end + 5] + [table_end + 5] * count
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"shell"


# 32 MB: the server holds the frame itself while reading it, and jupyter_server's reader would make a Python
# object of each part (+248 MB at peak on main).
MANY_PARTS = 4_000_000
ATTACKS = {
    "legacy protocol client": legacy_client,
    "16-byte v1 frame claiming 2**62 offsets": v1_attack(lambda: (2**62).to_bytes(8, "little") + bytes(8)),
    "v1 offsets past the frame's end": v1_attack(lambda: offsets_frame([56, 61, 63, 65, 67, 10**12], 80)),
    "v1 offsets going backwards": v1_attack(lambda: offsets_frame([56, 61, 63, 60, 67, 69], 69)),
    "v1 frame of 4 million empty parts": v1_attack(lambda: empty_parts_frame(MANY_PARTS)),
    "v1 text frame": v1_attack(lambda: json.dumps({"header": {"msg_type": "kernel_info_request"}})),
    "a 100 MB frame": too_big_frame,
    "three 90 MB request bodies at once": big_request_bodies,
    "40 websockets to one kernel at once": many_websockets,
}


@contextmanager
def peak_growth(process: psutil.Process):
    """Samples the process's memory in a thread while the block runs; yields a list that ends up holding
    the highest growth seen (bytes above the memory at the start)."""
    start, peak, done = process.memory_info().rss, [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss - start)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield peak
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss - start)


@pytest.mark.parametrize("attack", ATTACKS)
def test_after_each_attack_the_server_answers_at_once_with_its_memory_bounded(server, attack):
    with peak_growth(server.process) as growth:
        seen = asyncio.run(asyncio.wait_for(ATTACKS[attack](server), 60))
        seconds = answers_within(server, ANSWER_SECONDS)
    print(f"{attack}: {seen}; next request answered in {seconds * 1000:.0f} ms, memory at most "
          f"{growth[0] / 2**20:+.1f} MB")
    assert growth[0] < GROWTH_LIMIT, f"server memory grew {growth[0] / 2**20:.0f} MB"
    if attack == "legacy protocol client":
        assert seen.startswith("refused: 400") and V1_PROTOCOL in seen, seen


def test_the_page_protocol_still_reaches_the_kernel(server):
    """What Voila's page sends (v1 frames) still gets the kernel's answers, after all the attacks."""

    async def ask() -> list[str]:
        socket_ = await websocket_connect(channels_request(server), subprotocols=[V1_PROTOCOL])
        assert socket_.selected_subprotocol == V1_PROTOCOL
        await socket_.write_message(v1_message("kernel_info_request"), binary=True)
        seen = []
        while "kernel_info_reply" not in seen:
            frame = await socket_.read_message()
            assert frame is not None, f"closed: {socket_.close_code} {socket_.close_reason}"
            seen.append(msg_type_of(frame))
        socket_.close()
        return seen

    assert "kernel_info_reply" in asyncio.run(asyncio.wait_for(ask(), 60))


# ---- only local names reach `picsort app` ------------------------------------------------------------------
@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]"])
def test_local_names_reach_the_app(app_server, host):
    kernel = app_server.path(f"api/kernels/{app_server.kernel_id}")
    assert get(app_server.port, kernel, {"Host": f"{host}:{app_server.port}"})[0] == 200


def test_a_request_for_another_host_name_is_refused(app_server):
    """DNS rebinding: attacker.example made to resolve to 127.0.0.1 gets no page."""
    assert get(app_server.port, "/", {"Host": "attacker.example"})[0] == 403
    assert get(app_server.port, f"/api/kernels/{app_server.kernel_id}", {"Host": f"attacker.example:{app_server.port}"})[0] == 403


@pytest.mark.parametrize("host", ["attacker.example", "127.0.0.1"])
def test_a_websocket_from_another_site_is_refused(app_server, host):
    headers = {"Origin": "http://attacker.example", "Host": host if host != "127.0.0.1" else f"127.0.0.1:{app_server.port}"}

    async def connect():
        try:
            socket_ = await websocket_connect(channels_request(app_server, headers), subprotocols=[V1_PROTOCOL])
        except HTTPClientError as refused:
            return refused.code
        socket_.close()
        return 101

    assert asyncio.run(connect()) == 403


@pytest.mark.parametrize("config", ["voila.json", "binder/jupyter_server_config.json"])
def test_the_message_cap_lets_the_largest_photo_through_and_nothing_near_the_memory_bound(config):
    settings = json.loads((REPO / config).read_text())
    cap = settings["Voila" if config == "voila.json" else "ServerApp"]["tornado_settings"]["websocket_max_message_size"]
    assert MAX_UPLOAD_BYTES + 2**20 <= cap < GROWTH_LIMIT  # one photo and its message around it; no more
