"""The RedisMsg layout on the queue (spec §4.3): Go field order, base64 msg, zero fields omitted."""

from __future__ import annotations

import base64

import pytest

from gochat_py.protocol.frames import Send
from gochat_py.protocol.queue_message import QueueMessage, QueueMessageError

OP3_BODY = (
    '{"code":0,"msg":"hi \\u003cb\\u003e \\u0026 é","fromUserId":1,"fromUserName":"lock",'
    '"toUserId":0,"toUserName":"","roomId":1,"op":3,"createTime":"2024-01-02 03:04:05"}'
).encode()
SPEC_OP3_MESSAGE = (
    b'{"op":3,"roomId":1,"msg":"eyJjb2RlIjowLCJtc2ciOiJoaSBcdTAwM2NiXHUwMDNlIFx1MDAyNiDDqSIsImZyb21Vc2VySW'
    b"QiOjEsImZyb21Vc2VyTmFtZSI6ImxvY2siLCJ0b1VzZXJJZCI6MCwidG9Vc2VyTmFtZSI6IiIsInJvb21JZCI6MSwib3AiOjMsIm"
    b'NyZWF0ZVRpbWUiOiIyMDI0LTAxLTAyIDAzOjA0OjA1In0=","count":2,"roomUserInfo":{"1":"lock","10":"x","2":"test"}}'
)


def test_spec_room_message_bytes() -> None:
    body = Send(
        msg="hi <b> & é",
        from_user_id=1,
        from_user_name="lock",
        room_id=1,
        op=3,
        create_time="2024-01-02 03:04:05",
    ).encode()
    assert body == OP3_BODY
    message = QueueMessage(op=3, room_id=1, msg=body, count=2, room_user_info={"2": "test", "10": "x", "1": "lock"})
    assert message.encode() == SPEC_OP3_MESSAGE


def test_spec_room_message_decodes() -> None:
    message = QueueMessage.decode(SPEC_OP3_MESSAGE)
    assert message.op == 3
    assert message.room_id == 1
    assert message.server_id == ""
    assert message.user_id == 0
    assert message.msg == OP3_BODY
    assert message.count == 2
    assert message.room_user_info == {"1": "lock", "10": "x", "2": "test"}


def test_private_message_layout() -> None:
    body = b'{"code":0,"msg":"hello"}'
    encoded = QueueMessage(op=2, server_id="ws-abc", user_id=2, msg=body).encode()
    b64 = base64.b64encode(body).decode()
    assert encoded == f'{{"op":2,"serverId":"ws-abc","userId":2,"msg":"{b64}","count":0,"roomUserInfo":null}}'.encode()


def test_private_message_without_server_omits_server_id() -> None:
    encoded = QueueMessage(op=2, user_id=2, msg=b"x").encode()
    assert encoded == b'{"op":2,"userId":2,"msg":"eA==","count":0,"roomUserInfo":null}'


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            QueueMessage(op=3, room_id=1, msg=None, count=1, room_user_info={"2": "test"}),
            b'{"op":3,"roomId":1,"msg":null,"count":1,"roomUserInfo":{"2":"test"}}',
        ),
        (
            QueueMessage(op=3, room_id=1, msg=None, count=0, room_user_info={}),
            b'{"op":3,"roomId":1,"msg":null,"count":0,"roomUserInfo":{}}',
        ),
        (
            QueueMessage(op=4, room_id=1, count=3),
            b'{"op":4,"roomId":1,"msg":null,"count":3,"roomUserInfo":null}',
        ),
        (
            QueueMessage(op=5, room_id=1, count=2, room_user_info={"2": "test", "1": "lock"}),
            b'{"op":5,"roomId":1,"msg":null,"count":2,"roomUserInfo":{"1":"lock","2":"test"}}',
        ),
        (QueueMessage(op=0), b'{"op":0,"msg":null,"count":0,"roomUserInfo":null}'),
    ],
)
def test_spec_producer_examples(message: QueueMessage, expected: bytes) -> None:
    assert message.encode() == expected


def test_empty_msg_is_an_empty_string_not_null() -> None:
    assert b'"msg":""' in QueueMessage(op=3, room_id=1, msg=b"").encode()
    assert QueueMessage.decode(b'{"op":3,"msg":""}').msg == b""


def test_member_names_are_go_escaped() -> None:
    # Go's encoding/json writes <, > and & as \u003c, \u003e, \u0026 everywhere, also in RedisMsg.
    encoded = QueueMessage(op=5, room_id=1, count=1, room_user_info={"1": "<b>&"}).encode()
    assert encoded == b'{"op":5,"roomId":1,"msg":null,"count":1,"roomUserInfo":{"1":"\\u003cb\\u003e\\u0026"}}'


@pytest.mark.parametrize(
    "message",
    [
        QueueMessage(op=2, server_id="ws-1", user_id=9, msg=b"\x00\xff binary"),
        QueueMessage(op=3, room_id=-1, msg=OP3_BODY, count=2, room_user_info={"1": "é", "10": "<x>"}),
        QueueMessage(op=4, room_id=5, count=0),
        QueueMessage(op=5, room_id=5, room_user_info={}),
    ],
)
def test_round_trip(message: QueueMessage) -> None:
    assert QueueMessage.decode(message.encode()) == message


def test_decode_accepts_str_and_missing_fields() -> None:
    message = QueueMessage.decode('{"op":4}')
    assert message == QueueMessage(op=4)
    assert QueueMessage.decode(b"{}").op == 0


def test_decode_ignores_unknown_keys() -> None:
    assert QueueMessage.decode(b'{"op":4,"count":2,"extra":[1,2]}') == QueueMessage(op=4, count=2)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[1,2]",
        b'"op"',
        b"null",
        b'{"op":"3"}',
        b'{"op":true}',
        b'{"op":3.0}',
        b'{"op":3,"roomId":"1"}',
        b'{"op":3,"count":1.5}',
        b'{"op":3,"msg":"abc"}',  # bad padding
        b'{"op":3,"msg":"a*b="}',  # not the base64 alphabet
        b'{"op":3,"msg":5}',
        b'{"op":3,"msg":["eA=="]}',
        b'{"op":3,"roomUserInfo":[]}',
        b'{"op":3,"roomUserInfo":"x"}',
        b'{"op":3,"roomUserInfo":{"1":2}}',
    ],
)
def test_decode_rejects_bad_input(data: bytes) -> None:
    with pytest.raises(QueueMessageError):
        QueueMessage.decode(data)


def test_decode_rejects_non_ascii_msg_with_queue_message_error() -> None:
    # The queue reader only catches QueueMessageError; any other exception escapes the task loop.
    with pytest.raises(QueueMessageError):
        QueueMessage.decode('{"op":3,"msg":"é"}'.encode())


def test_decode_rejects_non_string_server_id() -> None:
    # Go: "json: cannot unmarshal number into Go struct field RedisMsg.serverId of type string";
    # the port turns 5 into "5" and ["a"] into "['a']" and routes to a server that does not exist.
    for server_id in (b"5", b'["a"]'):
        with pytest.raises(QueueMessageError):
            QueueMessage.decode(b'{"op":2,"serverId":' + server_id + b',"userId":1,"msg":null}')


def test_null_server_id_is_empty() -> None:
    assert QueueMessage.decode(b'{"op":2,"serverId":null,"userId":1}').server_id == ""


def test_queue_message_error_is_a_value_error() -> None:
    assert issubclass(QueueMessageError, ValueError)
