"""Byte framing used by the benchmark clients (TCP stick package) and the floor server (websocket)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_py.bench.framing import STICK_MAX_PAYLOAD, FrameError, StickSplitter, encode_stick, ws_server_frame


def test_stick_ping_bytes() -> None:
    assert encode_stick(b"ping msg") == bytes.fromhex("7631000c70696e67206d7367")


@given(st.lists(st.binary(max_size=300), max_size=8), st.integers(1, 50))
def test_stick_split_any_chunking(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_stick(p) for p in payloads)
    splitter = StickSplitter()
    out: list[bytes] = []
    for i in range(0, len(stream), chunk):
        out += splitter.feed(stream[i : i + chunk])
    assert out == payloads


def test_stick_chunk_of_frames_in_one_list() -> None:
    splitter = StickSplitter()
    frames = [encode_stick(b"p%d" % i) for i in range(4)]
    assert splitter.feed(b"".join(frames[:3]) + frames[3][:5]) == [b"p0", b"p1", b"p2"]
    assert splitter.feed(frames[3][5:]) == [b"p3"]
    assert splitter.feed(b"") == []


def test_stick_bad_frames() -> None:
    with pytest.raises(FrameError):
        StickSplitter().feed(b"x1\x00\x05a")
    with pytest.raises(FrameError):
        StickSplitter().feed(b"v1\x00\x02")
    with pytest.raises(FrameError, match="-32768"):  # the length is a signed int16
        StickSplitter().feed(b"v1\x80\x00")
    with pytest.raises(FrameError, match="start with 'v'"):  # also behind a kept partial frame
        splitter = StickSplitter()
        splitter.feed(encode_stick(b"ok") + b"v1")
        splitter.feed(b"\x00\x05a" + b"x1\x00\x05a")
    with pytest.raises(FrameError):
        encode_stick(b"x" * (STICK_MAX_PAYLOAD + 1))


def test_ws_server_frame_lengths() -> None:
    assert ws_server_frame(b"hi") == b"\x81\x02hi"
    medium = ws_server_frame(b"x" * 200)
    assert medium[:4] == b"\x81\x7e\x00\xc8" and len(medium) == 204
    large = ws_server_frame(b"x" * 70000)
    assert large[:2] == b"\x81\x7f" and int.from_bytes(large[2:10], "big") == 70000


def test_ws_frame_is_parsed_by_websockets() -> None:
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    reader = StreamReader()
    reader.feed_data(ws_server_frame(b'{"op":3}'))
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame = done.value
    assert frame.opcode == Opcode.TEXT and frame.data == b'{"op":3}' and frame.fin
