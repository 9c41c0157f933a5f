"""The archive of kept messages on each database gochat-py supports (a SQLite file, a real
PostgreSQL): idempotent batches, pages by id, the inbox, retention."""

from __future__ import annotations

import time

from gochat_py.storage.archive import Archive, Stored
from gochat_py.storage.history import Conversation
from gochat_py.storage.schema import upgrade
from gochat_py.storage.sql import make_engine


async def archive_on(database_url: str) -> Archive:
    await upgrade(database_url)
    return Archive(make_engine(database_url))


def room_message(ms: int, seq: int, room: int = 1) -> Stored:
    return Stored(f"{ms}-{seq}", f"room:{room}", 0, 3, f'{{"msg":"m{ms}.{seq}"}}'.encode())


async def test_a_batch_written_twice_is_stored_once(database_url: str) -> None:
    archive = await archive_on(database_url)
    try:
        assert await archive.is_empty()
        batch = [room_message(1000, i) for i in range(50)]
        assert await archive.write(batch) == 50
        assert await archive.write(batch) == 0  # the writer died before its acknowledgement: nothing changes
        overlapping = [*batch[40:], *(room_message(1001, i) for i in range(5))]
        assert await archive.write(overlapping) == 5
        assert await archive.write([Stored("not-an-id", "room:1", 0, 3, b"x")]) == 0  # skipped, not stored
        assert await archive.write([]) == 0
        page = await archive.newest(Conversation.room(1), None, None, 1000)
        assert len(page) == 55 and len({message_id for message_id, _ in page}) == 55
        assert not await archive.is_empty()
    finally:
        await archive.close()


async def test_pages_go_newest_first_by_number_not_by_text(database_url: str) -> None:
    archive = await archive_on(database_url)
    try:
        # "999-0" sorts after "1000-0" as text; the pages must follow the numbers
        keys = [(999, 0), (999, 12), (1000, 0), (1000, 2), (1000, 10), (1001, 0)]
        await archive.write([room_message(ms, seq) for ms, seq in keys])
        await archive.write([room_message(5000, 0, room=2)])  # another room never shows
        room = Conversation.room(1)
        first = await archive.newest(room, None, None, 3)
        assert [i for i, _ in first] == ["1001-0", "1000-10", "1000-2"]
        second = await archive.newest(room, (1000, 2), None, 3)
        assert [i for i, _ in second] == ["1000-0", "999-12", "999-0"]
        assert await archive.newest(room, (999, 0), None, 3) == []
        between = await archive.newest(room, (1001, 0), (999, 12), 10)
        assert [i for i, _ in between] == ["1000-10", "1000-2", "1000-0"]
        assert dict(first)["1000-10"] == b'{"msg":"m1000.10"}'
    finally:
        await archive.close()


async def test_the_inbox_holds_private_messages_to_the_user_only(database_url: str) -> None:
    archive = await archive_on(database_url)
    try:
        await archive.write(
            [
                Stored("10-0", "pair:1:2", 2, 2, b"to two"),
                Stored("11-0", "pair:1:2", 1, 2, b"to one"),
                Stored("12-0", "room:7", 0, 3, b"room"),
                Stored("13-0", "pair:2:3", 2, 2, b"to two again"),
            ]
        )
        assert await archive.newest(Conversation.inbox(2), None, None, 10) == [
            ("13-0", b"to two again"),
            ("10-0", b"to two"),
        ]
        assert [i for i, _ in await archive.newest(Conversation.pair(2, 1), None, None, 10)] == ["11-0", "10-0"]
    finally:
        await archive.close()


async def test_retention_deletes_only_what_is_older(database_url: str) -> None:
    archive = await archive_on(database_url)
    try:
        now_ms = int(time.time() * 1000)
        old, recent = now_ms - 3 * 86400_000, now_ms - 3600_000
        await archive.write([room_message(old, 0), room_message(old, 1), room_message(recent, 0)])
        assert await archive.forget_older_than(2) == 2
        assert [i for i, _ in await archive.newest(Conversation.room(1), None, None, 10)] == [f"{recent}-0"]
    finally:
        await archive.close()
