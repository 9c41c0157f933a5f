"""Task's read: under load a partial batch waits ``linger`` for more (a fake queue: pure scheduling)."""

from __future__ import annotations

from gochat_py.config import load_settings
from gochat_py.queue import Entry
from gochat_py.task.worker import Consumer


class Queue:
    """Hands out the prepared reads one by one and records how each was asked for."""

    def __init__(self, *reads: list[Entry]) -> None:
        self.reads = list(reads)
        self.calls: list[tuple[int, int | None]] = []

    async def read(self, consumer: str, count: int, block_ms: int | None) -> list[Entry]:
        self.calls.append((count, block_ms))
        return self.reads.pop(0) if self.reads else []


def entries(*ids: str) -> list[Entry]:
    return [Entry(i, None) for i in ids]


def consumer(queue: Queue, linger: float) -> Consumer:
    settings = load_settings(env="dev", environ={"GOCHAT_TASK__LINGER": str(linger), "GOCHAT_TASK__BATCH_SIZE": "10"})
    return Consumer(queue, None, settings, "c1")  # type: ignore[arg-type]


async def test_a_lone_message_goes_at_once() -> None:
    queue = Queue(entries("1-0"), entries("2-0"))
    assert [e.id for e in await consumer(queue, 0.005)._read_batch()] == ["1-0"]
    assert queue.calls == [(10, 1000)]


async def test_under_load_a_partial_batch_waits_for_more_without_blocking_again() -> None:
    queue = Queue(entries("1-0", "2-0"), entries("3-0", "4-0", "5-0"))
    assert [e.id for e in await consumer(queue, 0.005)._read_batch()] == ["1-0", "2-0", "3-0", "4-0", "5-0"]
    assert queue.calls == [(10, 1000), (8, None)]


async def test_a_full_batch_or_no_linger_reads_once() -> None:
    full = Queue(entries(*(f"{n}-0" for n in range(10))), entries("x-0"))
    assert len(await consumer(full, 0.005)._read_batch()) == 10
    assert len(full.calls) == 1
    off = Queue(entries("1-0", "2-0"), entries("3-0"))
    assert len(await consumer(off, 0)._read_batch()) == 2
    assert len(off.calls) == 1
