"""The TCP framing codec, without sockets: examples from the original, and properties."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_py.protocol.tcp_frame import (
    MAX_FRAME_SIZE,
    PING_FRAME,
    FrameDecoder,
    FrameError,
    encode_client_message,
    encode_frame,
    parse_client_message,
)

payloads = st.binary(max_size=MAX_FRAME_SIZE - 4)


def test_the_ping_frame_is_the_originals() -> None:
    assert bytes.fromhex("7631000c70696e67206d7367") == PING_FRAME
    assert FrameDecoder().feed(PING_FRAME) == [b"ping msg"]  # what a client's decoder makes of it


def test_an_auth_frame_starts_like_the_originals() -> None:
    frame = encode_frame(b'{"authToken":"TOKEN","roomId":1,"op":6}')
    assert frame[:5] == bytes.fromhex("7631002b7b")
    assert len(frame) == 0x2B


def test_four_frames_packed_in_one_buffer_all_unpack() -> None:
    frames = [encode_frame(f'{{"n":{n}}}'.encode()) for n in range(4)]
    assert FrameDecoder().feed(b"".join(frames)) == [f'{{"n":{n}}}'.encode() for n in range(4)]


def test_an_empty_payload_is_a_frame() -> None:
    assert FrameDecoder().feed(b"v1\x00\x04") == [b""]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"v2\x00\x05x", "bad version"),
        (b"x", "bad version"),
        (b"vx", "bad version"),
        (b"v1\x00\x03", "below the header size"),
        (b"v1\x00\x00", "below the header size"),
        (b"v1\xff\xff", "below the header size"),  # -1 as a signed 16-bit length
        (b"v1\x7f\xff", "over the limit"),
    ],
)
def test_invalid_framing_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    decoder = FrameDecoder(max_frame_size=1024)
    with pytest.raises(FrameError, match=reason):
        decoder.feed(data)
    with pytest.raises(FrameError):  # and the stream stays refused
        decoder.feed(encode_frame(b"{}"))


def test_frames_before_the_bad_bytes_are_kept() -> None:
    with pytest.raises(FrameError) as caught:
        FrameDecoder().feed(encode_frame(b"one") + encode_frame(b"two") + b"zz")
    assert caught.value.payloads == [b"one", b"two"]


def test_a_payload_too_big_for_the_length_field_cannot_be_encoded() -> None:
    encode_frame(b"x" * (MAX_FRAME_SIZE - 4))
    with pytest.raises(FrameError):
        encode_frame(b"x" * (MAX_FRAME_SIZE - 3))


def test_the_limit_must_fit_the_format() -> None:
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=MAX_FRAME_SIZE + 1)
    with pytest.raises(ValueError):
        FrameDecoder(max_frame_size=3)


@settings(max_examples=300)
@given(frames=st.lists(payloads, max_size=12), cuts=st.lists(st.integers(min_value=0), max_size=20))
def test_any_frames_cut_anywhere_decode_to_the_same_frames(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p) for p in frames)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out.extend(decoder.feed(stream[start:end]))
    assert out == frames
    assert decoder.buffered == 0


@settings(max_examples=500)
@given(chunks=st.lists(st.binary(max_size=64), max_size=10))
def test_garbage_raises_nothing_but_frame_error(chunks: list[bytes]) -> None:
    decoder = FrameDecoder(max_frame_size=256)
    for chunk in chunks:
        try:
            payloads_out = decoder.feed(chunk)
        except FrameError:
            return
        assert all(isinstance(p, bytes) and len(p) <= 252 for p in payloads_out)


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_any_payload_parses_or_raises_frame_error(data: bytes) -> None:
    try:
        message = parse_client_message(data)
    except FrameError:
        return
    assert isinstance(message.auth_token, str) and isinstance(message.room_id, int)


def test_client_messages_read_the_lenient_go_way() -> None:
    message = parse_client_message(
        b'{"AUTHTOKEN":"t","RoomId":7,"op":3,"msg":"hi","fromUserId":99,"fromUserName":"someone else"}'
    )
    assert (message.op, message.auth_token, message.room_id, message.msg) == (3, "t", 7, "hi")
    assert parse_client_message(b'{"roomId":"7","authToken":5}').room_id == 0
    assert parse_client_message(b'{"roomId":"7","authToken":5}').auth_token == ""
    for not_object in (b"[]", b"1", b'"x"', b"null"):
        with pytest.raises(FrameError, match="not a JSON object"):
            parse_client_message(not_object)
    with pytest.raises(FrameError, match="not JSON"):
        parse_client_message(b"{")


def test_encode_client_message_round_trips() -> None:
    frame = encode_client_message(6, "tok", 3, "hello")
    (payload,) = FrameDecoder().feed(frame)
    assert json.loads(payload) == {"msg": "hello", "roomId": 3, "op": 6, "authToken": "tok"}
