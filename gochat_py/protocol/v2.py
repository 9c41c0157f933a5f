"""Protocol v2, the server's side, as a sans-I/O codec: text or bytes in, typed messages out, and
typed replies and events in, bytes out.  No sockets, no clocks, no limits of its own: the caller
(a connect node) owns those and passes in what a check needs.

A socket's first message decides its protocol.  :func:`parse_hello` answers None for anything
that is not a hello, and the caller then reads the message as a v1 join exactly as before
(:mod:`gochat_py.protocol.join`, or :mod:`gochat_py.protocol.tcp_frame` inside a TCP frame).
On TCP a v2 socket keeps the v1 framing: every message either way is one frame's payload.

Every later message is a command.  :func:`parse_command` never raises anything but
:class:`CommandError` whatever it is given, and the error carries the command's ``cid`` when it
could be read, so that a client's mistake is answered on the socket instead of closing it.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import ValidationError

from gochat_py.protocol.v2_codes import MAX_CID, ErrorCode
from gochat_py.protocol.v2_messages import (
    COMMANDS,
    AnyResult,
    Command,
    ErrorBody,
    ErrorReply,
    Hello,
    Limits,
    Publish,
    ResultReply,
    Send,
    User,
    Welcome,
    WireModel,
    wire_context,
)

_SHOWN_CMD_LENGTH = 32  # an unknown cmd is quoted in the error, cut to this many characters


class HelloError(ValueError):
    """A hello that cannot be accepted; the text goes into the close reason (1008) and the log."""


class CommandError(ValueError):
    """A command refused before it reached the server's logic; :meth:`reply` is the answer."""

    def __init__(self, code: ErrorCode, cid: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.cid = cid  # 0: the command's cid could not be read
        self.message = message

    def reply(self) -> bytes:
        return encode_error(self.cid, self.code, self.message)


def _load(data: bytes | str) -> Any:
    """The JSON value, or :data:`_NOT_JSON`; orjson refuses bad UTF-8, lone surrogates, too deep
    nesting and integers past 64 bits with JSONDecodeError (a ValueError)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_JSON


_NOT_JSON = object()


def describe(exc: ValidationError) -> str:
    """The first problem pydantic found, as ``field: what is wrong``, without echoing the input."""
    error = exc.errors(include_url=False, include_input=False)[0]
    message = error["msg"].removeprefix("Value error, ")
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {message}" if where else message


def parse_hello(data: bytes | str) -> Hello | None:
    """The hello, or None when ``data`` is not one (read it as a v1 join).

    A first message is a hello when it is a JSON object with a key ``v`` (exactly so spelled)
    whose value is neither null nor 1.  v1 clients never send ``v``: the original's page, its Go
    client and this project's never did.  A hello that is malformed raises HelloError.
    """
    raw = _load(data)
    if not isinstance(raw, dict):
        return None
    version = raw.get("v")
    if version is None or (type(version) is int and version == 1):
        return None
    try:
        return Hello.model_validate(raw, context=wire_context(), by_name=False)
    except ValidationError as exc:
        raise HelloError(f"bad hello: {describe(exc)}") from None


def parse_command(data: bytes | str, max_message_length: int | None = None) -> Command:
    """One command, typed (Subscribe, Publish, ...); raises CommandError and nothing else.

    ``max_message_length``: a publish or send whose msg has more characters (code points) is
    refused with TOO_LONG.
    """
    raw = _load(data)
    if not isinstance(raw, dict):
        raise CommandError(ErrorCode.BAD_REQUEST, 0, "a command is a JSON object")
    cid = raw.get("cid")
    if type(cid) is not int or not 1 <= cid <= MAX_CID:
        cid = 0
    name = raw.get("cmd")
    if not isinstance(name, str):
        raise CommandError(ErrorCode.BAD_REQUEST, cid, "cmd: a string naming the command is required")
    model = COMMANDS.get(name)
    if model is None:
        shown = name[:_SHOWN_CMD_LENGTH] + ("…" if len(name) > _SHOWN_CMD_LENGTH else "")
        raise CommandError(ErrorCode.UNKNOWN_COMMAND, cid, f"unknown command {shown!r}")
    try:
        command = model.model_validate(raw, context=wire_context(), by_name=False)
    except ValidationError as exc:
        raise CommandError(ErrorCode.BAD_REQUEST, cid, describe(exc)) from None
    if max_message_length is not None and isinstance(command, Publish | Send) and len(command.msg) > max_message_length:
        raise CommandError(
            ErrorCode.TOO_LONG,
            cid,
            f"msg is too long: {len(command.msg)} characters, at most {max_message_length} are allowed",
        )
    return command


def encode(message: WireModel) -> bytes:
    """Any v2 message as the bytes of one websocket text frame or one TCP frame's payload.
    Optional fields that are None are left out."""
    return orjson.dumps(message.model_dump(exclude_none=True))


def encode_welcome(user_id: int, user_name: str, time_ms: int, limits: Limits) -> bytes:
    return encode(Welcome(user=User(id=user_id, name=user_name), time=time_ms, limits=limits))


def encode_result(cid: int, result: AnyResult) -> bytes:
    return encode(ResultReply(cid=cid, result=result))


def encode_error(cid: int, code: ErrorCode, message: str) -> bytes:
    return encode(ErrorReply(cid=cid, error=ErrorBody(code=code, message=message)))
