"""Durable enqueue against a real primary and a real replica: ``WAIT`` after the queuing script,
on the connection that wrote, and a clear error when the replica does not acknowledge in time."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis

from gochat_py.config import QueueSettings
from gochat_py.launcher import ManagedProcess, redis_process
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue, ReplicaWait, ReplicaWaitError
from tests.e2e.harness import free_port

WAIT_MS = 300


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, ManagedProcess]]:
    """(primary address, replica address, the replica's process)."""
    root: Path = tmp_path_factory.mktemp("replica_wait")
    primary, replica = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log = (root / "redis.log").open("a", buffering=1)
    processes = [
        redis_process(primary, root / "primary", log),
        redis_process(replica, root / "replica", log, ("--replicaof", *primary.split(":")), name="replica"),
    ]
    for process in processes:
        process.start().wait_ready(30)
    host, port = primary.split(":")
    deadline = time.monotonic() + 30
    while redis.Redis(host=host, port=int(port)).info("replication").get("slave0", {}).get("state") != "online":
        assert time.monotonic() < deadline, "the replica did not finish its first sync"
        time.sleep(0.1)
    yield primary, replica, processes[1]
    for process in reversed(processes):
        process.stop()
    log.close()


@pytest.fixture
async def queue(servers: tuple[str, str, ManagedProcess]) -> AsyncIterator[MessageQueue]:
    client = Redis.from_url(f"redis://{servers[0]}/0")
    await client.flushdb()
    yield MessageQueue(client, QueueSettings(stream="wait_test", group="g"), replica_wait=ReplicaWait(1, WAIT_MS))
    await client.aclose()


def messages(n: int) -> list[QueueMessage]:
    return [QueueMessage(op=3, room_id=1, msg=b"m%d" % i) for i in range(n)]


async def test_a_durable_enqueue_returns_once_the_replica_holds_it(
    queue: MessageQueue, servers: tuple[str, str, ManagedProcess]
) -> None:
    await queue.ensure_group()
    replica = Redis.from_url(f"redis://{servers[1]}/0")
    try:
        for n in range(1, 21):
            state = await queue.enqueue_many(messages(3), durable=True)
            assert state is not None and state.unread == 3 * n
            assert await replica.xlen("wait_test") == 3 * n  # read at once: no waiting for it to arrive
    finally:
        await replica.aclose()


async def test_a_frozen_replica_makes_a_durable_enqueue_fail_in_time_not_hang(
    queue: MessageQueue, servers: tuple[str, str, ManagedProcess]
) -> None:
    """WAIT on any other connection than the one that wrote would count the frozen replica as
    up to date (that connection wrote nothing) and this would pass silently."""
    await queue.ensure_group()
    await queue.enqueue_many(messages(1), durable=True)  # the connection has written before
    replica = servers[2]
    replica.signal(signal.SIGSTOP)
    try:
        start = time.monotonic()
        with pytest.raises(ReplicaWaitError, match=r"0 of 1 replicas acknowledged .* within 300 ms; try again") as info:
            await queue.enqueue_many(messages(2), durable=True)
        assert info.value.queued
        took = time.monotonic() - start
        assert WAIT_MS / 1000 - 0.05 <= took < WAIT_MS / 1000 + 2, took
        # not durable: no WAIT, accepted at once
        assert await queue.enqueue_many(messages(1)) is not None
    finally:
        replica.signal(signal.SIGCONT)
    # the messages of the refused push are on the primary all the same (the error says "not
    # known to survive a failover", not "not queued"), and the pool's connections still work
    assert await queue.redis.xlen("wait_test") == 4
    assert (await queue.enqueue_many(messages(1), durable=True)).unread == 5


async def test_the_script_is_loaded_again_when_redis_forgot_it(queue: MessageQueue) -> None:
    await queue.ensure_group()
    await queue.redis.script_flush()
    state = await queue.enqueue_many(messages(2), durable=True)
    assert state is not None and state.unread == 2
    assert await queue.redis.xlen("wait_test") == 2  # queued once, not once per attempt


async def test_a_script_error_is_raised_and_the_connection_is_not_left_half_read(queue: MessageQueue) -> None:
    await queue.redis.set("wait_test", "not a stream")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        await queue.enqueue_many(messages(1), durable=True)
    await queue.redis.delete("wait_test")
    await queue.ensure_group()
    assert (await queue.enqueue_many(messages(1), durable=True)).unread == 1
    assert await queue.redis.ping()


@pytest.fixture(scope="module")
def lone_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A primary nobody replicates: a replica that died, or the promoted one after a failover."""
    root: Path = tmp_path_factory.mktemp("lone")
    address = f"127.0.0.1:{free_port()}"
    with (root / "redis.log").open("a", buffering=1) as log:
        process = redis_process(address, root / "data", log).start()
        process.wait_ready(30)
        yield address
        process.stop()


async def test_with_too_few_replicas_in_sync_nothing_is_queued(lone_server: str) -> None:
    """Refused before anything is written: the sender's retry will not make a second copy."""
    client = Redis.from_url(f"redis://{lone_server}/0")
    try:
        queue = MessageQueue(client, QueueSettings(stream="lone", group="g"), replica_wait=ReplicaWait(1, WAIT_MS))
        await queue.ensure_group()
        start = time.monotonic()
        with pytest.raises(ReplicaWaitError, match=r"^0 of 1 replicas in sync; nothing queued, try again$") as info:
            await queue.enqueue_many(messages(3), durable=True)
        assert not info.value.queued
        assert time.monotonic() - start < WAIT_MS / 1000  # no WAIT for replicas that are not there
        assert await client.xlen("lone") == 0
        assert (await queue.enqueue_many(messages(1))).unread == 1  # not durable: queued
    finally:
        await client.aclose()
