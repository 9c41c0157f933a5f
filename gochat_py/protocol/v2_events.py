"""Kept messages as protocol-v2 events, sans-I/O: the v1 frame body (what the queue, the hot stores
and the database hold) and its id in, the v2 ``message`` event out.

Messages are stored once, in the original's body (protocol.frames.Send), whatever socket reads
them; a connect node turns a body into this event for its v2 sockets once per delivery, not once
per socket.  The event's ``time`` is the millisecond part of the id: the queue's clock stamped it
when the message was accepted, so it is the same on every node and in every replay.
"""

from __future__ import annotations

import orjson

from gochat_py.protocol.frames import OP_ROOM_SEND, OP_SINGLE_SEND


def message_time(message_id: str) -> int:
    millis, _, _ = message_id.partition("-")
    return int(millis) if millis.isdigit() else 0


def message_event(body: bytes, message_id: str, reader: int) -> bytes | None:
    """The v2 event of a kept message for a socket of user ``reader``, or None when ``body`` is not
    an op-2 or op-3 body (a caller's bug or a foreign entry: skipped, never a crash).

    A private message's ``user`` is the other party as ``reader`` sees it: the sender, or for the
    sender's own message the recipient.
    """
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(raw, dict):
        return None
    try:
        op = raw["op"]
        sender = {"id": int(raw["fromUserId"]), "name": str(raw["fromUserName"])}
        msg = str(raw["msg"])
        if op == OP_ROOM_SEND:
            event = {"type": "message", "room": int(raw["roomId"]), "id": message_id}
        elif op == OP_SINGLE_SEND:
            to = int(raw["toUserId"])
            other = to if sender["id"] == reader else sender["id"]
            event = {"type": "message", "user": other, "to": to, "id": message_id}
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    event["from"] = sender
    event["msg"] = msg
    event["time"] = message_time(message_id)
    return orjson.dumps(event)
