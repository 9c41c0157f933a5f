"""The history writer: copies every room and private message from the queue into the database.

It reads the queue in a consumer group of its own (``[history] group``), so delivery never waits
for the database, and acknowledges a batch only after its transaction committed: a writer killed
mid-batch leaves the batch pending, and a writer (itself restarted, or another task process) takes
it over after ``[task] claim_idle``; writing it again changes nothing (idempotent by id).  While
the database is down the batch in hand is retried with backoff and nothing newer is read, so the
queue keeps the entries (it is trimmed only past what every group is done with).
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from gochat_py import metrics
from gochat_py.config import Settings
from gochat_py.logs import kv
from gochat_py.protocol.frames import OP_ROOM_SEND, OP_SINGLE_SEND
from gochat_py.queue import Entry, MessageQueue
from gochat_py.storage.archive import Archive, Stored, conversation_name
from gochat_py.storage.history import Conversation

log = logging.getLogger("gochat.task.history")
RETRY_MIN, RETRY_MAX = 0.2, 5.0
RETENTION_INTERVAL = 3600.0


def stored(entry: Entry) -> Stored | None:
    """The row for a queue entry, or None for what is not kept (counts, member lists, logouts)."""
    message = entry.message
    if message is None or message.msg is None:
        return None
    if message.op == OP_ROOM_SEND:
        return Stored(entry.id, conversation_name(Conversation.room(message.room_id)), 0, message.op, message.msg)
    if message.op == OP_SINGLE_SEND:
        try:
            sender = orjson.loads(message.msg).get("fromUserId", 0)
        except (orjson.JSONDecodeError, AttributeError):
            sender = 0
        sender = sender if isinstance(sender, int) else 0
        pair = conversation_name(Conversation.pair(sender, message.user_id))
        return Stored(entry.id, pair, message.user_id, message.op, message.msg)
    return None


class HistoryWriter:
    def __init__(self, queue: MessageQueue, archive: Archive, settings: Settings, name: str) -> None:
        self.queue = queue
        self.archive = archive
        self.settings = settings
        self.name = name
        self.stopping = asyncio.Event()
        self.written = 0

    async def _read_batch(self, batch: int) -> list[Entry]:
        """A blocking read; a partial batch then waits ``linger`` for more, so that the database
        sees a few large transactions a second rather than one per message (each commit syncs
        the disk).  Nothing waits for the writer: history is read from Redis first."""
        entries = await self.queue.read(self.name, batch, self.settings.task.block_ms)
        linger = self.settings.history.linger
        if entries and linger and len(entries) < batch:
            await asyncio.sleep(linger)
            entries += await self.queue.read(self.name, batch - len(entries), None)
        return entries

    async def run(self) -> None:
        """Loops until :attr:`stopping` is set; the batch in hand is always written first."""
        task = self.settings.task
        claim_idle_ms = int(task.claim_idle * 1000)
        batch = self.settings.history.batch_size
        next_claim = next_retention = 0.0
        group_ready = False
        unwritten: list[Entry] = []
        backoff = RETRY_MIN
        while not self.stopping.is_set() or unwritten:
            try:
                if not group_ready:
                    await self.queue.ensure_group()
                    group_ready = True
                if not unwritten:
                    now = time.monotonic()
                    if now >= next_claim:
                        next_claim = now + task.claim_idle / 2
                        unwritten = await self.queue.claim_stale(self.name, claim_idle_ms, batch)
                    if not unwritten:
                        unwritten = await self._read_batch(batch)
                    if now >= next_retention and self.settings.history.retention_days > 0:
                        next_retention = now + RETENTION_INTERVAL
                        gone = await self.archive.forget_older_than(self.settings.history.retention_days)
                        log.info("history retention", extra=kv(deleted=gone))
                if unwritten:
                    self.written += await self.archive.write([r for r in map(stored, unwritten) if r])
                    metrics.ARCHIVED.inc(len(unwritten))
                    await self.queue.ack([entry.id for entry in unwritten])
                    unwritten = []
                if backoff > RETRY_MIN:
                    log.info("history writer working again")
                backoff = RETRY_MIN
            except (RedisError, SQLAlchemyError, OSError) as exc:
                if self.stopping.is_set() and unwritten:
                    log.warning("history batch left pending for the next writer", extra=kv(entries=len(unwritten)))
                    return
                if backoff == RETRY_MIN:  # one line per outage, not one per attempt
                    store = "redis" if isinstance(exc, RedisError) else "database"
                    log.warning("history writer: store unavailable; retrying", extra=kv(store=store, error=repr(exc)))
                if isinstance(exc, RedisError):
                    group_ready = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
