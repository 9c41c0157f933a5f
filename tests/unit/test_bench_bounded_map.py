"""The bench's bounded_map: results in order, at most ``limit`` at once, and a failure that leaves
nothing running behind it (against a server that is not there, one error, not one per item)."""

from __future__ import annotations

import asyncio

import pytest

from gochat_py.bench.api import bounded_map


async def test_results_in_item_order_with_at_most_limit_at_once() -> None:
    running = peak = 0

    async def work(item: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (5 - item % 5))
        running -= 1
        return item * 10

    assert await bounded_map(3, list(range(12)), work) == [i * 10 for i in range(12)]
    assert peak == 3


async def test_the_first_failure_cancels_the_rest() -> None:
    started: list[int] = []
    finished: list[int] = []

    async def work(item: int) -> int:
        started.append(item)
        if item == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        await asyncio.sleep(0.05)
        finished.append(item)
        return item

    with pytest.raises(ConnectionRefusedError):
        await bounded_map(2, list(range(6)), work)
    await asyncio.sleep(0.1)  # had anything been left running, it would finish now
    assert finished == []
    assert set(started) <= {0, 1, 2}  # at most the one that took the failed slot started after it
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
