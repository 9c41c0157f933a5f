"""Bodies of the frames clients receive (ops 2 to 5), byte-compatible with the original.

The original encodes with Go's ``encoding/json``: struct fields in declaration order, map keys
sorted, ``<``, ``>``, ``&``, U+2028 and U+2029 escaped, other non-ASCII raw.  Each body is encoded
once per message and the same bytes go to every socket.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

OP_SINGLE_SEND = 2
OP_ROOM_SEND = 3
OP_ROOM_COUNT_SEND = 4
OP_ROOM_INFO_SEND = 5
OP_BUILD_TCP_CONN = 6
OP_HISTORY_GAP = 7  # new: only to sockets that opted in with "since"

_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)
# Go 1.18 (the original) writes backspace and form feed as \u escapes where orjson writes \b and
# \f.  Only an escape that starts after an even run of backslashes is one of those characters:
# in ``\\b`` the b follows an escaped backslash.
_SHORT_CONTROL = re.compile(rb"(?<!\\)((?:\\\\)*)\\([bf])")
_LONG_CONTROL = {b"b": b"\\u0008", b"f": b"\\u000c"}


def go_json(value: object) -> bytes:
    """JSON as Go's encoding/json writes it, for dicts built in Go field order."""
    data = orjson.dumps(value)
    for raw, escaped in _GO_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    if b"\\b" in data or b"\\f" in data:
        data = _SHORT_CONTROL.sub(lambda m: m.group(1) + _LONG_CONTROL[m.group(2)], data)
    return data


@dataclass(frozen=True, slots=True)
class Send:
    """The original's ``Send`` struct: the body of op-2 and op-3 frames, every field present."""

    msg: str
    from_user_id: int
    from_user_name: str
    room_id: int
    op: int
    to_user_id: int = 0
    to_user_name: str = ""
    create_time: str = ""
    code: int = 0

    def encode(self) -> bytes:
        return go_json(
            {
                "code": self.code,
                "msg": self.msg,
                "fromUserId": self.from_user_id,
                "fromUserName": self.from_user_name,
                "toUserId": self.to_user_id,
                "toUserName": self.to_user_name,
                "roomId": self.room_id,
                "op": self.op,
                "createTime": self.create_time,
            }
        )


def room_count_body(count: int) -> bytes:
    """Op 4: ``{"count":N,"op":4}``; Go's omitempty drops a zero count, giving ``{"op":4}``."""
    if count:
        return go_json({"count": count, "op": OP_ROOM_COUNT_SEND})
    return go_json({"op": OP_ROOM_COUNT_SEND})


def sorted_members(members: Mapping[str, str] | None) -> dict[str, str] | None:
    """Member maps sort by key as byte strings, as Go sorts map keys (``"1" < "10" < "2"``)."""
    if members is None:
        return None
    return {key: members[key] for key in sorted(members, key=lambda k: k.encode())}


def room_info_body(room_id: int, members: Mapping[str, str] | None) -> bytes:
    """Op 5: ``{"op":5,"roomId":R,"count":C,"roomUserInfo":{...}}``; zero roomId/count omitted."""
    body: dict[str, object] = {"op": OP_ROOM_INFO_SEND}
    if room_id:
        body["roomId"] = room_id
    if members:
        body["count"] = len(members)
    body["roomUserInfo"] = sorted_members(members)
    return go_json(body)


def history_gap_body(reason: str) -> bytes:
    """Op 7, sent before the backlog when a socket's ``since`` could not be honoured:
    ``{"op":7,"reason":"unknown"}`` (not an id of ours) or ``"too_old"`` (more was missed than is
    kept).  The backlog that follows holds what is kept; the client reloads older history over HTTP."""
    return go_json({"op": OP_HISTORY_GAP, "reason": reason})
