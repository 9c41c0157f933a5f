"""Frame bodies (ops 2 to 5) must be byte-identical to what the Go original writes (spec §7.3)."""

from __future__ import annotations

import base64
import json

import orjson
import pytest

from gochat_py.protocol import frames
from gochat_py.protocol.frames import Send, go_json, room_count_body, room_info_body, sorted_members

# Spec §4.3: the verified op-3 body and its base64 as carried in the queue message.
OP3_BODY = (
    '{"code":0,"msg":"hi \\u003cb\\u003e \\u0026 é","fromUserId":1,"fromUserName":"lock",'
    '"toUserId":0,"toUserName":"","roomId":1,"op":3,"createTime":"2024-01-02 03:04:05"}'
).encode()
OP3_BASE64 = (
    "eyJjb2RlIjowLCJtc2ciOiJoaSBcdTAwM2NiXHUwMDNlIFx1MDAyNiDDqSIsImZyb21Vc2VySWQiOjEsImZyb21Vc2VyTmFtZSI6"
    "ImxvY2siLCJ0b1VzZXJJZCI6MCwidG9Vc2VyTmFtZSI6IiIsInJvb21JZCI6MSwib3AiOjMsImNyZWF0ZVRpbWUiOiIyMDI0LTAx"
    "LTAyIDAzOjA0OjA1In0="
)


def test_op_constants() -> None:
    assert (frames.OP_SINGLE_SEND, frames.OP_ROOM_SEND) == (2, 3)
    assert (frames.OP_ROOM_COUNT_SEND, frames.OP_ROOM_INFO_SEND, frames.OP_BUILD_TCP_CONN) == (4, 5, 6)


def test_room_message_matches_the_spec_bytes() -> None:
    send = Send(
        msg="hi <b> & é",
        from_user_id=1,
        from_user_name="lock",
        room_id=1,
        op=frames.OP_ROOM_SEND,
        create_time="2024-01-02 03:04:05",
    )
    body = send.encode()
    assert body == OP3_BODY
    assert base64.b64encode(body).decode() == OP3_BASE64


def test_private_message_matches_the_spec_bytes() -> None:
    send = Send(
        msg="hello",
        from_user_id=1,
        from_user_name="lock",
        to_user_id=2,
        to_user_name="test",
        room_id=1,
        op=frames.OP_SINGLE_SEND,
    )
    assert send.encode() == (
        b'{"code":0,"msg":"hello","fromUserId":1,"fromUserName":"lock","toUserId":2,'
        b'"toUserName":"test","roomId":1,"op":2,"createTime":""}'
    )


def test_send_keeps_every_field_even_when_zero() -> None:
    decoded = json.loads(Send(msg="", from_user_id=0, from_user_name="", room_id=0, op=3).encode())
    assert list(decoded) == [
        "code",
        "msg",
        "fromUserId",
        "fromUserName",
        "toUserId",
        "toUserName",
        "roomId",
        "op",
        "createTime",
    ]


def test_room_count_body() -> None:
    assert room_count_body(3) == b'{"count":3,"op":4}'
    assert room_count_body(0) == b'{"op":4}'


def test_room_info_body_matches_the_spec_bytes() -> None:
    body = room_info_body(1, {"2": "test", "1": "lock"})
    assert body == b'{"op":5,"roomId":1,"count":2,"roomUserInfo":{"1":"lock","2":"test"}}'


def test_room_info_body_omits_zero_room_and_count() -> None:
    assert room_info_body(0, {}) == b'{"op":5,"roomUserInfo":{}}'
    assert room_info_body(0, None) == b'{"op":5,"roomUserInfo":null}'
    assert room_info_body(7, None) == b'{"op":5,"roomId":7,"roomUserInfo":null}'
    assert room_info_body(0, {"1": "a"}) == b'{"op":5,"count":1,"roomUserInfo":{"1":"a"}}'


def test_room_info_member_keys_sort_as_byte_strings() -> None:
    body = room_info_body(1, {"2": "b", "10": "x", "1": "a", "9": "c"})
    assert body == b'{"op":5,"roomId":1,"count":4,"roomUserInfo":{"1":"a","10":"x","2":"b","9":"c"}}'


def test_room_info_escapes_member_names() -> None:
    body = room_info_body(1, {"1": "<a&b>"})
    assert body == b'{"op":5,"roomId":1,"count":1,"roomUserInfo":{"1":"\\u003ca\\u0026b\\u003e"}}'


def test_sorted_members() -> None:
    assert sorted_members(None) is None
    assert list(sorted_members({"2": "", "10": "", "1": "", "100": ""}) or {}) == ["1", "10", "100", "2"]


@pytest.mark.parametrize(
    ("text", "encoded"),
    [
        ("<", b'"\\u003c"'),
        (">", b'"\\u003e"'),
        ("&", b'"\\u0026"'),
        ("\u2028", b'"\\u2028"'),
        ("\u2029", b'"\\u2029"'),
        ("é中😀", '"é中😀"'.encode()),  # non-ASCII raw UTF-8
        ('"\\', b'"\\"\\\\"'),
        ("\n\r\t", b'"\\n\\r\\t"'),
        ("\x01\x1f", b'"\\u0001\\u001f"'),
        ("\x7f", b'"\x7f"'),
    ],
)
def test_go_json_string_escapes(text: str, encoded: bytes) -> None:
    assert go_json(text) == encoded


def test_go_json_backspace_and_form_feed_as_go_1_18() -> None:
    # The original is built with Go 1.18, whose encoding/json writes \b and \f as \u0008 and
    # \u000c (the short forms only arrived in Go 1.22).  orjson writes "\b" and "\f".
    assert go_json("a\bb\fc") == b'"a\\u0008b\\u000cc"'


def test_go_json_output_is_still_valid_json() -> None:
    value = {"m": "<&>\u2028 é", "n": 1}
    assert orjson.loads(go_json(value)) == value
