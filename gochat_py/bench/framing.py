"""Byte framing the benchmark needs: gochat's TCP "stick package" and websocket frames.

TCP (protocol §8.2): ``'v' '1' <int16 big-endian total length incl. the 4-byte header> <payload>``.
The floor server writes pre-encoded, unmasked websocket text frames (RFC 6455 §5.2) straight to
its transports.  The lean websocket client's handshake, masked client frames and the splitter of
server frames are below (sans-I/O; the protocol object is in ``ws_client.py``).
"""

from __future__ import annotations

import base64
import hashlib
import os
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
    """Turns a TCP byte stream into frame payloads; a bad header raises FrameError.

    ``feed`` hands back every payload of a chunk in one list, so the client can count the whole
    chunk in one call (see ``Counter.on_frames``).  A chunk that holds only whole frames (the
    usual case) is sliced where it is, without first being copied into the buffer; only the
    start of an incomplete frame is kept for the next chunk.
    """

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        if self._buffer:
            data = self._buffer + data
        out: list[bytes] = []
        append = out.append
        end = len(data)
        position = 0
        while end - position >= STICK_HEADER:
            if data[position] != 0x76:  # 'v'
                raise FrameError(f"frame does not start with 'v': {bytes(data[position : position + 4])!r}")
            length = (data[position + 2] << 8) | data[position + 3]
            if length < STICK_HEADER or length & 0x8000:  # the length is a signed int16
                signed = length - 0x10000 if length & 0x8000 else length
                raise FrameError(f"frame length {signed} below the header size")
            stop = position + length
            if stop > end:
                break
            append(data[position + STICK_HEADER : stop])
            position = stop
        self._buffer = data[position:] if position < end else b""
        return out


def ws_server_frame(payload: bytes, opcode: int = 0x1, fin: bool = True) -> bytes:
    """One unmasked websocket frame (what a server sends); ``fin=False`` makes it a fragment that
    continuation frames (opcode 0) complete."""
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack("!BB", first, n)
    elif n < 65536:
        header = struct.pack("!BBH", first, 126, n)
    else:
        header = struct.pack("!BBQ", first, 127, n)
    return header + payload


# ------------------------------------------------------------------ websocket client side (RFC 6455)
#
# The bench's lean websocket client (gochat_py/bench/ws_client.py) speaks the protocol itself
# instead of through the ``websockets`` library, because the library's per-frame machinery (a
# parser generator, a frame object, an assembler and a queue per socket) costs more CPU per
# received frame than the server spends delivering it.  Everything here is sans-I/O, so the unit
# tests can check it byte for byte without sockets.

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_CONTINUATION = 0x0
WS_TEXT = 0x1
WS_BINARY = 0x2
WS_CLOSE = 0x8
WS_PING = 0x9
WS_PONG = 0xA
WS_MAX_PAYLOAD = 8 * 1024 * 1024  # one message, whole or in fragments; the websockets library's bound
WS_MAX_HANDSHAKE = 16 * 1024
_KNOWN_OPCODES = frozenset((WS_CONTINUATION, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG))


class HandshakeError(FrameError):
    """The server did not switch to the websocket protocol the way RFC 6455 §4.2.2 requires."""


def ws_client_key(nonce: bytes | None = None) -> str:
    """A ``Sec-WebSocket-Key``: 16 random bytes, base64 (RFC 6455 §4.1)."""
    if nonce is None:
        nonce = os.urandom(16)
    if len(nonce) != 16:
        raise ValueError("the websocket key nonce is 16 bytes")
    return base64.b64encode(nonce).decode()


