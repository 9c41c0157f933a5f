"""Protocol v2's sans-I/O codec: the hello and its fallback to v1, commands and their errors,
every encoder against the published JSON Schema, the client side, and fuzzing for exceptions."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from gochat_py.protocol import v2_schema
from gochat_py.protocol.join import Join, parse_join
from gochat_py.protocol.tcp_frame import FrameDecoder, encode_frame
from gochat_py.protocol.v2 import (
    CommandError,
    HelloError,
    encode,
    encode_error,
    encode_result,
    encode_welcome,
    parse_command,
    parse_hello,
)
from gochat_py.protocol.v2_client import (
    ClientCodec,
    Reply,
    ServerMessageError,
    UnknownEvent,
    encode_command,
    encode_hello,
    parse_server_message,
)
from gochat_py.protocol.v2_codes import (
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN,
    MAX_CID,
    ErrorCode,
)
from gochat_py.protocol.v2_messages import (
    COMMANDS,
    RESULTS,
    ErrorBody,
    ErrorReply,
    Gap,
    Hello,
    History,
    HistoryResult,
    Limits,
    MemberJoined,
    MemberLeft,
    Ping,
    PingResult,
    Presence,
    PresenceResult,
    PrivateMessage,
    Publish,
    PublishResult,
    RoomMessage,
    Send,
    SendResult,
    SessionEnded,
    Subscribe,
    SubscribeResult,
    Typing,
    TypingEvent,
    TypingResult,
    Unsubscribe,
    UnsubscribeResult,
    User,
    Welcome,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = v2_schema.v2_schema()
FUZZ = settings(max_examples=300, deadline=None)


def _validator(definition: str) -> Any:
    """Validates against ``#/$defs/<definition>``: with jsonschema_rs (an independent validator,
    installed with schemathesis) when it is there, else through the pydantic models."""
    try:
        import jsonschema_rs
    except ImportError:  # pragma: no cover - the test extras bring it
        adapter = TypeAdapter(getattr(v2_schema, definition))
        return lambda value: adapter.validate_python(value)
    validator = jsonschema_rs.Draft202012Validator({"$ref": f"#/$defs/{definition}", "$defs": SCHEMA["$defs"]})
    return validator.validate


check_client = _validator("ClientMessage")
check_server = _validator("ServerMessage")


def schema_accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
    except Exception:
        return False
    return True


ANN = User(id=1, name="ann")
LIMITS = Limits(rooms=50, message_length=4096, frame_size=32767, publish_rate=10.0, publish_burst=50)
ROOM_MESSAGE = RoomMessage(room=7, id="1765054800000-0", sender=ANN, msg="hi <all>", time=1765054800000)
PRIVATE_MESSAGE = PrivateMessage(user=1, to=2, id="1765054800001-0", sender=ANN, msg="psst", time=1765054800001)


# ---- the first message: hello or v1 ----------------------------------------------------------


def test_hello() -> None:
    assert parse_hello(b'{"v":2,"authToken":"tok"}') == Hello(v=2, auth_token="tok")
    assert parse_hello('{"v":2,"authToken":"tok","since":"5-0"}') == Hello(v=2, auth_token="tok", since="5-0")


def test_a_later_version_is_a_hello_too_and_the_welcome_says_which_version_the_socket_speaks() -> None:
    hello = parse_hello(b'{"v":3,"authToken":"tok"}')
    assert hello is not None and hello.v == 3


@pytest.mark.parametrize(
    "data",
    [
        b'{"authToken":"tok","roomId":1}',
        b'{"authToken":"tok","roomId":1,"since":""}',
        b'{"op":6,"authToken":"tok","roomId":1}',
        b'{"v":1,"authToken":"tok","roomId":1}',
        b'{"v":null,"authToken":"tok","roomId":1}',
        b'{"V":2,"authToken":"tok","roomId":1}',
        b"not json",
        b"[2]",
        b"",
        b"\xff",
    ],
)
def test_anything_but_a_hello_goes_to_the_v1_join_parser_unchanged(data: bytes) -> None:
    assert parse_hello(data) is None


def test_v1_join_still_parses_as_before() -> None:
    data = b'{"authToken":"tok","roomId":1,"since":"5-0"}'
    assert parse_hello(data) is None
    assert parse_join(data) == Join("tok", 1, "5-0")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b'{"v":2}', "authToken"),
        (b'{"v":2,"authToken":""}', "authToken"),
        (b'{"v":2,"authToken":5}', "authToken"),
        (b'{"v":2,"authtoken":"tok"}', "authToken"),  # keys are exact in v2
        (b'{"v":2,"authToken":null}', "null"),
        (b'{"v":2,"authToken":"tok","since":7}', "since"),
        (b'{"v":"2","authToken":"tok"}', "v"),
        (b'{"v":true,"authToken":"tok"}', "v"),
        (b'{"v":2.0,"authToken":"tok"}', "v"),
        (b'{"v":0,"authToken":"tok"}', "v"),
    ],
)
def test_bad_hellos_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(HelloError, match=reason):
        parse_hello(data)


def test_hello_over_tcp_is_the_payload_of_a_v1_frame() -> None:
    decoder = FrameDecoder()
    stream = encode_frame(encode_hello("tok")) + encode_frame(encode_command(Ping(cid=1)))
    payloads = [p for i in range(len(stream)) for p in decoder.feed(stream[i : i + 1])]
    assert parse_hello(payloads[0]) == Hello(v=2, auth_token="tok")
    assert parse_command(payloads[1]) == Ping(cid=1)
    assert encode_frame(encode_hello("q3v...Q="))[:4] == bytes.fromhex("76310022")  # as docs/protocol.md shows


# ---- commands --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "command"),
    [
        ({"cid": 1, "cmd": "subscribe", "room": 7}, Subscribe(cid=1, room=7)),
        ({"cid": 2, "cmd": "subscribe", "room": 7, "since": "5-0"}, Subscribe(cid=2, room=7, since="5-0")),
        ({"cid": 2, "cmd": "subscribe", "room": 7, "since": "garbage"}, Subscribe(cid=2, room=7, since="garbage")),
        ({"cid": 3, "cmd": "unsubscribe", "room": 7}, Unsubscribe(cid=3, room=7)),
        ({"cid": 4, "cmd": "publish", "room": 7, "msg": "hi"}, Publish(cid=4, room=7, msg="hi")),
        (
            {"cid": 4, "cmd": "publish", "room": 7, "msg": "hi", "mid": "m-1"},
            Publish(cid=4, room=7, msg="hi", mid="m-1"),
        ),
        ({"cid": 5, "cmd": "send", "to": 2, "msg": "psst"}, Send(cid=5, to=2, msg="psst")),
        ({"cid": 6, "cmd": "history", "room": 7}, History(cid=6, room=7)),
        (
            {"cid": 6, "cmd": "history", "user": 2, "before": "5-0", "limit": 100},
            History(cid=6, user=2, before="5-0", limit=100),
        ),
        ({"cid": 7, "cmd": "presence", "room": 7}, Presence(cid=7, room=7)),
        ({"cid": 8, "cmd": "typing", "room": 7}, Typing(cid=8, room=7)),
        ({"cid": 8, "cmd": "typing", "to": 2}, Typing(cid=8, to=2)),
        ({"cid": MAX_CID, "cmd": "ping"}, Ping(cid=MAX_CID)),
        ({"cid": 9, "cmd": "ping", "later": {"fields": "are ignored"}}, Ping(cid=9)),
    ],
)
def test_commands(data: dict[str, Any], command: Any) -> None:
    encoded = orjson.dumps(data)
    assert parse_command(encoded) == command
    assert parse_command(encoded.decode()) == command
    assert parse_command(encode_command(command)) == command
    check_client(orjson.loads(encode_command(command)))


def test_every_command_is_tested_above() -> None:
    assert set(COMMANDS) == {"subscribe", "unsubscribe", "publish", "send", "history", "presence", "typing", "ping"}


@pytest.mark.parametrize(
    ("data", "code", "cid", "reason"),
    [
        (b"not json", ErrorCode.BAD_REQUEST, 0, "JSON object"),
        (b"[1]", ErrorCode.BAD_REQUEST, 0, "JSON object"),
        (b'{"cmd":"ping"}', ErrorCode.BAD_REQUEST, 0, "cid"),
        (b'{"cid":0,"cmd":"ping"}', ErrorCode.BAD_REQUEST, 0, "cid"),
        (b'{"cid":2147483648,"cmd":"ping"}', ErrorCode.BAD_REQUEST, 0, "cid"),
        (b'{"cid":"3","cmd":"ping"}', ErrorCode.BAD_REQUEST, 0, "cid"),
        (b'{"cid":true,"cmd":"ping"}', ErrorCode.BAD_REQUEST, 0, "cid"),
        (b'{"cid":3}', ErrorCode.BAD_REQUEST, 3, "cmd"),
        (b'{"cid":3,"cmd":5}', ErrorCode.BAD_REQUEST, 3, "cmd"),
        (b'{"cid":3,"cmd":"fly"}', ErrorCode.UNKNOWN_COMMAND, 3, "unknown command 'fly'"),
        (b'{"cid":3,"cmd":"Ping"}', ErrorCode.UNKNOWN_COMMAND, 3, "unknown command"),
        (b'{"cid":3,"cmd":"subscribe"}', ErrorCode.BAD_REQUEST, 3, "room"),
        (b'{"cid":3,"cmd":"subscribe","room":0}', ErrorCode.BAD_REQUEST, 3, "room"),
        (b'{"cid":3,"cmd":"subscribe","room":"7"}', ErrorCode.BAD_REQUEST, 3, "room"),
        (b'{"cid":3,"cmd":"subscribe","room":7.0}', ErrorCode.BAD_REQUEST, 3, "room"),
        (b'{"cid":3,"cmd":"subscribe","room":9223372036854775808}', ErrorCode.BAD_REQUEST, 3, "room"),
        (b'{"cid":3,"cmd":"subscribe","room":7,"since":5}', ErrorCode.BAD_REQUEST, 3, "since"),
        (b'{"cid":3,"cmd":"subscribe","room":7,"since":null}', ErrorCode.BAD_REQUEST, 3, "since must not be null"),
        (b'{"cid":3,"cmd":"publish","room":7}', ErrorCode.BAD_REQUEST, 3, "msg"),
        (b'{"cid":3,"cmd":"publish","room":7,"msg":""}', ErrorCode.BAD_REQUEST, 3, "msg"),
        (b'{"cid":3,"cmd":"publish","room":7,"msg":"hi","mid":""}', ErrorCode.BAD_REQUEST, 3, "mid"),
        (b'{"cid":3,"cmd":"publish","room":7,"msg":"hi","mid":"' + b"m" * 65 + b'"}', ErrorCode.BAD_REQUEST, 3, "mid"),
        (b'{"cid":3,"cmd":"send","room":7,"msg":"hi"}', ErrorCode.BAD_REQUEST, 3, "to"),
        (b'{"cid":3,"cmd":"history"}', ErrorCode.BAD_REQUEST, 3, "exactly one of room and user"),
        (b'{"cid":3,"cmd":"history","room":7,"user":2}', ErrorCode.BAD_REQUEST, 3, "exactly one of room and user"),
        (b'{"cid":3,"cmd":"history","room":7,"limit":0}', ErrorCode.BAD_REQUEST, 3, "limit"),
        (b'{"cid":3,"cmd":"history","room":7,"limit":101}', ErrorCode.BAD_REQUEST, 3, "limit"),
        (b'{"cid":3,"cmd":"history","room":7,"before":"yesterday"}', ErrorCode.BAD_REQUEST, 3, "before"),
        (b'{"cid":3,"cmd":"history","room":7,"before":"99999999999999999999-0"}', ErrorCode.BAD_REQUEST, 3, "before"),
        (b'{"cid":3,"cmd":"typing"}', ErrorCode.BAD_REQUEST, 3, "exactly one of room and to"),
        (b'{"cid":3,"cmd":"typing","room":7,"to":2}', ErrorCode.BAD_REQUEST, 3, "exactly one of room and to"),
        (b'{"cid":3,"cmd":"presence","Room":7}', ErrorCode.BAD_REQUEST, 3, "room"),
    ],
)
def test_refused_commands_keep_their_cid(data: bytes, code: ErrorCode, cid: int, reason: str) -> None:
    with pytest.raises(CommandError, match=reason) as caught:
        parse_command(data)
    assert (caught.value.code, caught.value.cid) == (code, cid)
    reply = orjson.loads(caught.value.reply())
    assert reply == {"cid": cid, "error": {"code": int(code), "message": caught.value.message}}
    check_server(reply)


def test_an_unknown_command_name_is_cut_short_in_the_error() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(orjson.dumps({"cid": 1, "cmd": "x" * 10_000}))
    assert len(caught.value.message) < 100


def test_the_error_does_not_echo_the_input() -> None:
    with pytest.raises(CommandError) as caught:
        parse_command(b'{"cid":1,"cmd":"subscribe","room":"secret-ish"}')
    assert "secret-ish" not in caught.value.message


def test_too_long_messages_are_refused_when_the_caller_gives_a_limit() -> None:
    publish = orjson.dumps({"cid": 4, "cmd": "publish", "room": 7, "msg": "é" * 11})
    send = orjson.dumps({"cid": 5, "cmd": "send", "to": 2, "msg": "é" * 11})
    assert parse_command(publish, max_message_length=11) == Publish(cid=4, room=7, msg="é" * 11)
    for data, cid in ((publish, 4), (send, 5)):
        assert parse_command(data).cid == cid  # no limit given
        with pytest.raises(CommandError, match="msg is too long: 11 characters, at most 10 are allowed") as caught:
            parse_command(data, max_message_length=10)
        assert (caught.value.code, caught.value.cid) == (ErrorCode.TOO_LONG, cid)


# ---- fuzz: bytes and text in, only the codec's own errors out --------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(
    ["cid", "cmd", "room", "to", "user", "msg", "mid", "since", "before", "limit", "v", "authToken"]
)
_values = st.one_of(
    _json,
    st.sampled_from([*COMMANDS, "5-0", "", 0, 1, -1, 100, 101, 2**31, 2**63]),
)
_objects = st.dictionaries(_keys, _values, max_size=6)
_inputs = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200),
    _objects.map(lambda o: json.dumps(o).encode()),  # also NaN, Infinity and huge integers
    _objects.map(json.dumps),
    st.integers(1, 600).map(lambda n: b"[" * n),
)


@FUZZ
@given(_inputs)
def test_parse_command_raises_only_command_errors(data: bytes | str) -> None:
    try:
        command = parse_command(data, max_message_length=8)
    except CommandError as exc:
        assert 0 <= exc.cid <= MAX_CID
        check_server(orjson.loads(exc.reply()))
    else:
        check_client(orjson.loads(encode_command(command)))
        assert parse_command(encode_command(command)) == command


@FUZZ
@given(_inputs)
def test_parse_hello_raises_only_hello_errors(data: bytes | str) -> None:
    try:
        hello = parse_hello(data)
    except HelloError:
        return
    if hello is not None:
        check_client(orjson.loads(encode(hello)))


@FUZZ
@given(
    st.one_of(
        _inputs,
        st.dictionaries(st.sampled_from(["type", "cid", "result", "error", "room"]), _values, max_size=4).map(
            json.dumps
        ),
    )
)
def test_parse_server_message_raises_only_server_message_errors(data: bytes | str) -> None:
    with contextlib.suppress(ServerMessageError):
        parse_server_message(data, {1: "ping", 2: "subscribe"})


# ---- server encoders, checked against the schema --------------------------------------------


def test_welcome() -> None:
    data = encode_welcome(1, "ann", 1765054800000, LIMITS)
    assert orjson.loads(data) == {
        "type": "welcome",
        "v": 2,
        "user": {"id": 1, "name": "ann"},
        "time": 1765054800000,
        "limits": {"rooms": 50, "message_length": 4096, "frame_size": 32767, "publish_rate": 10.0, "publish_burst": 50},
    }
    check_server(orjson.loads(data))


RESULT_EXAMPLES = [
    ("subscribe", SubscribeResult(room=7, members={"1": "ann", "2": "bob"}, count=2)),
    ("unsubscribe", UnsubscribeResult()),
    ("publish", PublishResult(id="1765054800000-0")),
    ("send", SendResult(id="1765054800001-0")),
    ("history", HistoryResult(messages=[PRIVATE_MESSAGE, ROOM_MESSAGE], more=True)),
    ("history", HistoryResult(messages=[], more=False)),
    ("presence", PresenceResult(room=7, members={"1": "ann"}, count=1)),
    ("typing", TypingResult()),
    ("ping", PingResult(time=1765054800000)),
]


def test_every_result_has_an_example() -> None:
    assert {cmd for cmd, _ in RESULT_EXAMPLES} == set(RESULTS) == set(COMMANDS)


@pytest.mark.parametrize(("cmd", "result"), RESULT_EXAMPLES)
def test_results(cmd: str, result: Any) -> None:
    data = encode_result(12, result)
    body = orjson.loads(data)
    assert body["cid"] == 12 and set(body) == {"cid", "result"}
    check_server(body)
    reply = parse_server_message(data, {12: cmd})
    assert reply == Reply(12, cmd, result)


def test_result_shapes() -> None:
    assert encode_result(1, UnsubscribeResult()) == b'{"cid":1,"result":{}}'
    assert encode_result(2, PublishResult(id="5-0")) == b'{"cid":2,"result":{"id":"5-0"}}'
    assert orjson.loads(encode_result(3, RESULT_EXAMPLES[0][1])) == {
        "cid": 3,
        "result": {"room": 7, "members": {"1": "ann", "2": "bob"}, "count": 2},
    }


def test_errors() -> None:
    data = encode_error(4, ErrorCode.NOT_SUBSCRIBED, "not subscribed to room 7")
    assert data == b'{"cid":4,"error":{"code":3,"message":"not subscribed to room 7"}}'
    check_server(orjson.loads(data))
    assert parse_server_message(data, {4: "publish"}) == ErrorReply(
        cid=4, error=ErrorBody(code=3, message="not subscribed to room 7")
    )


EVENT_EXAMPLES = [
    ROOM_MESSAGE,
    PRIVATE_MESSAGE,
    MemberJoined(room=7, user=User(id=2, name="bob")),
    MemberLeft(room=7, user=User(id=2, name="bob")),
    TypingEvent(room=7, sender=ANN),
    TypingEvent(user=1, sender=ANN),
    Gap(room=7, reason="too_old"),
    Gap(reason="unknown"),
    SessionEnded(reason="logged out"),
]


@pytest.mark.parametrize("event", EVENT_EXAMPLES, ids=lambda e: type(e).__name__)
def test_events(event: Any) -> None:
    data = encode(event)
    body = orjson.loads(data)
    assert None not in body.values()
    check_server(body)
    assert parse_server_message(data, {}) == event


def test_event_shapes() -> None:
    assert encode(ROOM_MESSAGE) == (
        b'{"type":"message","room":7,"id":"1765054800000-0","from":{"id":1,"name":"ann"},'
        b'"msg":"hi <all>","time":1765054800000}'
    )
    assert encode(PRIVATE_MESSAGE) == (
        b'{"type":"message","user":1,"to":2,"id":"1765054800001-0","from":{"id":1,"name":"ann"},'
        b'"msg":"psst","time":1765054800001}'
    )
    assert encode(Gap(reason="unknown")) == b'{"type":"gap","reason":"unknown"}'
    assert encode(TypingEvent(user=1, sender=ANN)) == b'{"type":"typing","user":1,"from":{"id":1,"name":"ann"}}'


@pytest.mark.parametrize(
    "body",
    [
        {"cid": 1, "result": {"unexpected": 1}},
        {"cid": 0, "result": {}},
        {"cid": 1, "error": {"code": 0, "message": "x"}},
        {"type": "message", "room": 7, "id": "x", "from": {"id": 1, "name": "a"}, "msg": "m", "time": 1},
        {"type": "typing", "room": 7, "user": 1, "from": {"id": 1, "name": "a"}},
        {"type": "typing", "from": {"id": 1, "name": "a"}},
        {"type": "gap", "reason": "lost"},
        {"type": "gap", "room": None, "reason": "unknown"},
        {"type": "welcome", "v": 3, "user": {"id": 1, "name": "a"}, "time": 1, "limits": LIMITS.model_dump()},
    ],
)
def test_the_schema_refuses_what_this_version_never_sends(body: dict[str, Any]) -> None:
    assert not schema_accepts(check_server, body)


@pytest.mark.parametrize(
    "body",
    [
        {"v": 2},
        {"cid": 1, "cmd": "history", "room": 7, "user": 2},
        {"cid": 1, "cmd": "typing"},
        {"cid": 1, "cmd": "publish", "room": 7, "msg": ""},
        {"cid": 1, "cmd": "fly"},
        {"cmd": "ping"},
    ],
)
def test_the_schema_refuses_bad_client_messages(body: dict[str, Any]) -> None:
    assert not schema_accepts(check_client, body)


def test_encoders_drop_optional_fields_that_are_not_set() -> None:
    assert encode_hello("tok") == b'{"v":2,"authToken":"tok"}'
    assert encode_hello("tok", since="5-0") == b'{"v":2,"authToken":"tok","since":"5-0"}'
    assert encode_command(Subscribe(cid=1, room=7)) == b'{"cid":1,"cmd":"subscribe","room":7}'
    assert encode_command(History(cid=2, user=3, limit=10)) == b'{"cid":2,"cmd":"history","user":3,"limit":10}'


# ---- the client side -------------------------------------------------------------------------


def test_client_codec_numbers_commands_and_matches_replies() -> None:
    codec = ClientCodec()
    assert codec.hello("tok") == b'{"v":2,"authToken":"tok"}'
    cid1, data1 = codec.command(Subscribe, room=7)
    cid2, _ = codec.command(Ping)
    assert (cid1, cid2) == (1, 2)
    assert parse_command(data1) == Subscribe(cid=1, room=7)
    assert codec.pending == {1: "subscribe", 2: "ping"}
    welcome = codec.receive(encode_welcome(1, "ann", 5, LIMITS))
    assert isinstance(welcome, Welcome) and welcome.user == ANN
    assert codec.receive(encode_result(2, PingResult(time=9))) == Reply(2, "ping", PingResult(time=9))
    error = codec.receive(encode_error(1, ErrorCode.TOO_MANY_ROOMS, "at most 50 rooms"))
    assert isinstance(error, ErrorReply) and error.error.code == ErrorCode.TOO_MANY_ROOMS
    assert codec.pending == {}
    with pytest.raises(ServerMessageError, match="no command is waiting"):
        codec.receive(encode_result(2, PingResult(time=9)))


def test_client_cids_wrap_around_before_the_limit() -> None:
    codec = ClientCodec()
    codec._next_cid = MAX_CID
    assert codec.command(Ping)[0] == MAX_CID
    assert codec.command(Ping)[0] == 1


def test_client_ignores_unknown_events_and_keys() -> None:
    assert parse_server_message(b'{"type":"reaction","room":7}', {}) == UnknownEvent(
        "reaction", {"type": "reaction", "room": 7}
    )
    assert parse_server_message(b'{"type":"gap","reason":"unknown","since":"1-0"}', {}) == Gap(reason="unknown")


@pytest.mark.parametrize(
    "data",
    [
        b"ping msg",
        b"[]",
        b"{}",
        b'{"type":5}',
        b'{"type":"gap","reason":"lost"}',
        b'{"cid":1,"result":[]}',
        b'{"cid":[1],"result":{}}',
        b'{"cid":1,"result":{"time":"now"}}',
        b'{"cid":1,"error":"oops"}',
    ],
)
def test_client_refuses_what_it_cannot_read(data: bytes) -> None:
    with pytest.raises(ServerMessageError):
        parse_server_message(data, {1: "ping"})


# ---- the published schema and the documentation ---------------------------------------------


def test_committed_schema_is_current() -> None:
    committed = (ROOT / "docs" / "protocol-v2.schema.json").read_text(encoding="utf-8")
    assert committed == v2_schema.render(), "run: python -m gochat_py.protocol.v2_schema"
    assert v2_schema.main(["--check"]) == 0


def test_schema_check_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.json"
    stale.write_text("{}\n")
    assert v2_schema.main(["--check", "--output", str(stale)]) == 1
    assert v2_schema.main(["--output", str(stale)]) == 0
    assert v2_schema.main(["--check", "--output", str(stale)]) == 0


def _v2_part() -> str:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    return text[text.index("# Protocol v2") :]


def test_every_json_line_in_the_v2_documentation_is_a_valid_message() -> None:
    blocks = re.findall(r"```json\n(.*?)```", _v2_part(), flags=re.S)
    lines = [line.split("  ")[0] for block in blocks for line in block.splitlines() if line.startswith("{")]
    assert len(lines) > 20
    for line in lines:
        body = json.loads(line)
        assert schema_accepts(check_client, body) or schema_accepts(check_server, body), line


def test_the_documentation_names_every_code_command_and_event() -> None:
    text = _v2_part()
    for code in ErrorCode:
        assert re.search(rf"\|\s*{int(code)}\s*\|\s*`{code.name.lower()}`", text), code
    for close in (CLOSE_GOING_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_TRY_AGAIN):
        assert str(close) in text
    for name in COMMANDS:
        assert f'"cmd":"{name}"' in text, name
    for kind in ("welcome", "message", "join", "leave", "typing", "gap", "session_ended"):
        assert f'"type":"{kind}"' in text, kind
