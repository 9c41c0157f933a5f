"""Message ids: what a client gets in the ``id`` field of a frame and sends back as ``since``.

An id is the Redis Stream entry id the message got when logic queued it, ``<ms>-<seq>``: unique,
and increasing in the order the system accepted messages, so it orders the messages of every
conversation (a room; a pair of users) and the backlog of a socket.  Clients treat it as an
opaque string; the server compares ids as pairs of integers (as strings, ``"9-0"`` would sort
after ``"10-0"``).  Should the queue ever be split into several streams, a conversation stays on
one stream and its ids keep their order.
"""

from __future__ import annotations

MAX_ID_LENGTH = 41  # two unsigned 64-bit integers and the dash
MAX_PART = 2**64 - 1  # Redis refuses stream ids past it
ZERO = (0, 0)


def parse_id(text: object) -> tuple[int, int] | None:
    """``(ms, seq)``, or None for anything that is not an id (wrong type, garbage, too long)."""
    if not isinstance(text, str) or len(text) > MAX_ID_LENGTH:
        return None
    ms, dash, seq = text.partition("-")
    if not dash or not (ms.isascii() and ms.isdigit() and seq.isascii() and seq.isdigit()):
        return None
    key = int(ms), int(seq)
    return key if key[0] <= MAX_PART and key[1] <= MAX_PART else None


def format_id(key: tuple[int, int]) -> str:
    return f"{key[0]}-{key[1]}"


def with_id(body: bytes, message_id: str) -> bytes:
    """The frame body with ``"id"`` as its last key: what a socket that opted in receives.

    Bodies are JSON objects written by this server (frames.Send), so the closing brace is the last
    byte; the id is digits and a dash and needs no escaping.
    """
    if not body.endswith(b"}"):
        return body
    separator = b"," if len(body) > 2 else b""
    return body[:-1] + separator + b'"id":"' + message_id.encode("ascii") + b'"}'
