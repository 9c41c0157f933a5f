"""Task's consumer loop with a fake queue, a fake router and a fake clock: pure logic, no Redis.

What the loop promises: an entry is acknowledged only after the router says the nodes took it;
stale entries of dead consumers are taken over and the stream trimmed on their own schedules; the
batch in hand is finished when the task stops; a Redis outage is retried (the group made again,
one log line per outage) and never ends the loop.  (Linger: test_task_linger.py.)
"""

from __future__ import annotations

import asyncio
import logging
import types
from dataclasses import dataclass, field

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py import metrics
from gochat_py.config import load_settings
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import Entry
from gochat_py.task import worker
from gochat_py.task.router import RouteStats
from gochat_py.task.worker import Consumer
from tests.unit.fakes import Clock

CLAIM_IDLE, TRIM_INTERVAL, BATCH = 4.0, 10.0, 8


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock(1000.0)
    monkeypatch.setattr(worker, "time", types.SimpleNamespace(monotonic=fake.monotonic))
    return fake


def entry(entry_id: str) -> Entry:
    return Entry(entry_id, QueueMessage(op=3, room_id=1, msg=entry_id.encode()))


class Queue:
    """Plays a script: each step of ``reads`` is what one read returns, or an exception it raises,
    or a function run first (to move the clock).  When the script is done the consumer is stopped."""

    def __init__(self, reads: list, stale: list[list[Entry]] | None = None) -> None:
        self.reads = list(reads)
        self.stale = list(stale or [])
        self.consumer: Consumer | None = None
        self.calls: list[tuple] = []
        self.acked: list[str] = []
        self.group_errors: list[Exception] = []
        self.backlog_reply = (3, 5)

    async def ensure_group(self, *others: str) -> None:
        self.calls.append(("ensure_group",))
        self.other_groups = others
        if self.group_errors:
            raise self.group_errors.pop(0)

    async def claim_stale(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        self.calls.append(("claim_stale", consumer, min_idle_ms, count))
        return self.stale.pop(0) if self.stale else []

    async def backlog(self) -> tuple[int, int]:
        self.calls.append(("backlog",))
        return self.backlog_reply

    async def trim(self, groups: list[str] | None = None) -> None:
        self.calls.append(("trim",))
        self.trimmed_for = groups

    async def forget_idle_consumers(self, idle_ms: int) -> None:
        self.calls.append(("forget_idle_consumers", idle_ms))

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        self.calls.append(("read", consumer, count, block_ms))
        while self.reads and callable(self.reads[0]):
            self.reads.pop(0)()
        if not self.reads:
            assert self.consumer is not None
            self.consumer.stopping.set()
            return []
        step = self.reads.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    async def ack(self, ids: list[str]) -> None:
        self.calls.append(("ack", list(ids)))
        self.acked.extend(ids)

    def count(self, name: str) -> int:
        return sum(1 for call in self.calls if call[0] == name)


@dataclass
class Router:
    """Takes every entry except those in ``refuse`` (a node that did not take them)."""

    refuse: set[str] = field(default_factory=set)
    delivered: list[list[str]] = field(default_factory=list)
    stats: RouteStats = field(default_factory=RouteStats)
    clients: object = field(default_factory=lambda: types.SimpleNamespace(watcher=types.SimpleNamespace(nodes={})))
    during_deliver: object = None

    async def deliver(self, entries: list[Entry]) -> list[str]:
        self.delivered.append([e.id for e in entries])
        if callable(self.during_deliver):
            self.during_deliver()
        return [e.id for e in entries if e.id not in self.refuse]


def make(queue: Queue, router: Router) -> Consumer:
    settings = load_settings(
        env="dev",
        environ={
            "GOCHAT_TASK__CLAIM_IDLE": str(CLAIM_IDLE),
            "GOCHAT_TASK__TRIM_INTERVAL": str(TRIM_INTERVAL),
            "GOCHAT_TASK__BATCH_SIZE": str(BATCH),
            "GOCHAT_TASK__LINGER": "0",
            "GOCHAT_TASK__BLOCK_MS": "250",
        },
    )
    consumer = Consumer(queue, router, settings, "task-1")  # type: ignore[arg-type]
    queue.consumer = consumer
    return consumer


async def run(consumer: Consumer) -> None:
    await asyncio.wait_for(consumer.run(), 30)  # the script ends the loop; the bound only catches a hang


async def test_only_what_the_nodes_took_is_acknowledged(clock: Clock) -> None:
    queue = Queue([[entry("1-0"), entry("2-0"), entry("3-0")], [entry("4-0")]])
    router = Router(refuse={"2-0"})
    await run(make(queue, router))
    assert router.delivered == [["1-0", "2-0", "3-0"], ["4-0"]]
    assert queue.acked == ["1-0", "3-0", "4-0"]  # 2-0 stays pending: taken over and delivered again later
    reads = [call for call in queue.calls if call[0] == "read"]
    assert reads[0] == ("read", "task-1", BATCH, 250)


async def test_stale_entries_are_taken_over_first_and_then_every_half_claim_idle(clock: Clock) -> None:
    def later() -> None:
        clock.now += CLAIM_IDLE / 2

    queue = Queue(
        [[entry("5-0")], [], later, [], [], later, []],
        stale=[[entry("1-0"), entry("2-0")], [entry("3-0")]],
    )
    router = Router()
    await run(make(queue, router))
    claims = [call for call in queue.calls if call[0] == "claim_stale"]
    assert claims == [("claim_stale", "task-1", int(CLAIM_IDLE * 1000), BATCH)] * 3  # at 0, +2 s, +4 s
    assert router.delivered[:2] == [["1-0", "2-0"], ["5-0"]]  # the dead consumer's entries come first
    assert router.delivered[2] == ["3-0"]
    assert queue.acked == ["1-0", "2-0", "5-0", "3-0"]
    # every take-over also publishes the backlog
    assert queue.count("backlog") == 3
    assert metrics.QUEUE_PENDING._value.get() == 3
    assert metrics.QUEUE_LAG._value.get() == 5


async def test_the_stream_is_trimmed_on_its_own_schedule(clock: Clock) -> None:
    def later(seconds: float):
        def move() -> None:
            clock.now += seconds

        return move

    queue = Queue([[], later(TRIM_INTERVAL - 1), [], later(1), [], []])
    await run(make(queue, Router()))
    assert queue.count("trim") == 2  # at the start and TRIM_INTERVAL later, not on every read
    # not past what the history writer has still to read: its group exists before the first trim
    assert queue.other_groups == ("gochat_history",)
    assert queue.trimmed_for == ["gochat_task", "gochat_history"]
    assert queue.calls.count(("forget_idle_consumers", 3_600_000)) == 2


async def test_the_batch_in_hand_is_finished_when_the_task_stops(clock: Clock) -> None:
    queue = Queue([[entry("1-0"), entry("2-0")], [entry("3-0")]])
    consumer = make(queue, Router())
    consumer.router.during_deliver = consumer.stopping.set  # SIGTERM while the nodes take the batch
    await run(consumer)
    assert queue.acked == ["1-0", "2-0"]  # acknowledged although stopping was set meanwhile
    assert queue.count("read") == 1  # and nothing more was read
    assert len(queue.reads) == 1


async def test_a_redis_outage_is_retried_and_the_group_made_again(
    clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(worker.asyncio, "sleep", sleep)
    down = RedisConnectionError("Connection refused")
    queue = Queue([down, down, down, down, [entry("1-0")]])
    queue.group_errors = [down]  # Redis is down from the start
    caplog.set_level(logging.INFO, logger="gochat.task")
    await run(make(queue, Router()))

    assert queue.acked == ["1-0"]  # served once Redis answered
    # one failed group creation, then four failed reads, each followed by a new ensure_group
    # (a restarted Redis may have lost the group with the stream)
    assert queue.count("ensure_group") == 6
    low, high = worker.REDIS_RETRY_MIN, worker.REDIS_RETRY_MAX
    assert pauses == [low, low * 2, low * 4, low * 8, high]  # doubling, capped
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("redis unavailable; retrying") == 1  # one line per outage
    assert messages.count("redis reachable again") == 1


async def test_a_second_outage_is_logged_again(
    clock: Clock, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def sleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(worker.asyncio, "sleep", sleep)
    down = RedisConnectionError("Connection refused")
    queue = Queue([down, [entry("1-0")], down, [entry("2-0")]])
    caplog.set_level(logging.INFO, logger="gochat.task")
    await run(make(queue, Router()))
    assert queue.acked == ["1-0", "2-0"]
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("redis unavailable; retrying") == 2
    assert messages.count("redis reachable again") == 2


async def test_an_error_that_is_not_redis_ends_the_loop(clock: Clock) -> None:
    """Only Redis faults are retried: anything else is a bug, and crashes the module visibly."""
    queue = Queue([[entry("1-0")]])
    router = Router()

    def broken() -> None:
        raise RuntimeError("bug")

    router.during_deliver = broken
    with pytest.raises(RuntimeError, match="bug"):
        await run(make(queue, router))
    assert queue.acked == []
