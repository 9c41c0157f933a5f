"""The stamp carried in benchmark messages and how clients find it in frame bodies."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_py.bench.stamp import (
    Stamp,
    check_run_id,
    frame_msg,
    frame_stamp,
    make_stamp,
    parse_stamp,
    room_frame,
    stamp_matcher,
)
from gochat_py.protocol.frames import room_count_body, room_info_body


def test_round_trip() -> None:
    text = make_stamp("ab12", 7, 123456789)
    assert text == "ab12|7|123456789"
    assert parse_stamp(text.encode()) == Stamp(b"ab12", 7, 123456789)


@pytest.mark.parametrize("text", [b"", b"hello", b"a|b|c", b"ab|1", b"ab|1|2|3", b"ab|-1|5", b"ab|1|x"])
def test_not_a_stamp(text: bytes) -> None:
    assert parse_stamp(text) is None


def test_run_id_check() -> None:
    assert check_run_id("abc123") == "abc123"
    for bad in ("", "ABC", "a|b", "a_b", "x" * 33):
        with pytest.raises(ValueError):
            check_run_id(bad)


def go_room_frame(msg: str) -> bytes:
    """An op 3 body in the server's field order."""
    return (
        b'{"code":0,"msg":'
        + orjson.dumps(msg)
        + b',"fromUserId":1,"fromUserName":"bench_x_0","toUserId":0,"toUserName":"","roomId":9,"op":3,'
        b'"createTime":"2024-01-02 03:04:05"}'
    )


@given(st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=32), st.integers(0, 10**6))
def test_stamp_found_in_room_frame(run_id: str, seq: int) -> None:
    body = go_room_frame(make_stamp(run_id, seq, 42))
    assert frame_stamp(body) == Stamp(run_id.encode(), seq, 42)


def test_private_frame() -> None:
    body = (
        b'{"code":0,"msg":"r1|3|99","fromUserId":1,"fromUserName":"a","toUserId":2,"toUserName":"b",'
        b'"roomId":1,"op":2,"createTime":""}'
    )
    assert frame_stamp(body) == Stamp(b"r1", 3, 99)


def test_other_frames_have_no_stamp() -> None:
    assert frame_msg(b'{"count":3,"op":4}') is None
    assert frame_stamp(go_room_frame("just chatting")) is None
    assert frame_stamp(b"") is None


def test_room_frame() -> None:
    assert room_frame(room_info_body(5, {"1": "a", "2": "b"})) == (5, 2)
    assert room_frame(b'{"op":5,"roomId":7,"count":500,"roomUserInfo":{}}') == (5, 500)
    assert room_frame(b'{"op":5,"count":1,"roomUserInfo":{}}') == (5, 1)
    # op 4 as gochat sends it, a zero count without its key, and other key orders and spacing
    assert room_frame(room_count_body(3)) == (4, 3)
    assert room_frame(room_count_body(0)) == (4, 0)
    assert room_frame(b'{"op":4,"count":12}') == (4, 12)
    assert room_frame(b'{ "op": 4, "count": 7, "roomId": 9 }') == (4, 7)
    assert room_frame(b'{"op":4,"count":"x"}') == (4, 0)
    for other in (
        go_room_frame("x"),
        b'{"op":3}',
        b'{"op":4.0,"count":1}',
        b'{"op":"4"}',
        b'{"op":4',
        b"[4]",
        b"",
        b'{"op":4,"pad":"' + b"x" * 64 + b'"}',  # an op 4 frame is short: a long body is not one
    ):
        assert room_frame(other) is None, other


def matched(run_id: bytes, body: bytes) -> Stamp | None:
    found = stamp_matcher(run_id)(body)
    return None if found is None else Stamp(run_id, int(found[1]), int(found[2]))


@given(
    st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=32),
    st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz|", max_size=40),
)
def test_matcher_says_yes_only_where_frame_stamp_reads_the_run(run_id: str, msg: str) -> None:
    # the fast path may turn a frame down (then the slow path reads it), never read it otherwise
    for body in (go_room_frame(msg), go_room_frame(f"{run_id}|{msg}"), go_room_frame(f"{run_id}|{len(msg)}|{msg}")):
        stamp = matched(run_id.encode(), body)
        if stamp is not None:
            assert frame_stamp(body) == stamp


@given(st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=32), st.integers(0, 10**6))
def test_matcher_reads_every_frame_of_the_run_the_server_sends(run_id: str, seq: int) -> None:
    assert matched(run_id.encode(), go_room_frame(make_stamp(run_id, seq, 10**13 + seq))) == Stamp(
        run_id.encode(), seq, 10**13 + seq
    )


def test_matcher_turns_down_other_runs_and_other_frames() -> None:
    assert matched(b"r1", go_room_frame("r12|3|99")) is None  # a run id that starts like ours
    assert matched(b"r12", go_room_frame("r1|3|99")) is None
    assert matched(b"r1", go_room_frame("x|r1|3|99")) is None
    assert matched(b"r1", go_room_frame("r1|3|99|7")) is None  # a soak stamp
    assert matched(b"r1", go_room_frame("r1|-3|99")) is None
    assert matched(b"r1", room_info_body(5, {"1": "a"})) is None
    assert matched(b"r1", b'{"code":0,"msg":"r1|3|99"') == Stamp(b"r1", 3, 99)
    # a frame in another shape is left to frame_stamp, which still reads it
    other_shape = b'{"code":1,"msg":"r1|3|99","op":3}'
    assert matched(b"r1", other_shape) is None and frame_stamp(other_shape) == Stamp(b"r1", 3, 99)


def test_matcher_of_a_run_id_that_cannot_be_a_stamp_field_matches_nothing() -> None:
    assert matched(b"a|1", go_room_frame("a|1|2|3")) is None
    assert matched(b'a"', b'{"code":0,"msg":"a"|1|2"') is None
