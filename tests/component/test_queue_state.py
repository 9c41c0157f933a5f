"""The queue's backlog as logic's backpressure reads it, against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gochat_py.config import QueueSettings
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue
from tests.e2e.harness import Infra


@pytest.fixture
async def queue(infra: Infra) -> AsyncIterator[MessageQueue]:
    redis = Redis.from_url(f"redis://{infra.redis_address}/15")
    await redis.flushdb()
    yield MessageQueue(redis, QueueSettings(stream="state_test", group="g"))
    await redis.flushdb()
    await redis.aclose()


def messages(n: int) -> list[QueueMessage]:
    return [QueueMessage(op=3, room_id=1, msg=b"m%d" % i) for i in range(n)]


async def test_pending_and_unread_follow_reads_and_acks(queue: MessageQueue) -> None:
    assert await queue.enqueue_many(messages(5)) is None  # no task has made the group yet
    await queue.ensure_group()
    state = await queue.group_state()
    assert state and (state.pending, state.unread) == (0, 5)
    taken = await queue.read("c1", count=3, block_ms=10)
    state = await queue.enqueue_many(messages(1))
    assert state and (state.pending, state.unread) == (3, 3)
    assert state.last_read == taken[-1].id
    await queue.ack([e.id for e in taken])
    await queue.ack([e.id for e in await queue.read("c1", count=10, block_ms=10)])
    state = await queue.group_state()
    assert state and (state.pending, state.unread, state.backlog) == (0, 0, 0)


async def test_unread_is_counted_up_to_the_cap(queue: MessageQueue) -> None:
    await queue.ensure_group()
    state = await queue.enqueue_many(messages(50), cap=10)
    assert state and state.unread == 10


async def test_nothing_unread_is_nothing_unread_whatever_xinfo_s_lag_says(queue: MessageQueue) -> None:
    """XINFO's lag comes from a counter of entries read that can drift from the stream (a live
    system showed a lag of 22,902 with nothing unread, and logic held every push back); the
    unread count is taken from the stream itself."""
    await queue.ensure_group()
    await queue.enqueue_many(messages(20))
    await queue.ack([e.id for e in await queue.read("c1", count=50, block_ms=10)])
    last = (await queue.redis.xinfo_stream(queue.stream))["last-generated-id"]
    await queue.redis.execute_command("XGROUP", "SETID", queue.stream, queue.group, last, "ENTRIESREAD", 3)
    (group,) = await queue.redis.xinfo_groups(queue.stream)
    assert group["lag"] == 17  # what Redis now believes
    state = await queue.group_state()
    assert state and (state.pending, state.unread) == (0, 0)


async def test_the_oldest_unread_entry_s_wait_is_measured_by_redis(queue: MessageQueue) -> None:
    await queue.ensure_group()
    state = await queue.enqueue_many(messages(3))
    assert state and state.unread == 3 and state.oldest_unread_ms < 1000
    # entries whose ids say they were written 5 s ago (Redis's clock, in the id) have waited 5 s
    (now_s, now_us) = await queue.redis.time()
    born = now_s * 1000 + now_us // 1000 - 5000
    await queue.redis.delete(queue.stream)
    await queue.redis.xadd(queue.stream, {"m": b"x"}, id=f"{born}-0")
    await queue.ensure_group()
    state = await queue.group_state()
    assert state and state.unread == 1 and 5000 <= state.oldest_unread_ms < 6000
    await queue.ack([e.id for e in await queue.read("c1", count=10, block_ms=10)])
    state = await queue.group_state()
    assert state and state.unread == 0 and state.oldest_unread_ms == 0
