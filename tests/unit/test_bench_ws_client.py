"""The bench's lean websocket client, without sockets: handshake key and response checks, masked
client frames, the splitter of server frames under any cut of the stream, and the protocol
object's answers (pong, close) written to a fake transport."""

from __future__ import annotations

import asyncio
import base64
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_py.bench.framing import (
    WS_BINARY,
    WS_CLOSE,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    FrameError,
    HandshakeError,
    WsSplitter,
    check_ws_handshake_response,
    parse_ws_close,
    ws_accept,
    ws_client_frame,
    ws_client_key,
    ws_close_payload,
    ws_handshake_request,
    ws_mask,
    ws_server_frame,
)
from gochat_py.bench.ws_client import LeanWsClient, split_ws_url

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


def response(key: str, *extra: str, status: str = "101 Switching Protocols") -> bytes:
    lines = [
        f"HTTP/1.1 {status}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {ws_accept(key)}",
        *extra,
    ]
    return "\r\n".join(lines).encode()


# ------------------------------------------------------------------ handshake


def test_accept_key_of_the_rfc_example() -> None:
    assert ws_accept(RFC_KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_client_key_is_16_random_bytes_in_base64() -> None:
    assert ws_client_key(b"the sample nonce") == RFC_KEY
    key = ws_client_key()
    assert len(base64.b64decode(key, validate=True)) == 16
    assert key != ws_client_key()
    with pytest.raises(ValueError):
        ws_client_key(b"short")


def test_handshake_request() -> None:
    request = ws_handshake_request("127.0.0.1:7000", "/ws", RFC_KEY)
    head, _, body = request.partition(b"\r\n\r\n")
    assert body == b""
    lines = head.decode().split("\r\n")
    assert lines[0] == "GET /ws HTTP/1.1"
    assert {
        "Host: 127.0.0.1:7000",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {RFC_KEY}",
        "Sec-WebSocket-Version: 13",
    } <= set(lines)
    assert not any(line.lower().startswith("sec-websocket-extensions") for line in lines)


def test_handshake_response_accepted() -> None:
    check_ws_handshake_response(response(RFC_KEY), RFC_KEY)
    # header names and the Upgrade value are case-insensitive; Connection may list several tokens
    check_ws_handshake_response(
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: WebSocket\r\nconnection: keep-alive, upgrade\r\n"
        b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=",
        RFC_KEY,
    )


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (response(RFC_KEY, status="404 Not Found"), "upgrade refused: HTTP/1.1 404"),
        (response("AAAAAAAAAAAAAAAAAAAAAA=="), "does not match"),
        (response(RFC_KEY, "Sec-WebSocket-Extensions: permessage-deflate"), "not offered"),
        (response(RFC_KEY, "Sec-WebSocket-Protocol: chat"), "not offered"),
        (response(RFC_KEY).replace(b"Upgrade: websocket", b"Upgrade: h2c"), "not websocket"),
        (response(RFC_KEY).replace(b"Connection: Upgrade", b"Connection: close"), "lacks upgrade"),
        (b"SSH-2.0-OpenSSH_9.2", "not an HTTP response"),
    ],
)
def test_handshake_response_refused(head: bytes, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        check_ws_handshake_response(head, RFC_KEY)


def test_split_ws_url() -> None:
    assert split_ws_url("ws://127.0.0.1:7000/ws") == ("127.0.0.1", 7000, "127.0.0.1:7000", "/ws")
    assert split_ws_url("ws://localhost/x?y=1") == ("localhost", 80, "localhost", "/x?y=1")
    assert split_ws_url("ws://[::1]:7100") == ("::1", 7100, "[::1]:7100", "/")
    with pytest.raises(ValueError):
        split_ws_url("wss://127.0.0.1:7000/ws")


# ------------------------------------------------------------------ client frames


def test_masked_frame_of_the_rfc_example() -> None:
    # RFC 6455 §5.7: a single-frame masked text message "Hello"
    frame = ws_client_frame(b"Hello", WS_TEXT, mask=bytes.fromhex("37fa213d"))
    assert frame == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_masked_frames_parse_with_the_websockets_library(size: int) -> None:
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    reader = StreamReader()
    reader.feed_data(ws_client_frame(payload, WS_BINARY))
    parser = Frame.parse(reader.read_exact, mask=True)  # a server requires the mask
    with pytest.raises(StopIteration) as done:
        next(parser)
    frame = done.value.value
    assert frame.opcode == Opcode.BINARY and frame.fin and frame.data == payload


def test_mask_is_its_own_inverse() -> None:
    mask = b"\x01\x02\x03\x04"
    assert ws_mask(ws_mask(b"abcdefg", mask), mask) == b"abcdefg"
    assert ws_mask(b"", mask) == b""


def test_close_payloads() -> None:
    assert ws_close_payload(None) == b""
    assert ws_close_payload(1000) == b"\x03\xe8"
    assert parse_ws_close(b"\x03\xf0bad token") == (1008, "bad token")
    assert parse_ws_close(b"") == (1005, "")
    with pytest.raises(FrameError):
        parse_ws_close(b"\x03")


# ------------------------------------------------------------------ the splitter


def server_frame(opcode: int, payload: bytes, first: int | None = None) -> bytes:
    frame = ws_server_frame(payload, opcode)
    return frame if first is None else bytes([first]) + frame[1:]


STREAM_FRAMES = [
    (WS_TEXT, b'{"op":5,"roomId":1,"count":1}'),
    (WS_TEXT, b""),
    (WS_PING, b"\x01\x02\x03\x04"),
    (WS_TEXT, b"m" * 125),
    (WS_TEXT, b"s" * 126),  # first 16-bit length
    (WS_BINARY, bytes(range(256)) * 10),
    (WS_TEXT, b"x" * 65535),  # largest 16-bit length
    (WS_TEXT, b"y" * 65536),  # first 64-bit length
    (WS_PONG, b""),
    (WS_CLOSE, b"\x03\xe9"),
]
STREAM = b"".join(ws_server_frame(payload, opcode) for opcode, payload in STREAM_FRAMES)


def test_split_whole_stream_in_one_chunk() -> None:
    splitter = WsSplitter()
    assert splitter.feed(STREAM) == STREAM_FRAMES
    assert splitter.pending() == 0


def test_split_lengths_read_right() -> None:
    assert WsSplitter().feed(b"\x81\x7e\x00\xc8" + b"a" * 200) == [(WS_TEXT, b"a" * 200)]
    big = struct.pack("!BBQ", 0x81, 127, 70000) + b"b" * 70000
    assert WsSplitter().feed(big) == [(WS_TEXT, b"b" * 70000)]


def test_split_at_every_byte_boundary() -> None:
    # every frame up to a few KiB (7- and 16-bit lengths), plus a 64-bit length header on a short
    # payload (allowed on the wire, if not minimal), cut in two at every byte
    long_header = struct.pack("!BBQ", 0x82, 127, 10) + b"0123456789"
    frames = [(o, p) for o, p in STREAM_FRAMES if len(p) < 3000]
    stream = b"".join(ws_server_frame(p, o) for o, p in frames) + long_header
    expected = [*frames, (WS_BINARY, b"0123456789")]
    for cut in range(len(stream) + 1):
        splitter = WsSplitter()
        assert splitter.feed(stream[:cut]) + splitter.feed(stream[cut:]) == expected, cut
        assert splitter.pending() == 0
    # the 64 KiB frames: cut inside and around every header
    starts, position = [], 0
    for opcode, payload in STREAM_FRAMES:
        starts.append(position)
        position += len(ws_server_frame(payload, opcode))
    for start in starts:
        for cut in range(max(0, start - 2), min(len(STREAM), start + 12) + 1):
            splitter = WsSplitter()
            assert splitter.feed(STREAM[:cut]) + splitter.feed(STREAM[cut:]) == STREAM_FRAMES, cut


def test_split_one_byte_at_a_time() -> None:
    frames = STREAM_FRAMES[:6]
    stream = b"".join(ws_server_frame(p, o) for o, p in frames)
    splitter = WsSplitter()
    out = []
    for i in range(len(stream)):
        out += splitter.feed(stream[i : i + 1])
    assert out == frames and splitter.pending() == 0


def test_large_frame_in_many_chunks_waits_for_all_of_it() -> None:
    frame = ws_server_frame(b"z" * 70000)
    chunks = [frame[i : i + 1000] for i in range(0, len(frame), 1000)]
    splitter = WsSplitter()
    for chunk in chunks[:-1]:
        assert splitter.feed(chunk) == []
    assert splitter.pending() == len(frame) - len(chunks[-1])
    assert splitter.feed(chunks[-1]) == [(WS_TEXT, b"z" * 70000)]
    assert splitter.pending() == 0


@given(
    st.lists(st.tuples(st.sampled_from([WS_TEXT, WS_BINARY, WS_PING]), st.binary(max_size=300)), max_size=8),
    st.integers(1, 64),
)
def test_split_any_chunking(frames: list[tuple[int, bytes]], chunk: int) -> None:
    frames = [(o, p[:125] if o == WS_PING else p) for o, p in frames]
    stream = b"".join(ws_server_frame(p, o) for o, p in frames)
    splitter = WsSplitter()
    out: list[tuple[int, bytes]] = []
    for i in range(0, len(stream), chunk):
        out += splitter.feed(stream[i : i + chunk])
    assert out == frames


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (ws_client_frame(b"hi", WS_TEXT, b"abcd"), "masked"),  # a server must not mask
        (server_frame(0, b"rest", first=0x80), "no fragmented message begun"),  # a lone continuation
        (server_frame(0, b"rest", first=0x00), "no fragmented message begun"),
        (ws_server_frame(b"a", fin=False) + ws_server_frame(b"b"), "before the fragmented message"),
        (ws_server_frame(b"a", fin=False) + ws_server_frame(b"b", WS_BINARY, fin=False), "before the fragmented"),
        (server_frame(WS_TEXT, b"x", first=0xC1), "RSV"),  # compressed, never negotiated
        (server_frame(3, b"x", first=0x83), "unknown opcode"),
        (server_frame(WS_PING, b"p" * 126), "control frame"),
        (server_frame(WS_PING, b"p", first=0x09), "fragmented control frame"),  # a control frame must be final
    ],
)
def test_bad_server_frames_rejected(frame: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        WsSplitter().feed(ws_server_frame(b"ok") + frame)


def test_oversized_frame_rejected_from_its_header() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        WsSplitter(max_payload=1000).feed(struct.pack("!BBQ", 0x81, 127, 1_000_000))


# ------------------------------------------------------------------ fragmented messages (RFC 6455 §5.4)


def fragments(payload: bytes, sizes: list[int], opcode: int = WS_TEXT) -> list[bytes]:
    """``payload`` as a first frame and continuations of the given sizes (the rest in the last)."""
    pieces, position = [], 0
    for size in sizes:
        pieces.append(payload[position : position + size])
        position += size
    pieces.append(payload[position:])
    return [ws_server_frame(piece, opcode if n == 0 else 0, fin=n == len(pieces) - 1) for n, piece in enumerate(pieces)]


def test_fragmented_text_message_is_reassembled() -> None:
    splitter = WsSplitter()
    stream = b"".join(fragments(b"hello fragmented world", [5, 0, 6]))
    assert splitter.feed(stream) == [(WS_TEXT, b"hello fragmented world")]
    assert splitter.pending() == 0
    # the plain frames after it take the usual path again
    assert splitter.feed(ws_server_frame(b"next") + ws_server_frame(b"x" * 300)) == [
        (WS_TEXT, b"next"),
        (WS_TEXT, b"x" * 300),
    ]


def test_fragments_held_until_the_last_one_arrives() -> None:
    splitter = WsSplitter()
    first, middle, last = fragments(b"a" * 200 + b"b" * 70000 + b"c", [200, 70000])
    assert splitter.feed(first) == []
    assert splitter.pending() == 200
    assert splitter.feed(middle[:5]) == []
    assert splitter.pending() == 205  # 200 of the message, 5 of the frame under way
    assert splitter.feed(middle[5:]) == []
    assert splitter.pending() == 70200
    assert splitter.feed(last) == [(WS_TEXT, b"a" * 200 + b"b" * 70000 + b"c")]
    assert splitter.pending() == 0


def test_control_frames_between_fragments_come_in_stream_order() -> None:
    pieces = fragments(b"one two three", [4, 4])
    stream = (
        ws_server_frame(b"before")
        + pieces[0]
        + ws_server_frame(b"hb", WS_PING)
        + pieces[1]
        + ws_server_frame(b"", WS_PONG)
        + pieces[2]
        + ws_server_frame(b"after")
    )
    payloads, others = WsSplitter().feed_batch(stream)
    # the ping and pong came while the message was incomplete: before its place
    assert payloads == [b"before", b"one two three", b"after"]
    assert others == [(1, WS_PING, b"hb"), (1, WS_PONG, b"")]
    assert WsSplitter().feed(stream) == [
        (WS_TEXT, b"before"),
        (WS_PING, b"hb"),
        (WS_PONG, b""),
        (WS_TEXT, b"one two three"),
        (WS_TEXT, b"after"),
    ]


def test_fragmented_binary_message_is_placed_like_a_whole_one() -> None:
    stream = ws_server_frame(b"a") + b"".join(fragments(bytes(range(50)), [10, 10], WS_BINARY))
    payloads, others = WsSplitter().feed_batch(stream + ws_server_frame(b"z"))
    assert payloads == [b"a", bytes(range(50)), b"z"]
    assert others == [(1, WS_BINARY, bytes(range(50)))]


@given(
    st.lists(
        st.tuples(
            st.sampled_from([WS_TEXT, WS_BINARY]),
            st.binary(max_size=400),
            st.lists(st.integers(0, 120), max_size=5),  # fragment sizes (the rest goes last)
            st.lists(st.sampled_from([WS_PING, WS_PONG]), max_size=3),  # control frames between fragments
        ),
        max_size=6,
    ),
    st.integers(1, 64),
)
def test_fragmented_messages_under_any_chunking(
    messages: list[tuple[int, bytes, list[int], list[int]]], chunk: int
) -> None:
    stream = b""
    expected: list[tuple[int, bytes]] = []
    for opcode, payload, sizes, controls in messages:
        pieces = fragments(payload, sizes, opcode)
        for n, piece in enumerate(pieces):
            stream += piece
            if n < len(pieces) - 1 and n < len(controls):
                stream += ws_server_frame(b"c%d" % n, controls[n])
                expected.append((controls[n], b"c%d" % n))
        expected.append((opcode, payload))
    splitter = WsSplitter()
    out: list[tuple[int, bytes]] = []
    for i in range(0, len(stream), chunk):
        out += splitter.feed(stream[i : i + chunk])
    assert out == expected
    assert splitter.pending() == 0


def test_fragmented_message_bounded_as_a_whole() -> None:
    splitter = WsSplitter(max_payload=1000)
    assert splitter.feed(ws_server_frame(b"a" * 600, fin=False)) == []
    assert splitter.feed(ws_server_frame(b"b" * 400, 0, fin=False)) == []  # 1000: at the bound
    # the next fragment's header alone is refused: its bytes are never waited for
    with pytest.raises(FrameError, match="message of 1001 bytes or more exceeds 1000"):
        splitter.feed(ws_server_frame(b"c", 0)[:2])
    # the bound is per message: a complete one frees it
    splitter = WsSplitter(max_payload=1000)
    for _ in range(3):
        assert splitter.feed(b"".join(fragments(b"d" * 1000, [500]))) == [(WS_TEXT, b"d" * 1000)]
    with pytest.raises(FrameError, match="exceeds 1000"):
        WsSplitter(max_payload=1000).feed(struct.pack("!BBH", 0x01, 126, 1001))


def test_feed_batch_lists_the_payloads_and_places_the_other_frames() -> None:
    stream = b"".join(
        ws_server_frame(p, o)
        for o, p in [
            (WS_TEXT, b"a"),
            (WS_PING, b"p"),
            (WS_TEXT, b"b"),
            (WS_BINARY, b"c"),
            (WS_TEXT, b"d"),
            (WS_CLOSE, b"\x03\xe8"),
        ]
    )
    payloads, others = WsSplitter().feed_batch(stream)
    assert payloads == [b"a", b"b", b"c", b"d"]
    # a control frame's place is the number of payloads before it; a binary frame's is its own
    assert others == [(1, WS_PING, b"p"), (2, WS_BINARY, b"c"), (4, WS_CLOSE, b"\x03\xe8")]
    assert WsSplitter().feed_batch(ws_server_frame(b"x" * 200) * 3) == ([b"x" * 200] * 3, None)
    splitter = WsSplitter()
    assert splitter.feed_batch(ws_server_frame(b"half")[:3]) == ([], None)
    assert splitter.feed_batch(ws_server_frame(b"half")[3:]) == ([b"half"], None)


# ------------------------------------------------------------------ the protocol object


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


def unmask_client_frame(frame: bytes) -> tuple[int, bytes]:
    """(opcode, payload) of a short client frame; asserts it is final and masked."""
    assert frame[0] & 0x80 and frame[1] & 0x80, "client frames must be final and masked"
    length = frame[1] & 0x7F
    assert length < 126 and len(frame) == 6 + length
    return frame[0] & 0x0F, ws_mask(frame[6:], frame[2:6])


class Recorder:
    def __init__(self) -> None:
        self.calls: list[list[bytes]] = []  # what each on_frames call got
        self.frames: list[tuple[int, bytes]] = []
        self.lost: list[tuple[int, str]] = []

    def on_frames(self, index: int, payloads: list[bytes]) -> None:
        assert payloads, "on_frames is never called with nothing"
        self.calls.append(list(payloads))
        self.frames += [(index, payload) for payload in payloads]

    def on_lost(self, index: int, reason: str) -> None:
        self.lost.append((index, reason))


def opened_client(rec: Recorder) -> tuple[LeanWsClient, FakeTransport]:
    client = LeanWsClient(7, rec.on_frames, rec.on_lost, "127.0.0.1:7000", "/ws", key=RFC_KEY)
    transport = FakeTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    assert transport.written == [ws_handshake_request("127.0.0.1:7000", "/ws", RFC_KEY)]
    transport.written.clear()
    return client, transport


async def test_handshake_then_frames_in_the_same_chunk() -> None:
    rec = Recorder()
    client, _ = opened_client(rec)
    head = response(RFC_KEY) + b"\r\n\r\n"
    client.data_received(head[:10])
    assert not client.opened.done()
    client.data_received(head[10:] + ws_server_frame(b"first") + ws_server_frame(b"sec")[:3])
    assert client.opened.done() and client.opened.exception() is None
    client.data_received(ws_server_frame(b"sec")[3:])
    assert rec.frames == [(7, b"first"), (7, b"sec")]


async def test_a_chunk_of_frames_is_handed_on_in_one_call() -> None:
    rec = Recorder()
    client, _ = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    frames = [ws_server_frame(b"m%d" % i) for i in range(5)]
    client.data_received(b"".join(frames[:3]) + frames[3][:2])  # the fourth cut in its header
    client.data_received(frames[3][2:] + frames[4])
    assert rec.calls == [[b"m0", b"m1", b"m2"], [b"m3", b"m4"]]
    client.data_received(frames[0][:1])  # no whole frame: no call
    assert len(rec.calls) == 2


async def test_control_frames_in_a_chunk_of_data_frames() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    client.data_received(
        ws_server_frame(b"a")
        + ws_server_frame(b"b")
        + ws_server_frame(b"hb", WS_PING)
        + ws_server_frame(b"c", WS_BINARY)
        + ws_server_frame(b"", WS_PONG)
        + ws_server_frame(b"d")
    )
    assert rec.calls == [[b"a", b"b", b"c", b"d"]]  # the binary frame in its place
    assert [unmask_client_frame(frame) for frame in transport.written] == [(WS_PONG, b"hb")]


async def test_frames_after_a_close_in_the_same_chunk_are_not_handed_on() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    client.data_received(
        ws_server_frame(b"before")
        + ws_server_frame(b"p1", WS_PING)
        + ws_server_frame(b"\x03\xe8", WS_CLOSE)
        + ws_server_frame(b"p2", WS_PING)
        + ws_server_frame(b"after")
    )
    assert rec.calls == [[b"before"]]
    # the ping before the close is answered, then the close; nothing after it
    assert [unmask_client_frame(frame) for frame in transport.written] == [(WS_PONG, b"p1"), (WS_CLOSE, b"\x03\xe8")]
    assert transport.closed


async def test_fragmented_message_with_a_ping_between_its_fragments() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    first, last = fragments(b'{"code":0,"msg":"big"}', [10])
    client.data_received(ws_server_frame(b"m0") + first + ws_server_frame(b"hb", WS_PING))
    assert rec.calls == [[b"m0"]]
    assert [unmask_client_frame(frame) for frame in transport.written] == [(WS_PONG, b"hb")]
    client.data_received(last + ws_server_frame(b"m1"))
    assert rec.calls == [[b"m0"], [b'{"code":0,"msg":"big"}', b"m1"]]
    client.data_received(ws_server_frame(b"x") + ws_server_frame(b"y", fin=False) + ws_server_frame(b"z"))
    assert transport.aborted  # a new message before the fragmented one ended
    client.connection_lost(None)
    assert rec.lost == [(7, "bad frame: data frame (opcode 0x1) before the fragmented message was complete")]


async def test_join_is_sent_masked() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    client.send_text(b'{"authToken":"t","roomId":1}')
    assert unmask_client_frame(transport.written[0]) == (WS_TEXT, b'{"authToken":"t","roomId":1}')


async def test_ping_is_answered_with_a_masked_pong_of_the_same_payload() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n" + ws_server_frame(b"\xde\xad\xbe\xef", WS_PING))
    assert len(transport.written) == 1
    assert unmask_client_frame(transport.written[0]) == (WS_PONG, b"\xde\xad\xbe\xef")
    client.data_received(ws_server_frame(b"", WS_PING))
    assert unmask_client_frame(transport.written[1]) == (WS_PONG, b"")
    assert rec.frames == [] and rec.lost == []


async def test_server_close_is_answered_and_reported_once() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    client.data_received(ws_server_frame(b"\x03\xf0bad token", WS_CLOSE) + ws_server_frame(b"after"))
    assert unmask_client_frame(transport.written[0]) == (WS_CLOSE, b"\x03\xf0")  # the code echoed
    assert transport.closed and rec.frames == []
    client.connection_lost(None)
    assert rec.lost == [(7, "closed 1008 bad token")]
    assert client.closed.done()


async def test_bad_frame_aborts_with_a_clear_reason() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    client.data_received(ws_client_frame(b"masked", WS_TEXT))
    assert transport.aborted
    client.connection_lost(None)
    assert rec.lost == [(7, "bad frame: the server sent a masked frame")]


async def test_refused_upgrade_fails_the_open_and_is_not_a_lost_socket() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY, status="403 Forbidden") + b"\r\n\r\n")
    assert transport.aborted
    with pytest.raises(HandshakeError, match="403"):
        client.opened.result()
    client.connection_lost(None)
    assert rec.lost == []


async def test_close_at_the_end_sends_a_masked_close_frame_and_waits_boundedly() -> None:
    rec = Recorder()
    client, transport = opened_client(rec)
    client.data_received(response(RFC_KEY) + b"\r\n\r\n")
    await client.close(timeout=0.05)  # nobody answers: the wait ends and the transport is aborted
    assert unmask_client_frame(transport.written[0]) == (WS_CLOSE, b"\x03\xe8")
    assert transport.aborted

    rec2 = Recorder()
    client2, transport2 = opened_client(rec2)
    client2.data_received(response(RFC_KEY) + b"\r\n\r\n")
    closing = asyncio.create_task(client2.close(timeout=5))
    await asyncio.sleep(0)
    client2.data_received(ws_server_frame(b"\x03\xe8", WS_CLOSE))  # the server's answer
    assert transport2.closed and len(transport2.written) == 1  # no second close frame
    client2.connection_lost(None)
    await closing
    assert not transport2.aborted
