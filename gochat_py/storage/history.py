"""The hot store of kept messages: one Redis Stream per conversation, bounded and expiring.

A room, a user's inbox (every private message to them) and a pair of users each have a stream
whose entries carry the message id of the queue (the queuing command appends them, see
:mod:`gochat_py.queue`) and the frame body in the field ``m``.  Reconnects and recent history are
served from here; what is not here any more (trimmed to ``[history] size``, expired after
``ttl``, or lost with Redis's data) is read from the database (:mod:`gochat_py.storage.archive`).

Where the hot store of a conversation begins is its *floor*: every message of the conversation with
an id at or above it is in the stream, so the database is asked only below it.  A stream that was
trimmed begins at its first entry.  ``gochat_hist_since`` holds the first id kept since Redis last
lost its data (below it, anything may be in the database only), unless ``gochat_hist_complete``
says that Redis has kept everything since the database was empty (logic sets it at start then).
A conversation without a stream had no message for ``ttl``: it holds nothing newer than that.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis

from gochat_py.protocol.message_id import ZERO, format_id, parse_id

SINCE_KEY = "gochat_hist_since"
COMPLETE_KEY = "gochat_hist_complete"
CLOCK_MARGIN_MS = 60_000  # between this host's clock and Redis's, which stamps the ids
Key = tuple[int, int]  # a parsed message id


@dataclass(frozen=True, slots=True)
class Conversation:
    """``room`` (a: room id), ``pair`` (a < b: user ids) or ``inbox`` (a: the recipient)."""

    kind: str
    a: int
    b: int = 0

    @classmethod
    def room(cls, room_id: int) -> Conversation:
        return cls("room", room_id)

    @classmethod
    def pair(cls, one: int, other: int) -> Conversation:
        return cls("pair", min(one, other), max(one, other))

    @classmethod
    def inbox(cls, user_id: int) -> Conversation:
        return cls("inbox", user_id)

    @property
    def hot_key(self) -> str:
        suffix = f"{self.a}_{self.b}" if self.kind == "pair" else str(self.a)
        return f"gochat_hist_{self.kind}_{suffix}"


@dataclass(frozen=True, slots=True)
class HotRead:
    entries: list[tuple[str, bytes]]  # (id, body), newest first
    floor: Key | None  # None: the hot store holds nothing of this conversation


# KEYS: the conversation's stream, SINCE_KEY, COMPLETE_KEY; ARGV: XREVRANGE's end, start and
# count.  Returns the entries, whether the stream exists, the since marker ('' = none), whether the
# complete flag is set, and the stream's first entry if it has been trimmed ('' = not trimmed).
_READ = """
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
local since = redis.call('GET', KEYS[2]) or ''
local complete = redis.call('EXISTS', KEYS[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return {entries, 0, since, complete, ''} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local t = {}
for i = 1, #info, 2 do t[info[i]] = info[i + 1] end
local first = ''
if tonumber(t['entries-added']) > tonumber(t['length']) then first = t['recorded-first-entry-id'] end
return {entries, 1, since, complete, first}
"""


class HotHistory:
    def __init__(self, redis: Redis, ttl: int) -> None:
        self.redis = redis
        self.ttl = ttl
        self._read = redis.register_script(_READ)

    async def newest(self, conversation: Conversation, below: Key | None, above: Key | None, count: int) -> HotRead:
        """Up to ``count`` messages with ids strictly between ``above`` and ``below`` (None: no
        bound), newest first, and where the stream's coverage begins."""
        high = "+" if below is None else f"({format_id(below)}"
        low = "-" if above is None else f"({format_id(above)}"
        reply = await self._read(keys=[conversation.hot_key, SINCE_KEY, COMPLETE_KEY], args=[high, low, count])
        entries = [(_text(entry_id), fields[1]) for entry_id, fields in reply[0] if len(fields) >= 2]
        exists, since, complete, first = reply[1], parse_id(_text(reply[2])), reply[3], parse_id(_text(reply[4]))
        base = ZERO if complete else since
        if not exists:
            if base is None:
                return HotRead(entries, None)
            idle = (int(time.time() * 1000) - self.ttl * 1000 + CLOCK_MARGIN_MS, 0)
            return HotRead(entries, max(base, idle))
        floor = base or ZERO
        if first is not None and first > floor:
            floor = first
        return HotRead(entries, floor)

    async def mark_complete(self) -> None:
        """Says that Redis holds every kept message: call it only while the database has none."""
        await self.redis.set(COMPLETE_KEY, "1", nx=True)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
