"""kernel_websocket.py: a v1 frame is read only once its parts are known to fit in it; anything else is refused
naming what is wrong. (What a served page and an attacker see over a real websocket: test_server_safety.py.)"""

from __future__ import annotations

import struct

import pytest

from picsort.serving.kernel_websocket import MAX_BUFFERS, FrameError, check_v1_frame


def frame(parts: list[bytes], offsets: list[int] | None = None) -> bytes:
    """A v1 frame of `parts`: an 8-byte offset count, the offsets, the parts (or the `offsets` given instead)."""
    if offsets is None:
        offsets = [8 * (len(parts) + 2)]
        for part in parts:
            offsets.append(offsets[-1] + len(part))
    return struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets) + b"".join(parts)


MESSAGE = [b"shell", b'{"msg_type": "kernel_info_request"}', b"{}", b"{}", b"{}"]


def test_a_well_formed_frame_gives_where_its_parts_are():
    data = frame(MESSAGE + [b"a photo's bytes"])
    offsets = check_v1_frame(data)
    assert data[offsets[0]:offsets[1]] == b"shell" and data[offsets[-2]:offsets[-1]] == b"a photo's bytes"


@pytest.mark.parametrize(("data", "problem"), [
    ("a text frame", "text frame"),
    (b"\x06\x00", "2-byte frame"),
    (frame(MESSAGE[:3]), "4 offsets"),
    (frame(MESSAGE + [b""] * (MAX_BUFFERS + 1)), "offsets; a kernel message has"),
    (struct.pack("<Q", 6) + b"\x00" * 16, "6 offsets need 56 bytes"),
    (frame(MESSAGE, [8, 60, 70, 80, 90, 100]), "inside the offset table"),
    (frame(MESSAGE, [56, 61, 50, 100, 100, 100]), "part 1 ends at byte 50"),
    (frame(MESSAGE, [56, 61, 96, 98, 100, 10**12]), "past the frame's end"),
    (frame([b"\xff\xfe"] + MESSAGE[1:]), "channel name is not UTF-8"),
])
def test_a_frame_that_does_not_fit_is_refused_naming_the_problem(data, problem):
    with pytest.raises(FrameError, match=problem):
        check_v1_frame(data)
