"""The hot store of kept messages: one Redis Stream per conversation, bounded and expiring.

A room, a user's inbox (every private message to them) and a pair of users each have a stream
whose entries carry the message id of the queue (the queuing command appends them, see
:mod:`gochat_py.queue`) and the frame body in the field ``m``.  Reconnects and recent history are
served from here; what is not here any more (trimmed to ``[history] size``, expired after
``ttl``, or lost with Redis's data) is read from the database (:mod:`gochat_py.storage.archive`).

Where the hot store of a conversation begins is its *floor*: every message of the conversation with
an id at or above it is in the stream.  A stream that was trimmed begins at its first entry; and
``gochat_hist_since`` holds the first id kept since Redis last lost its data, below which nothing
is known to be here.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from gochat_py.protocol.message_id import ZERO, format_id, parse_id

SINCE_KEY = "gochat_hist_since"
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


# KEYS[1]: the conversation's stream, KEYS[2]: SINCE_KEY; ARGV: XREVRANGE's end, start and count.
# Returns the entries, then (if the stream exists) the since marker and, when the stream has been
# trimmed, its first entry's id.
_READ = """
local entries = redis.call('XREVRANGE', KEYS[1], ARGV[1], ARGV[2], 'COUNT', ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return {entries} end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local t = {}
for i = 1, #info, 2 do t[info[i]] = info[i + 1] end
local first = ''
if tonumber(t['entries-added']) > tonumber(t['length']) then first = t['recorded-first-entry-id'] end
return {entries, redis.call('GET', KEYS[2]) or '0-0', first}
"""


class HotHistory:
    def __init__(self, redis: Redis) -> None:
        self._read = redis.register_script(_READ)

    async def newest(self, conversation: Conversation, below: Key | None, above: Key | None, count: int) -> HotRead:
        """Up to ``count`` messages with ids strictly between ``above`` and ``below`` (None: no
        bound), newest first, and where the stream's coverage begins."""
        high = "+" if below is None else f"({format_id(below)}"
        low = "-" if above is None else f"({format_id(above)}"
        reply = await self._read(keys=[conversation.hot_key, SINCE_KEY], args=[high, low, count])
        entries = [(_text(entry_id), fields[1]) for entry_id, fields in reply[0] if len(fields) >= 2]
        if len(reply) < 3:
            return HotRead(entries, None)
        floor = parse_id(_text(reply[1])) or ZERO
        first = parse_id(_text(reply[2]))
        if first is not None and first > floor:
            floor = first
        return HotRead(entries, floor)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
