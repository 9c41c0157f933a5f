"""The TCP framing ("stick package") of the original, as a sans-I/O codec.

A frame is ``b"v1"``, a big-endian signed 16-bit *total* length (header included, so at least 4
and at most 32767), then the payload: JSON, or the server's ``ping msg``.  The same framing goes
both ways.  :class:`FrameDecoder` turns any chunking of a byte stream into whole payloads and
refuses what the original crashed or stalled on (a wrong version, a length under 4 or over the
limit); the first bad byte ends the stream, since there is no way to find the next frame.

Client payloads are decoded by :func:`parse_client_message` the lenient Go way (keys match
case-insensitively, unknown keys are ignored), but a payload that is not a JSON object is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import orjson

from gochat_py.protocol.join import fold_keys, int_or_zero, since_field

VERSION = b"v1"
HEADER_SIZE = 4
MAX_FRAME_SIZE = 32767  # the length field is a signed 16-bit integer
PING_PAYLOAD = b"ping msg"
_HEADER = struct.Struct(">2sh")


class FrameError(ValueError):
    """The byte stream is not valid framing; the reason is meant for the log.

    ``payloads`` holds the whole frames that came before the bad bytes in the same feed, so a
    caller can still act on them before closing the connection.
    """

    def __init__(self, reason: str, payloads: list[bytes] | None = None) -> None:
        super().__init__(reason)
        self.payloads = payloads or []


def encode_frame(payload: bytes) -> bytes:
    size = HEADER_SIZE + len(payload)
    if size > MAX_FRAME_SIZE:
        raise FrameError(f"payload of {len(payload)} bytes does not fit in a frame (max {MAX_FRAME_SIZE - 4})")
    return _HEADER.pack(VERSION, size) + payload


PING_FRAME = encode_frame(PING_PAYLOAD)


class FrameDecoder:
    """Bytes in, payloads out.  After a :class:`FrameError` the decoder refuses everything more."""

    __slots__ = ("_buffer", "_failed", "max_frame_size")

    def __init__(self, max_frame_size: int = MAX_FRAME_SIZE) -> None:
        if not HEADER_SIZE <= max_frame_size <= MAX_FRAME_SIZE:
            raise ValueError(f"max_frame_size must be within {HEADER_SIZE}..{MAX_FRAME_SIZE}")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._failed: FrameError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Every payload completed by ``data``, in order; raises FrameError on invalid framing."""
        if self._failed:
            raise self._failed
        self._buffer += data
        payloads: list[bytes] = []
        buffer = self._buffer
        offset = 0
        try:
            while len(buffer) - offset >= HEADER_SIZE:
                version, size = _HEADER.unpack_from(buffer, offset)
                if version != VERSION:
                    raise FrameError(f"bad version bytes {bytes(version)!r}, expected {VERSION!r}")
                if size < HEADER_SIZE:
                    raise FrameError(f"frame length {size} is below the header size {HEADER_SIZE}")
                if size > self.max_frame_size:
                    raise FrameError(f"frame length {size} is over the limit of {self.max_frame_size}")
                if len(buffer) - offset < size:
                    break
                payloads.append(bytes(buffer[offset + HEADER_SIZE : offset + size]))
                offset += size
            rest = buffer[offset : offset + 2]
            if rest and rest != VERSION[: len(rest)]:  # a bad start is refused before the header is whole
                raise FrameError(f"bad version bytes {bytes(rest)!r}, expected {VERSION!r}")
        except FrameError as exc:
            self._failed = FrameError(str(exc))
            self._buffer = bytearray()
            raise FrameError(str(exc), payloads) from None
        del buffer[:offset]
        return payloads


@dataclass(frozen=True, slots=True)
class ClientMessage:
    """What a TCP client frame asks for.  ``from_user_*`` are read only to be ignored: the sender
    of a room message is always the owner of the token (the original trusted these fields)."""

    op: int
    auth_token: str
    room_id: int
    msg: str
    since: str | None = None  # op 6 only: see protocol.join


def parse_client_message(payload: bytes) -> ClientMessage:
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise FrameError(f"payload is not JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise FrameError("payload is not a JSON object")
    fields = fold_keys(raw)
    token = fields.get("authtoken")
    msg = fields.get("msg")
    return ClientMessage(
        op=int_or_zero(fields.get("op")),
        auth_token=token if isinstance(token, str) else "",
        room_id=int_or_zero(fields.get("roomid")),
        msg=msg if isinstance(msg, str) else "",
        since=since_field(raw),
    )


def encode_client_message(op: int, auth_token: str, room_id: int, msg: str = "") -> bytes:
    """A client frame as the original's ``SendTcp`` (used by the bundled client and tests)."""
    return encode_frame(orjson.dumps({"msg": msg, "roomId": room_id, "op": op, "authToken": auth_token}))
