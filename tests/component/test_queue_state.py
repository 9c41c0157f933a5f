"""The queue's backlog as logic's backpressure reads it, against a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gochat_py.config import QueueSettings
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue, Outgoing
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


async def test_a_private_message_records_its_senders_nodes_and_origin_for_the_echo(queue: MessageQueue) -> None:
    redis = queue.redis
    await redis.hset("holders_bob", mapping={"ws-b": 1})
    await redis.hset("holders_ann", mapping={"ws-a": 1, "tcp-c": 1})
    message = QueueMessage(op=2, user_id=9, msg=b"{}")
    await queue.ensure_group()
    await queue.enqueue_many(
        [
            Outgoing(message, holders_key="holders_bob", echo_key="holders_ann", echo_user=7, origin="3@ws-a"),
            Outgoing(message, holders_key="holders_bob", echo_key="holders_nobody", echo_user=7, origin="3@ws-a"),
            Outgoing(message, holders_key="holders_bob"),
            Outgoing(message, echo_key="holders_ann", echo_user=7),  # over HTTP: no origin
        ]
    )
    echoed, senderless, plain, http = await queue.read("c1", count=10, block_ms=10)
    assert (echoed.servers, sorted(echoed.echo_servers.split(",")), echoed.echo_user, echoed.origin) == (
        "ws-b",
        ["tcp-c", "ws-a"],
        7,
        "3@ws-a",
    )
    for entry in (senderless, plain):  # a sender on no node: nothing to copy
        assert (entry.servers, entry.echo_servers, entry.echo_user, entry.origin) == ("ws-b", "", 0, "")
    assert (http.servers, http.echo_user, http.origin) == (None, 7, "")
    assert all(e.message == message for e in (echoed, senderless, plain, http))
