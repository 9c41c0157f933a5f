"""The message queue between logic and task: a Redis Stream read through a consumer group.

Logic appends with XADD.  Task processes read with XREADGROUP and acknowledge with XACK only
after delivery, so a task killed mid-message leaves it pending; any live task process takes it
over with XAUTOCLAIM once it has been idle for ``claim_idle``.  The stream is trimmed up to the
oldest entry still pending, never past an unacknowledged one.  The entry id is the message id
that connect nodes use to drop repeats.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from gochat_py.config import QueueSettings
from gochat_py.logs import kv
from gochat_py.metrics import MESSAGES_IN
from gochat_py.protocol.queue_message import QueueMessage, QueueMessageError

log = logging.getLogger("gochat.queue")
FIELD = b"m"


@dataclass(frozen=True, slots=True)
class GroupState:
    """What XINFO GROUPS says of the consumer group: how much waits, and whether it moves."""

    pending: int  # read by a consumer, not acknowledged yet
    lag: int  # not read by any consumer yet
    entries_read: int

    @property
    def backlog(self) -> int:
        return self.pending + self.lag


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    message: QueueMessage | None
    error: str = ""


# KEYS[1]: the stream; ARGV[1]: the group; ARGV[2..]: the messages, appended in order.  Returns
# the group's {pending, lag, entries-read}, or nil before the group exists.  One command for a
# whole batch: redis-py costs tens of microseconds per command of a pipeline.
_ENQUEUE = """
for i = 2, #ARGV do redis.call('XADD', KEYS[1], '*', 'm', ARGV[i]) end
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local info = {}
  for i = 1, #group, 2 do info[group[i]] = group[i + 1] end
  if info['name'] == ARGV[1] then
    return {info['pending'] or 0, info['lag'] or 0, info['entries-read'] or 0}
  end
end
return false
"""


class MessageQueue:
    def __init__(self, redis: Redis, settings: QueueSettings) -> None:
        self.redis = redis
        self.stream = settings.stream
        self.group = settings.group
        self._enqueue = redis.register_script(_ENQUEUE)

    async def enqueue(self, message: QueueMessage) -> GroupState | None:
        return await self.enqueue_many([message])

    async def enqueue_many(self, messages: list[QueueMessage]) -> GroupState | None:
        """All of them in one command, in order; the group's state comes back with them (None
        before any task created the group)."""
        if not messages:
            return None
        state = await self._enqueue(keys=[self.stream], args=[self.group, *(m.encode() for m in messages)])
        for message in messages:
            MESSAGES_IN.labels(message.op).inc()
        return GroupState(*state) if state else None

    async def group_state(self) -> GroupState | None:
        try:
            return self._our_group(await self.redis.xinfo_groups(self.stream))
        except ResponseError:  # no stream yet
            return None

    def _our_group(self, groups: list[dict]) -> GroupState | None:
        for group in groups:
            if _text(group["name"]) == self.group:
                return GroupState(
                    int(group.get("pending") or 0), int(group.get("lag") or 0), int(group.get("entries-read") or 0)
                )
        return None

    async def ensure_group(self) -> None:
        """Creates the group reading from the start, so nothing queued before a task existed is lost."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def read(self, consumer: str, count: int, block_ms: int) -> list[Entry]:
        try:
            reply = await self.redis.xreadgroup(self.group, consumer, {self.stream: ">"}, count=count, block=block_ms)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream or group was deleted under us (FLUSHALL, redis restart without data).
            await self.ensure_group()
            return []
        if not reply:
            return []
        return [_entry(entry_id, fields) for entry_id, fields in reply[0][1]]

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Takes over entries other consumers (dead or stuck) left unacknowledged."""
        entries: list[Entry] = []
        start = "0-0"
        while True:
            reply = await self.redis.xautoclaim(
                self.stream, self.group, consumer, min_idle_time=min_idle_ms, start_id=start, count=count
            )
            start = reply[0].decode() if isinstance(reply[0], bytes) else str(reply[0])
            entries.extend(_entry(entry_id, fields) for entry_id, fields in reply[1] if fields)
            if start == "0-0" or len(entries) >= count:
                return entries

    async def ack(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def backlog(self) -> tuple[int, int]:
        """(entries read but not acknowledged, entries no consumer has read yet) of the group."""
        state = self._our_group(await self.redis.xinfo_groups(self.stream))
        return (state.pending, state.lag) if state else (0, 0)

    async def pending_count(self) -> int:
        summary = await self.redis.xpending(self.stream, self.group)
        return int(summary["pending"])

    async def trim(self) -> None:
        """Drops entries every consumer is done with: older than the oldest pending one."""
        summary = await self.redis.xpending(self.stream, self.group)
        if summary["pending"]:
            min_id = summary["min"]
        else:
            groups = await self.redis.xinfo_groups(self.stream)
            mine = [g for g in groups if _text(g["name"]) == self.group]
            if not mine:
                return
            min_id = mine[0]["last-delivered-id"]
        await self.redis.xtrim(self.stream, minid=_text(min_id))

    async def forget_idle_consumers(self, idle_ms: int) -> None:
        """Removes consumer names of task processes that are gone and hold nothing."""
        for consumer in await self.redis.xinfo_consumers(self.stream, self.group):
            if consumer["pending"] == 0 and consumer["idle"] > idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, _text(consumer["name"]))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: bytes | str, fields: dict[bytes, bytes]) -> Entry:
    ident = _text(entry_id)
    data = fields.get(FIELD)
    if data is None:
        return Entry(ident, None, "entry has no 'm' field")
    try:
        return Entry(ident, QueueMessage.decode(data))
    except QueueMessageError as exc:
        log.warning("undecodable queue entry", extra=kv(id=ident, error=str(exc)))
        return Entry(ident, None, str(exc))
