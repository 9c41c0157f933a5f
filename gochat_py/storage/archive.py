"""The durable store of kept messages: one SQL table, through SQLAlchemy Core.

Written off the delivery path by task's history writer (a consumer group of its own on the queue),
in batches, idempotent by message id: a batch written twice (the writer died before its
acknowledgement) changes nothing.  Read by logic for history pages and for backlogs that the hot
store (:mod:`gochat_py.storage.history`) no longer covers.  Portable SQL only: SQLite by default,
PostgreSQL (asyncpg); the tests run both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    and_,
    delete,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from gochat_py.protocol.message_id import parse_id
from gochat_py.storage.history import Conversation, Key

log = logging.getLogger("gochat.archive")
metadata = MetaData()

messages = Table(
    "message",
    metadata,
    Column("id", String(41), primary_key=True),  # the message id, "<ms>-<seq>"
    Column("ms", BigInteger, nullable=False),  # the id as numbers, for order and ranges
    Column("seq", BigInteger, nullable=False),
    Column("conversation", String(64), nullable=False),  # "room:<id>" or "pair:<low user id>:<high>"
    Column("recipient", BigInteger, nullable=False),  # private messages: the target user; rooms: 0
    Column("op", SmallInteger, nullable=False),
    Column("body", LargeBinary, nullable=False),  # the frame body, without the id
    Index("ix_message_conversation", "conversation", "ms", "seq"),
    Index("ix_message_recipient", "recipient", "ms", "seq"),
)


@dataclass(frozen=True, slots=True)
class Stored:
    id: str
    conversation: str
    recipient: int
    op: int
    body: bytes


def conversation_name(conversation: Conversation) -> str:
    if conversation.kind == "pair":
        return f"pair:{conversation.a}:{conversation.b}"
    return f"room:{conversation.a}"


class Archive:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def write(self, rows: list[Stored]) -> int:
        """Inserts the rows whose id is not stored yet, in one transaction; returns how many were new."""
        if not rows:
            return 0
        values = []
        for row in rows:
            key = parse_id(row.id)
            if key is None:
                continue
            values.append(
                {
                    "id": row.id,
                    "ms": key[0],
                    "seq": key[1],
                    "conversation": row.conversation,
                    "recipient": row.recipient,
                    "op": row.op,
                    "body": row.body,
                }
            )
        if not values:  # every id unreadable: an empty insert would be an error
            return 0
        async with self.engine.begin() as conn:
            dialect = conn.dialect.name
            if dialect == "sqlite":
                from sqlalchemy.dialects.sqlite import insert as sqlite_insert

                statement = sqlite_insert(messages).on_conflict_do_nothing(index_elements=["id"])
                result = await conn.execute(statement, values)
                return max(result.rowcount, 0)
            if dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                # asyncpg reports no row count for a batch: the ids that went in come back instead
                statement = pg_insert(messages).on_conflict_do_nothing(index_elements=["id"]).returning(messages.c.id)
                return len((await conn.execute(statement, values)).all())
            # any other database: skip the ids already there (one writer per entry at a time)
            present = set(
                (
                    await conn.execute(select(messages.c.id).where(messages.c.id.in_([v["id"] for v in values])))
                ).scalars()
            )
            new = [v for v in values if v["id"] not in present]
            if new:
                await conn.execute(messages.insert(), new)
            return len(new)

    async def newest(
        self, conversation: Conversation, below: Key | None, above: Key | None, limit: int
    ) -> list[tuple[str, bytes]]:
        """Up to ``limit`` messages of the conversation with ids strictly between ``above`` and
        ``below``, newest first."""
        c = messages.c
        if conversation.kind == "inbox":
            where = [c.recipient == conversation.a, c.op == 2]
        else:
            where = [c.conversation == conversation_name(conversation)]
        if below is not None:
            where.append(or_(c.ms < below[0], and_(c.ms == below[0], c.seq < below[1])))
        if above is not None:
            where.append(or_(c.ms > above[0], and_(c.ms == above[0], c.seq > above[1])))
        query = select(c.id, c.body).where(*where).order_by(c.ms.desc(), c.seq.desc()).limit(limit)
        async with self.engine.connect() as conn:
            return [(row.id, bytes(row.body)) for row in await conn.execute(query)]

    async def is_empty(self) -> bool:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(messages.c.id).limit(1))).first() is None

    async def forget_older_than(self, days: float) -> int:
        """Retention: deletes messages older than ``days``; returns how many."""
        cutoff_ms = int((time.time() - days * 86400) * 1000)
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(messages).where(messages.c.ms < cutoff_ms))
            return max(result.rowcount, 0)

    async def close(self) -> None:
        await self.engine.dispose()