def ws_accept(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with: base64(SHA-1(key + GUID))."""
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()


def ws_handshake_request(host: str, path: str, key: str) -> bytes:
    """The opening GET.  No ``Sec-WebSocket-Extensions`` (so no compression) and no subprotocol
    are offered, which is what lets :class:`WsSplitter` refuse any RSV bit."""
    return (
        f"GET {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "User-Agent: gochat-py-bench\r\n"
        "\r\n"
    ).encode()


def check_ws_handshake_response(head: bytes, key: str) -> None:
    """Checks the server's answer (everything before the blank line) to the GET sent with ``key``.

    Raises :class:`HandshakeError` naming what is wrong: another status than 101 (with the
    status line, so a refused upgrade is recognisable in the summary's errors), a missing
    Upgrade/Connection token, a wrong ``Sec-WebSocket-Accept``, or an extension or subprotocol
    the client never asked for.
    """
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        raise HandshakeError(f"not an HTTP response: {lines[0][:80]!r}")
    if status[1] != "101":
        raise HandshakeError(f"upgrade refused: {lines[0][:80]}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise HandshakeError(f"malformed header line {line[:80]!r}")
        name = name.strip().lower()
        headers[name] = f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
    if headers.get("upgrade", "").lower() != "websocket":
        raise HandshakeError(f"Upgrade header is {headers.get('upgrade')!r}, not websocket")
    if "upgrade" not in {token.strip().lower() for token in headers.get("connection", "").split(",")}:
        raise HandshakeError(f"Connection header {headers.get('connection')!r} lacks upgrade")
    if headers.get("sec-websocket-accept") != ws_accept(key):
        raise HandshakeError(f"Sec-WebSocket-Accept {headers.get('sec-websocket-accept')!r} does not match the key")
    for name in ("sec-websocket-extensions", "sec-websocket-protocol"):
        if headers.get(name):
            raise HandshakeError(f"server chose {name} {headers[name]!r} that was not offered")


def ws_mask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``mask`` repeated (RFC 6455 §5.3); its own inverse."""
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def ws_client_frame(payload: bytes, opcode: int = WS_TEXT, mask: bytes | None = None) -> bytes:
    """One final, masked frame, as a client must send every frame (RFC 6455 §5.1); ``mask`` is a
    fresh random key unless a test passes one."""
    if mask is None:
        mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return header + mask + ws_mask(payload, mask)


def ws_close_payload(code: int | None, reason: str = "") -> bytes:
    """The body of a close frame: nothing (no code), or the 2-byte code and a UTF-8 reason."""
    return b"" if code is None else struct.pack("!H", code) + reason.encode()[:123]


def parse_ws_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame; 1005 ("no status received") when it has none."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise FrameError("close frame with a 1-byte body")
    return struct.unpack_from("!H", payload)[0], payload[2:].decode(errors="replace")


# One entry per frame other than a final text frame: (place among the payloads, opcode, payload).
Other = tuple[int, int, bytes]


class WsSplitter:
    """Turns the byte stream a websocket server sends into message payloads.

    Made for the bench client's hot path: one :meth:`feed_batch` per ``data_received`` chunk
    gives the text and binary payloads of the whole chunk as one list (slices of the chunk, no
    per-frame objects), which the counter then takes in one call.  The frames a gochat server
    seldom or never sends (binary, ping, pong, close) are also listed apart, each with its place
    among the payloads, so the client still handles them in stream order.  A partial frame is
    kept as a list of chunks until enough bytes arrived, so a large frame in many pieces is
    joined once rather than re-copied on every chunk.

    Fragmented messages (RFC 6455 §5.4: a text or binary frame with FIN clear, then continuation
    frames up to one with FIN set) are reassembled: other servers fragment every message larger
    than their write buffer.  Control frames may come between the fragments and are listed in
    stream order as usual; the message counts where its last fragment is.  A message is bounded
    by ``max_payload`` as a whole, checked from each fragment's header before its bytes are
    buffered.  Only what an extension-less server may send is accepted: masked frames (a server
    must not mask), RSV bits, a continuation with no message begun, a new data frame before the
    begun message is complete, oversized or fragmented control frames and unknown opcodes raise
    :class:`FrameError`.
    """

    __slots__ = ("_have", "_message", "_message_opcode", "_need", "_parts", "max_payload")

    def __init__(self, max_payload: int = WS_MAX_PAYLOAD) -> None:
        self._parts: list[bytes] = []
        self._have = 0
        self._need = 0
        self._message = bytearray()  # the fragments of an incomplete message so far
        self._message_opcode = 0  # WS_TEXT or WS_BINARY while a fragmented message is incomplete
        self.max_payload = max_payload

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Every message and control frame ``data`` completes as ``(opcode, payload)``, in stream
        order (the frame-by-frame view of :meth:`feed_batch`)."""
        payloads, others = self.feed_batch(data)
        out: list[tuple[int, bytes]] = []
        done = 0
        for place, opcode, payload in others or ():
            out += [(WS_TEXT, p) for p in payloads[done:place]]
            out.append((opcode, payload))
            done = place + 1 if opcode == WS_BINARY else place
        out += [(WS_TEXT, p) for p in payloads[done:]]
        return out

    def feed_batch(self, data: bytes) -> tuple[list[bytes], list[Other] | None]:
        """``(payloads, others)`` of the messages and control frames ``data`` completes.

        ``payloads``: the text and binary payloads in stream order.  ``others``: None, or one
        ``(place, opcode, payload)`` for each binary message (its payload is ``payloads[place]``)
        and each control frame (``place`` payloads came before it), in stream order.
        """
        if self._parts:
            self._parts.append(data)
            self._have += len(data)
            if self._have < self._need:
                return [], None
            data = b"".join(self._parts)
            self._parts = []
        payloads: list[bytes] = []
        append = payloads.append
        others: list[Other] | None = None
        end = len(data)
        position = 0
        need = 0
        assembling = self._message_opcode
        while position < end:
            if end - position < 2:
                need = 2
                break
            first = data[position]
            length = data[position + 1]
            plain = first == 0x81 and not assembling  # a whole text message: the usual frame
            if not plain:
                self._check_header(first, length, assembling)
            if length < 126:
                start = position + 2
            elif length == 126:
                if end - position < 4:
                    need = 4
                    break
                length = (data[position + 2] << 8) | data[position + 3]
                start = position + 4
            elif length == 127:
                if end - position < 10:
                    need = 10
                    break
                (length,) = struct.unpack_from("!Q", data, position + 2)
                start = position + 10
            else:
                raise FrameError("the server sent a masked frame")
            if (length > 125 or not plain) and first & 0x0F < WS_CLOSE:
                # a message's bound, checked before any of its bytes are buffered
                size = len(self._message) + length
                if size > self.max_payload:
                    raise FrameError(f"message of {size} bytes or more exceeds {self.max_payload}")
            stop = start + length
            if stop > end:
                need = stop - position
                break
            if plain:
                append(data[start:stop])
            else:
                opcode = first & 0x0F
                payload = data[start:stop]
                if opcode < WS_CLOSE:  # a data frame: a whole message, or a fragment of one
                    if not first & 0x80:  # more fragments to come
                        if opcode:
                            assembling = self._message_opcode = opcode
                        self._message += payload
                        position = stop
                        continue
                    if opcode == WS_CONTINUATION:  # the last fragment
                        opcode = assembling
                        payload = bytes(self._message + payload)
                        self._message = bytearray()
                        assembling = self._message_opcode = 0
                    append(payload)
                    if opcode == WS_BINARY:
                        if others is None:
                            others = []
                        others.append((len(payloads) - 1, opcode, payload))
                else:
                    if others is None:
                        others = []
                    others.append((len(payloads), opcode, payload))
            position = stop
        if position < end:
            rest = data[position:] if position else data
            self._parts = [rest]
            self._have = len(rest)
            self._need = need
        return payloads, others

    @staticmethod
    def _check_header(first: int, length: int, assembling: int) -> None:
        opcode = first & 0x0F
        if first & 0x70:
            raise FrameError(f"RSV bits set ({first:#04x}) but no extension was negotiated")
        if opcode not in _KNOWN_OPCODES:
            raise FrameError(f"unknown opcode {opcode:#x}")
        if length & 0x80:
            raise FrameError("the server sent a masked frame")
        if opcode >= WS_CLOSE:
            if not first & 0x80:
                raise FrameError(f"fragmented control frame (opcode {opcode:#x})")
            if length > 125:
                raise FrameError(f"control frame (opcode {opcode:#x}) longer than 125 bytes")
        elif opcode == WS_CONTINUATION and not assembling:
            raise FrameError("continuation frame with no fragmented message begun")
        elif opcode != WS_CONTINUATION and assembling:
            raise FrameError(f"data frame (opcode {opcode:#x}) before the fragmented message was complete")

    def pending(self) -> int:
        """Bytes held back: the start of an incomplete frame and the fragments of an incomplete
        message."""
        return (self._have if self._parts else 0) + len(self._message)
