"""The message logic puts on the queue and task takes off it.

The layout is the original's ``RedisMsg`` (Go JSON: ``op, serverId?, roomId?, userId?, msg,
count, roomUserInfo``, with ``msg`` the frame body in standard base64, or null), so tools that
read the original queue can read this one.  It travels as the field ``m`` of a Redis Stream entry.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from gochat_py.protocol.frames import go_json, sorted_members

# Ops that only travel between the layers, never to a client.
OP_DISCONNECT_USER = 101  # close every socket of ``user_id`` (logout)
# A protocol-v2 event (join, leave, typing) for the v2 sockets of ``room_id`` or ``user_id``; ``msg``
# is the event as those sockets receive it.  v1 sockets never see it.
OP_V2_EVENT = 102


class QueueMessageError(ValueError):
    """A queue entry that cannot be decoded; it is logged and acknowledged, never retried."""


@dataclass(frozen=True, slots=True)
class QueueMessage:
    op: int
    server_id: str = ""
    room_id: int = 0
    user_id: int = 0
    msg: bytes | None = None
    count: int = 0
    room_user_info: Mapping[str, str] | None = field(default=None)

    def encode(self) -> bytes:
        body: dict[str, object] = {"op": self.op}
        if self.server_id:
            body["serverId"] = self.server_id
        if self.room_id:
            body["roomId"] = self.room_id
        if self.user_id:
            body["userId"] = self.user_id
        body["msg"] = None if self.msg is None else base64.b64encode(self.msg).decode("ascii")
        body["count"] = self.count
        body["roomUserInfo"] = sorted_members(self.room_user_info)
        return go_json(body)

    @classmethod
    def decode(cls, data: bytes | str) -> QueueMessage:
        try:
            raw = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise QueueMessageError(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise QueueMessageError("not a JSON object")
        try:
            msg = raw.get("msg")
            info = raw.get("roomUserInfo")
            if info is not None and not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                raise QueueMessageError("roomUserInfo is not an object of strings")
            return cls(
                op=_int(raw.get("op", 0)),
                server_id=_str(raw.get("serverId")),
                room_id=_int(raw.get("roomId", 0)),
                user_id=_int(raw.get("userId", 0)),
                msg=None if msg is None else base64.b64decode(msg, validate=True),
                count=_int(raw.get("count", 0)),
                room_user_info=info,
            )
        except (ValueError, TypeError) as exc:  # binascii.Error is a ValueError
            raise QueueMessageError(f"bad field: {exc}") from exc


def _str(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise QueueMessageError(f"expected a string, got {value!r}")
    return value


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise QueueMessageError(f"expected an integer, got {value!r}")
    return value
