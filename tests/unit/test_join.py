"""The first websocket message, {"authToken": T, "roomId": R}, decoded leniently as Go does (§7.2)."""

from __future__ import annotations

import pytest

from gochat_py.protocol.join import Join, JoinError, fold_keys, int_or_zero, parse_join


def test_spec_join_message() -> None:
    assert parse_join(b'{"authToken":"tok","roomId":1}') == Join(auth_token="tok", room_id=1)


def test_str_input_is_accepted() -> None:
    assert parse_join('{"authToken":"tok","roomId":2}') == Join("tok", 2)


@pytest.mark.parametrize(
    "data",
    [
        b'{"AUTHTOKEN":"tok","ROOMID":3}',
        b'{"authtoken":"tok","roomid":3}',
        b'{"AuthToken":"tok","RoomId":3}',
    ],
)
def test_keys_match_case_insensitively(data: bytes) -> None:
    assert parse_join(data) == Join("tok", 3)


def test_unknown_keys_are_ignored() -> None:
    assert parse_join(b'{"authToken":"tok","roomId":1,"serverId":"x","op":5,"extra":{}}') == Join("tok", 1)


def test_missing_room_is_zero() -> None:
    assert parse_join(b'{"authToken":"tok"}').room_id == 0


def test_negative_room_is_kept() -> None:
    assert parse_join(b'{"authToken":"tok","roomId":-1}').room_id == -1


@pytest.mark.parametrize(
    "room",
    [b'"1"', b"1.5", b"1.0", b"1e2", b"true", b"false", b"null", b"[1]", b'{"id":1}', b"100000000000000000000000"],
)
def test_room_of_the_wrong_type_counts_as_zero_and_the_join_proceeds(room: bytes) -> None:
    assert parse_join(b'{"authToken":"tok","roomId":' + room + b"}") == Join("tok", 0)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not json",
        b"{",
        b"null",
        b"[]",
        b'"tok"',
        b"1",
        b"{}",
        b'{"roomId":1}',
        b'{"authToken":"","roomId":1}',
        b'{"authToken":null,"roomId":1}',
        b'{"authToken":5,"roomId":1}',
        b'{"authToken":["tok"],"roomId":1}',
        b'{"authToken":{"t":1}}',
    ],
)
def test_refused_join_messages(data: bytes) -> None:
    with pytest.raises(JoinError):
        parse_join(data)


def test_join_error_is_a_value_error_with_a_reason() -> None:
    with pytest.raises(ValueError, match="authToken"):
        parse_join(b'{"roomId":1}')
    with pytest.raises(JoinError, match="not JSON"):
        parse_join(b"{oops")


def test_repeated_key_in_another_case_last_one_wins_as_in_go() -> None:
    # Go's decoder assigns every matching key in document order, so the last occurrence wins.
    assert parse_join(b'{"authToken":"first","AUTHTOKEN":"second","roomId":1}').auth_token == "second"
    assert parse_join(b'{"roomId":1,"authToken":"t","ROOMID":2}').room_id == 2


def test_repeated_key_with_null_keeps_the_earlier_value() -> None:
    # A JSON null leaves a Go string field untouched.
    assert parse_join(b'{"authToken":"tok","AUTHTOKEN":null}').auth_token == "tok"


def test_int_or_zero() -> None:
    assert int_or_zero(5) == 5
    assert int_or_zero(-3) == -3
    assert int_or_zero(True) == 0
    assert int_or_zero(2.0) == 0
    assert int_or_zero("7") == 0
    assert int_or_zero(None) == 0


def test_fold_keys_lowercases() -> None:
    assert fold_keys({"AuthToken": "a", "RoomID": 1}) == {"authtoken": "a", "roomid": 1}
