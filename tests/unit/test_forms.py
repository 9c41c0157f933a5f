"""Request bodies bound as gin + Go's encoding/json do, with the original's exact error texts (§2.1)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_py.api.forms import (
    FORM_AUTH,
    FORM_COUNT,
    FORM_LOGIN,
    FORM_PUSH,
    FORM_REGISTER,
    FORM_ROOM,
    FORM_ROOM_INFO,
    BindError,
    Form,
    _bind_plain,
    bind,
    bind_as_go,
)

REQUIRED = "Key: '{0}.{1}' Error:Field validation for '{1}' failed on the 'required' tag"


def error_of(form: Form, body: bytes) -> str:
    with pytest.raises(BindError) as info:
        bind(form, body)
    return str(info.value)


# --- success ------------------------------------------------------------------------------------


def test_login_binds_by_go_field_name() -> None:
    assert bind(FORM_LOGIN, b'{"userName":"lock","passWord":"pw"}') == {"UserName": "lock", "Password": "pw"}


def test_push_binds_all_fields() -> None:
    body = b'{"msg":"hi","toUserId":"2","roomId":1,"authToken":"t"}'
    assert bind(FORM_PUSH, body) == {"Msg": "hi", "ToUserId": "2", "RoomId": 1, "AuthToken": "t"}


def test_room_form_ignores_the_ui_op_field() -> None:
    body = b'{"op":5,"roomId":1,"authToken":"t","msg":"m"}'
    assert bind(FORM_ROOM, body) == {"AuthToken": "t", "Msg": "m", "RoomId": 1}


def test_keys_match_case_insensitively() -> None:
    assert bind(FORM_LOGIN, b'{"USERNAME":"a","password":"b"}') == {"UserName": "a", "Password": "b"}


def test_repeated_key_last_one_wins_and_null_is_skipped() -> None:
    body = b'{"userName":"a","USERNAME":"b","passWord":"p","password":null}'
    assert bind(FORM_LOGIN, body) == {"UserName": "b", "Password": "p"}


def test_unknown_keys_and_trailing_data_are_ignored() -> None:
    body = b' \r\n{"userName":"a","passWord":"b","x":[1,{"y":null}]} {garbage'
    assert bind(FORM_LOGIN, body) == {"UserName": "a", "Password": "b"}


def test_negative_int_passes_required() -> None:
    assert bind(FORM_COUNT, b'{"roomId":-5}') == {"RoomId": -5}


@pytest.mark.parametrize(
    ("literal", "value"), [(b"9223372036854775807", 2**63 - 1), (b"-9223372036854775808", -(2**63))]
)
def test_int64_limits(literal: bytes, value: int) -> None:
    assert bind(FORM_COUNT, b'{"roomId":' + literal + b"}") == {"RoomId": value}


def test_minus_zero_is_zero_and_fails_required() -> None:
    assert error_of(FORM_COUNT, b'{"roomId":-0}') == REQUIRED.format("FormCount", "RoomId")


def test_non_ascii_and_escapes_are_decoded() -> None:
    body = '{"authToken":"t","msg":"é \\u003c\\ud83d\\ude00","roomId":1}'.encode()
    assert bind(FORM_ROOM, body)["Msg"] == "é <😀"


def test_invalid_utf8_becomes_replacement_character() -> None:
    assert bind(FORM_AUTH, b'{"authToken":"a\xffb"}') == {"AuthToken": "a\ufffdb"}


def test_lone_surrogate_escape_becomes_replacement_character() -> None:
    # Go's decoder turns an unpaired \ud800 into U+FFFD.  A Python lone surrogate cannot be
    # encoded as UTF-8 later (protobuf, orjson), so the request would fail instead.
    fields = bind(FORM_ROOM, b'{"authToken":"t","msg":"a\\ud800b","roomId":1}')
    assert fields["Msg"] == "a\ufffdb"
    fields["Msg"].encode("utf-8")


# --- decode errors ------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t\r "])
def test_empty_body_is_eof(body: bytes) -> None:
    assert error_of(FORM_LOGIN, body) == "EOF"


def test_form_encoded_body_is_a_syntax_error() -> None:
    assert error_of(FORM_LOGIN, b"userName=u&passWord=p") == "invalid character 'u' looking for beginning of value"


@pytest.mark.parametrize("body", [b'{"userName":"a"', b"{", b'{"userName":', b"[1,"])
def test_truncated_body_is_unexpected_eof(body: bytes) -> None:
    assert error_of(FORM_LOGIN, body) == "unexpected EOF"


def test_number_for_a_string_field() -> None:
    assert (
        error_of(FORM_LOGIN, b'{"userName":1,"passWord":"p"}')
        == "json: cannot unmarshal number into Go struct field FormLogin.userName of type string"
    )


def test_error_names_the_json_field_not_the_key_as_sent() -> None:
    assert (
        error_of(FORM_LOGIN, b'{"USERNAME":1,"passWord":"p"}')
        == "json: cannot unmarshal number into Go struct field FormLogin.userName of type string"
    )


def test_number_to_user_id_on_push() -> None:
    body = b'{"msg":"m","toUserId":2,"roomId":1,"authToken":"t"}'
    assert error_of(FORM_PUSH, body) == (
        "json: cannot unmarshal number into Go struct field FormPush.toUserId of type string"
    )


def test_string_room_id() -> None:
    body = b'{"msg":"m","toUserId":"2","roomId":"1","authToken":"t"}'
    assert error_of(FORM_PUSH, body) == "json: cannot unmarshal string into Go struct field FormPush.roomId of type int"


@pytest.mark.parametrize(
    ("literal", "message"),
    [
        (b"1.5", "json: cannot unmarshal number 1.5 into Go struct field FormPush.roomId of type int"),
        (b"1e2", "json: cannot unmarshal number 1e2 into Go struct field FormPush.roomId of type int"),
        (b"1.0", "json: cannot unmarshal number 1.0 into Go struct field FormPush.roomId of type int"),
        (
            b"9223372036854775808",
            "json: cannot unmarshal number 9223372036854775808 into Go struct field FormPush.roomId of type int",
        ),
        (b"true", "json: cannot unmarshal bool into Go struct field FormPush.roomId of type int"),
        (b"[1]", "json: cannot unmarshal array into Go struct field FormPush.roomId of type int"),
        (b'{"a":1}', "json: cannot unmarshal object into Go struct field FormPush.roomId of type int"),
    ],
)
def test_bad_room_id_values(literal: bytes, message: str) -> None:
    body = b'{"msg":"m","toUserId":"2","roomId":' + literal + b',"authToken":"t"}'
    assert error_of(FORM_PUSH, body) == message


@pytest.mark.parametrize(
    ("literal", "kind"), [(b"false", "bool"), (b"[]", "array"), (b"{}", "object"), (b"-1.5", "number")]
)
def test_bad_string_field_values(literal: bytes, kind: str) -> None:
    assert error_of(FORM_AUTH, b'{"authToken":' + literal + b"}") == (
        f"json: cannot unmarshal {kind} into Go struct field FormCheckAuth.authToken of type string"
    )


def test_first_type_error_is_reported_and_validation_does_not_run() -> None:
    body = b'{"roomId":"x","msg":5}'
    assert error_of(FORM_ROOM, body) == (
        "json: cannot unmarshal string into Go struct field FormRoom.roomId of type int"
    )


@pytest.mark.parametrize(
    ("body", "kind"), [(b"[1]", "array"), (b'"x"', "string"), (b"12", "number"), (b"true", "bool")]
)
def test_top_level_non_object(body: bytes, kind: str) -> None:
    assert error_of(FORM_LOGIN, body) == f"json: cannot unmarshal {kind} into Go value of type handler.FormLogin"


# --- validation ---------------------------------------------------------------------------------


def test_empty_login_matches_the_spec_message() -> None:
    assert error_of(FORM_LOGIN, b"{}") == (
        "Key: 'FormLogin.UserName' Error:Field validation for 'UserName' failed on the 'required' tag\n"
        "Key: 'FormLogin.Password' Error:Field validation for 'Password' failed on the 'required' tag"
    )


def test_top_level_null_is_like_an_empty_object() -> None:
    assert error_of(FORM_LOGIN, b"null") == error_of(FORM_LOGIN, b"{}")


def test_empty_string_and_null_fail_required() -> None:
    assert error_of(FORM_REGISTER, b'{"userName":"","passWord":null}') == "\n".join(
        [REQUIRED.format("FormRegister", "UserName"), REQUIRED.format("FormRegister", "Password")]
    )


def test_only_the_missing_fields_are_listed() -> None:
    assert error_of(FORM_LOGIN, b'{"userName":"a"}') == REQUIRED.format("FormLogin", "Password")


def test_push_lists_fields_in_struct_order() -> None:
    assert error_of(FORM_PUSH, b'{"roomId":0}') == "\n".join(
        REQUIRED.format("FormPush", name) for name in ("Msg", "ToUserId", "RoomId", "AuthToken")
    )


def test_room_lists_fields_in_struct_order() -> None:
    assert error_of(FORM_ROOM, b"{}") == "\n".join(
        REQUIRED.format("FormRoom", name) for name in ("AuthToken", "Msg", "RoomId")
    )


def test_zero_room_fails_required() -> None:
    assert error_of(FORM_COUNT, b'{"roomId":0,"authToken":"t"}') == REQUIRED.format("FormCount", "RoomId")
    assert error_of(FORM_ROOM_INFO, b'{"authToken":"t"}') == REQUIRED.format("FormRoomInfo", "RoomId")


def test_auth_form() -> None:
    assert bind(FORM_AUTH, b'{"authToken":"abc","roomId":1}') == {"AuthToken": "abc"}
    assert error_of(FORM_AUTH, b'{"authToken":""}') == REQUIRED.format("FormCheckAuth", "AuthToken")


def test_bind_error_is_a_value_error() -> None:
    assert issubclass(BindError, ValueError)


# -- the fast path gives Go's answer ---------------------------------------------------------

_KEYS = st.sampled_from(["msg", "Msg", "MSG", "toUserId", "touserid", "roomId", "authToken", "op", "x"])
_VALUES = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.just({"nested": 1}),
    st.just([1, "a"]),
)


def _outcome(bind_fn: Any, form: Any, body: bytes) -> Any:
    try:
        return ("ok", bind_fn(form, body))
    except BindError as exc:
        return ("error", str(exc))


@given(
    pairs=st.lists(st.tuples(_KEYS, _VALUES), max_size=7),
    spacing=st.sampled_from(["", " ", "\n"]),
    tail=st.sampled_from(["", " ", "x", "{}"]),
)
@settings(max_examples=400, deadline=None)
def test_the_plain_path_agrees_with_the_go_decoder(pairs: list[tuple[str, Any]], spacing: str, tail: str) -> None:
    """Any object, repeated and differently spelled keys included, binds as Go binds it."""
    members = [f"{json.dumps(k)}{spacing}:{spacing}{json.dumps(v)}" for k, v in pairs]
    body = ("{" + ",".join(members) + "}" + tail).encode()
    for form in (FORM_PUSH, FORM_ROOM, FORM_AUTH):
        assert _outcome(bind, form, body) == _outcome(bind_as_go, form, body), body


@given(
    msg=st.text(min_size=1, max_size=20),
    to=st.text(min_size=1, max_size=5),
    room=st.integers(min_value=-(2**63), max_value=2**63 - 1).filter(bool),
    token=st.text(min_size=1, max_size=10),
    extra=st.sampled_from(["", ',"op":3', ',"msg":"again"', ',"Msg":"x"', ',"deep":{"a":1}']),
)
@settings(max_examples=300, deadline=None)
def test_well_formed_pushes_take_the_plain_path_and_agree(msg: str, to: str, room: int, token: str, extra: str) -> None:
    fields = {"msg": msg, "toUserId": to, "roomId": room, "authToken": token}
    body = (json.dumps(fields)[:-1] + extra + "}").encode()
    assert _outcome(bind, FORM_PUSH, body) == _outcome(bind_as_go, FORM_PUSH, body), body
    plain = _bind_plain(FORM_PUSH, body)
    if extra in ("", ',"op":3'):
        # (a ':' right after a quote inside a value makes the plain path count one key too many
        # and leave the body to the Go decoder: slower, and still the same answer)
        if ":" not in msg + to + token:
            assert plain == {"Msg": msg, "ToUserId": to, "RoomId": room, "AuthToken": token}
    else:
        assert plain is None  # repeated, respelled or nested keys: Go's decoder decides
