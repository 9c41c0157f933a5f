"""Protocol v2, the client's side, sans-I/O: commands in, bytes out; the server's bytes in, typed
welcome, replies and events out.  The same models as the server's side (v2_messages), so the two
cannot drift apart.

A result does not say which command it answers; only its ``cid`` does.  :func:`parse_server_message`
is told which command each waiting cid belongs to, and :class:`ClientCodec` keeps that table.
On TCP every message is one frame's payload (:mod:`gochat_py.protocol.tcp_frame`); the server's
keepalive payload ``ping msg`` is not JSON and is skipped before this parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError

from gochat_py.protocol.v2 import describe, encode
from gochat_py.protocol.v2_codes import MAX_CID, VERSION
from gochat_py.protocol.v2_messages import (
    RESULTS,
    Command,
    ErrorReply,
    Event,
    Gap,
    Hello,
    MemberJoined,
    MemberLeft,
    PrivateMessage,
    RoomMessage,
    SessionEnded,
    TypingEvent,
    Welcome,
    WireModel,
    wire_context,
)

C = TypeVar("C", bound=Command)

_EVENTS: dict[str, type[WireModel]] = {
    "welcome": Welcome,
    "join": MemberJoined,
    "leave": MemberLeft,
    "typing": TypingEvent,
    "gap": Gap,
    "session_ended": SessionEnded,
}


class ServerMessageError(ValueError):
    """The server sent something this version cannot read (a bug on one side, or not a v2 server)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A command's result, typed by the command it answers (SubscribeResult for subscribe, ...)."""

    cid: int
    cmd: str
    result: WireModel


@dataclass(frozen=True, slots=True)
class UnknownEvent:
    """An event type of a later version; clients ignore what they do not know."""

    type: str
    body: dict[str, Any]


ServerItem = Welcome | Reply | ErrorReply | Event | UnknownEvent


def encode_hello(auth_token: str, since: str | None = None) -> bytes:
    return encode(Hello(v=VERSION, auth_token=auth_token, since=since))


def encode_command(command: Command) -> bytes:
    return encode(command)


def _validate(model: type[WireModel], raw: Any) -> WireModel:
    try:
        return model.model_validate(raw, context=wire_context(), by_name=False)
    except ValidationError as exc:
        raise ServerMessageError(f"bad {model.__name__}: {describe(exc)}") from None


def parse_server_message(data: bytes | str, command_of: Mapping[int, str]) -> ServerItem:
    """One message from the server; raises ServerMessageError and nothing else.

    ``command_of`` maps each cid still waiting for its answer to the command's name.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ServerMessageError("not JSON") from None
    if not isinstance(raw, dict):
        raise ServerMessageError("not a JSON object")
    if "type" in raw:
        kind = raw["type"]
        if not isinstance(kind, str):
            raise ServerMessageError("type is not a string")
        if kind == "message":
            return _validate(RoomMessage if "room" in raw else PrivateMessage, raw)  # type: ignore[return-value]
        model = _EVENTS.get(kind)
        return _validate(model, raw) if model else UnknownEvent(kind, raw)  # type: ignore[return-value]
    if "error" in raw:
        return _validate(ErrorReply, raw)  # type: ignore[return-value]
    if "result" in raw:
        cid = raw.get("cid")
        if type(cid) is not int or cid not in command_of:
            raise ServerMessageError(f"a result for cid {cid!r}, which no command is waiting for")
        cmd = command_of[cid]
        return Reply(cid, cmd, _validate(RESULTS[cmd], raw["result"]))
    raise ServerMessageError("neither an event nor a reply")


class ClientCodec:
    """One socket's client side: numbers commands and remembers which are waiting for a reply."""

    __slots__ = ("_next_cid", "pending")

    def __init__(self) -> None:
        self._next_cid = 1
        self.pending: dict[int, str] = {}  # cid -> command name, until its reply arrives

    def hello(self, auth_token: str, since: str | None = None) -> bytes:
        return encode_hello(auth_token, since)

    def command(self, kind: type[C], **fields: Any) -> tuple[int, bytes]:
        """The next cid and the encoded command; bad fields raise pydantic's ValidationError (a
        bug in the caller, not something to send)."""
        cid = self._next_cid
        self._next_cid = cid % MAX_CID + 1
        command = kind(cid=cid, **fields)
        self.pending[cid] = command.cmd  # type: ignore[attr-defined]
        return cid, encode_command(command)

    def receive(self, data: bytes | str) -> ServerItem:
        item = parse_server_message(data, self.pending)
        if isinstance(item, Reply | ErrorReply):
            self.pending.pop(item.cid, None)
        return item
