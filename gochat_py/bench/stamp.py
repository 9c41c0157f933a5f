"""The stamp carried in every benchmark message: ``<run id>|<seq>|<send time ns>``.

The message text travels unchanged through api, logic, the queue, task and connect into the
frame body ``{"code":0,"msg":"<stamp>",...}``; clients find it without parsing the JSON, so the
client stays cheap: :func:`stamp_matcher` recognises a frame of the run in one regex match at the
start of the body, and :func:`frame_stamp` (two byte searches and a split) reads any other frame.
A stamp holds only ``[0-9a-z|]``: JSON never escapes it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import orjson

MSG_KEY = b'"msg":"'
_RUN_ID = re.compile(r"^[0-9a-z]{1,32}$")


class Stamp(NamedTuple):
    run_id: bytes
    seq: int
    sent_ns: int


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ValueError(f"run id must be 1 to 32 characters of [0-9a-z], got {run_id!r}")
    return run_id


def make_stamp(run_id: str, seq: int, sent_ns: int) -> str:
    return f"{run_id}|{seq}|{sent_ns}"


def parse_stamp(text: bytes) -> Stamp | None:
    """The stamp in ``text``, or None when it is not one of ours (any other message)."""
    parts = text.split(b"|")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return Stamp(parts[0], int(parts[1]), int(parts[2]))


def frame_msg(body: bytes) -> bytes | None:
    """The raw ``msg`` value of an op 2 / op 3 frame body, or None (op 4, op 5, anything else).

    Only valid for values without escapes, which is all a stamp ever is.
    """
    start = body.find(MSG_KEY, 0, 40)
    if start < 0:
        return None
    start += len(MSG_KEY)
    end = body.find(b'"', start)
    return body[start:end] if end > 0 else None


def frame_stamp(body: bytes) -> Stamp | None:
    msg = frame_msg(body)
    return None if msg is None else parse_stamp(msg)


def stamp_matcher(run_id: bytes, protocol: str = "v1") -> Callable[[bytes], re.Match[bytes] | None]:
    """``match(body)``: groups (seq, send time ns) of an op 2 / op 3 frame of run ``run_id`` as the
    gochat server encodes it (``{"code":0,"msg":"<stamp>"`` first, in Go's field order), else None.
    With ``protocol="v2"``: of a v2 ``message`` event, whose ``msg`` comes after the room or user,
    the id and the sender, so it is searched for rather than matched at the start.

    This is the hot path of the bench's clients: one match in C instead of :func:`frame_stamp`'s
    searches, split, digit checks and tuple.  It only ever says yes where :func:`frame_stamp`
    reads the same run id, seq and time, so a body it turns down can be given to
    :func:`frame_stamp` to be classified exactly as before (op 5, another run, another format).
    A run id that could never be a whole stamp field (one holding ``|`` or ``"``) matches nothing.
    """
    if b"|" in run_id or b'"' in run_id:
        return re.compile(rb"(?!)").match
    stamp = re.escape(run_id) + rb'\|(\d+)\|(\d+)"'
    if protocol == "v2":
        return re.compile(rb'"msg":"' + stamp).search
    return re.compile(rb'\{"code":0,"msg":"' + stamp).match


OP_ROOM_COUNT = 4
OP_ROOM_INFO = 5
_INFO_COUNT = re.compile(rb'^\{"op":5,(?:"roomId":-?\d+,)?"count":(\d+)')
_COUNT_FRAME_MAX = 64  # an op 4 frame is {"count":N,"op":4}, in whatever key order


def room_frame(body: bytes) -> tuple[int, int] | None:
    """``(op, count)`` of an op 4 online-count frame or an op 5 member list, else None.

    An op 5 list is read from its head only (Go field order: op, roomId, count, ...), since a big
    room's list is long and arrives once per join; an op 4 frame is short, so it is parsed whole
    and may come in any key order (a count of 0 is ``{"op":4}``).
    """
    match = _INFO_COUNT.match(body)
    if match:
        return OP_ROOM_INFO, int(match.group(1))
    if len(body) > _COUNT_FRAME_MAX or b'"op"' not in body:
        return None
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("op") != OP_ROOM_COUNT or type(value["op"]) is not int:
        return None
    count = value.get("count", 0)
    return OP_ROOM_COUNT, count if type(count) is int else 0
