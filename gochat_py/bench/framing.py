"""Byte framing the benchmark needs: gochat's TCP "stick package" and a server websocket frame.

TCP (protocol §8.2): ``'v' '1' <int16 big-endian total length incl. the 4-byte header> <payload>``.
The floor server writes pre-encoded, unmasked websocket text frames (RFC 6455 §5.2) straight to
its transports.
"""

from __future__ import annotations

import struct

STICK_HEADER = 4
STICK_MAX_PAYLOAD = 32767 - STICK_HEADER
TCP_PING = b"ping msg"


class FrameError(ValueError):
    pass


def encode_stick(payload: bytes) -> bytes:
    if len(payload) > STICK_MAX_PAYLOAD:
        raise FrameError(f"payload of {len(payload)} bytes exceeds {STICK_MAX_PAYLOAD}")
    return b"v1" + struct.pack(">h", STICK_HEADER + len(payload)) + payload


class StickSplitter:
    """Turns a TCP byte stream into frame payloads; a bad header raises FrameError."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += data
        out = []
        position = 0
        while len(buffer) - position >= STICK_HEADER:
            if buffer[position] != 0x76:  # 'v'
                raise FrameError(f"frame does not start with 'v': {bytes(buffer[position : position + 4])!r}")
            (length,) = struct.unpack_from(">h", buffer, position + 2)
            if length < STICK_HEADER:
                raise FrameError(f"frame length {length} below the header size")
            if len(buffer) - position < length:
                break
            out.append(bytes(buffer[position + STICK_HEADER : position + length]))
            position += length
        del buffer[:position]
        return out


def ws_server_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final websocket frame (what a server sends)."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload
