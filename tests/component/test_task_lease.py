"""The task lease (one task process delivers at a time) and the queue's trimming with two groups,
against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gochat_py.config import QueueSettings
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue
from gochat_py.task.leader import Leadership
from tests.e2e.harness import Infra


@pytest.fixture
async def redis(infra: Infra) -> AsyncIterator[Redis]:
    client = Redis.from_url(f"redis://{infra.redis_address}/14")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


async def test_one_holder_at_a_time_and_a_clean_stop_hands_over_at_once(redis: Redis) -> None:
    first = Leadership(redis, "lease", "a", ttl=30)
    second = Leadership(redis, "lease", "b", ttl=30)
    assert await first.refresh() is True and first.taken_over.is_set()
    assert await second.refresh() is False and not second.taken_over.is_set()
    assert await first.refresh() is True  # renewing its own
    assert 0 < await redis.pttl("lease") <= 30_000
    await first.stop()
    assert await redis.get("lease") is None
    assert await second.refresh() is True and second.taken_over.is_set()


async def test_a_holder_that_stops_renewing_is_replaced_after_the_ttl(redis: Redis) -> None:
    silent = Leadership(redis, "lease", "a", ttl=0.3)
    standby = Leadership(redis, "lease", "b", ttl=0.3)
    assert await silent.refresh()
    assert not await standby.refresh()
    await asyncio.sleep(0.4)
    assert await standby.refresh()
    assert not await silent.refresh()  # it learns it lost the lease at its next renewal
    assert not silent.leading


async def test_trim_keeps_what_any_listed_group_has_not_finished(redis: Redis) -> None:
    settings = QueueSettings(stream="trim_test", group="task")
    task = MessageQueue(redis, settings)
    writer = MessageQueue(redis, settings, group="history")
    await task.ensure_group("history")
    # enough entries for Redis's approximate trimming (whole nodes of 100 entries) to show
    await task.enqueue_many([QueueMessage(op=3, room_id=1, msg=b"m%d" % i) for i in range(250)])
    await task.ack([e.id for e in await task.read("t", 1000, None)])  # task is done with all of them
    read = await writer.read("w", 2, None)  # the writer has two in hand, the rest unread
    await task.trim(["task", "history"])
    assert await redis.xlen("trim_test") == 250  # nothing past the writer's oldest pending entry
    await writer.ack([e.id for e in read])
    await task.trim(["task", "history"])
    assert await redis.xlen("trim_test") >= 248  # the writer's unread entries stay
    await task.trim(["task"])  # a group not listed (history turned off) holds nothing back
    assert await redis.xlen("trim_test") < 248
