"""Backpressure at logic's entry (pure logic; the state reader is a fake)."""

from __future__ import annotations

import asyncio

from gochat_py.logic.admission import Admission
from gochat_py.queue import GroupState
from tests.unit.fakes import Clock, returns_at_once


class Reader:
    """Hands out the states it was given, one per call; the last one repeats.  Each reading
    moves ``clock`` on by ``step`` seconds (time passes while pushes wait)."""

    def __init__(self, *states: GroupState, clock: Clock | None = None, step: float = 0.0) -> None:
        self.states = list(states)
        self.calls = 0
        self.caps: set[int] = set()
        self.clock = clock
        self.step = step

    async def __call__(self, cap: int) -> GroupState:
        self.calls += 1
        self.caps.add(cap)
        await asyncio.sleep(0)
        if self.clock is not None:
            self.clock.now += self.step
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]


async def test_a_push_is_admitted_at_once_below_the_limit() -> None:
    reader = Reader(GroupState(0, 0, "0-0"))
    admission = Admission(reader, max_backlog=10, max_wait=5, clock=Clock())
    admission.observe(GroupState(4, 6, "100-0"))
    assert returns_at_once(admission.admit())
    assert reader.calls == 0


async def test_a_push_waits_while_the_backlog_drains() -> None:
    draining = [GroupState(20, 30, f"{110 + n}-0") for n in range(5)] + [GroupState(2, 3, "200-0")]
    reader = Reader(*draining)
    admission = Admission(reader, max_backlog=10, max_wait=5, poll=0.001, clock=Clock())
    admission.observe(GroupState(20, 40, "100-0"))
    assert admission.congested()
    await asyncio.wait_for(admission.admit(), 10)  # the clock stands still: neither stalled nor too long
    assert reader.calls == 6
    assert reader.caps == {11}  # just past the limit: no need to count further
    assert not admission.congested()


async def test_a_stalled_queue_does_not_hold_pushes_back() -> None:
    """No consumer moves (task down): waiting would not help, the message waits in the queue."""
    clock = Clock()
    reader = Reader(GroupState(0, 500, "100-0"), clock=clock, step=0.125)
    admission = Admission(reader, max_backlog=10, max_wait=5, stall_after=0.5, poll=0.001, clock=clock)
    admission.observe(GroupState(0, 500, "100-0"))
    await asyncio.wait_for(admission.admit(), 10)  # returns once the stall is seen
    assert admission.stalled()
    assert reader.calls == 5  # 0.625 s without progress: the first reading past stall_after
    assert returns_at_once(admission.admit())  # and later pushes do not wait at all
    assert reader.calls == 5


async def test_a_wait_is_bounded() -> None:
    moving = [GroupState(0, 500, f"{n}-0") for n in range(1, 10_000)]  # progresses but never drains
    clock = Clock()
    reader = Reader(*moving, clock=clock, step=0.125)
    admission = Admission(reader, max_backlog=10, max_wait=0.5, poll=0.001, clock=clock)
    admission.observe(GroupState(0, 500, "0-0"))
    started = clock()
    await asyncio.wait_for(admission.admit(), 10)
    assert clock() - started == 0.5 and reader.calls == 4  # given up at the first reading past max_wait
    assert admission.congested() and not admission.stalled()


async def test_waiting_pushes_share_one_reading() -> None:
    reader = Reader(GroupState(50, 50, "1-0"), GroupState(0, 0, "2-0"))
    # poll 0: the waiting pushes wake on the same turn of the loop, whatever the machine's load
    admission = Admission(reader, max_backlog=10, max_wait=5, poll=0, clock=Clock())
    admission.observe(GroupState(50, 50, "0-0"))
    await asyncio.wait_for(asyncio.gather(*(admission.admit() for _ in range(20))), 10)
    assert reader.calls == 2  # one per round of waiting, not one per push


async def test_zero_turns_it_off() -> None:
    reader = Reader(GroupState(0, 0, "0-0"))
    admission = Admission(reader, max_backlog=0, max_wait=5, clock=Clock())
    admission.observe(GroupState(10**6, 10**6, "1-0"))
    assert returns_at_once(admission.admit())
    assert reader.calls == 0


async def test_a_push_waits_while_the_oldest_entry_has_waited_too_long() -> None:
    """Few entries, but they do not move (a connect node holds task back while its clients catch
    up): the delay bound holds pushes back where the count bound would not."""
    reader = Reader(GroupState(0, 3, "1-0", oldest_unread_ms=80), GroupState(0, 1, "2-0", oldest_unread_ms=5))
    admission = Admission(reader, max_backlog=64, max_wait=5, max_delay=0.03, poll=0.001, clock=Clock())
    admission.observe(GroupState(0, 3, "0-0", oldest_unread_ms=45))
    assert admission.congested()
    await asyncio.wait_for(admission.admit(), 10)
    assert reader.calls == 2
    assert not admission.congested()


async def test_entries_that_have_not_waited_long_do_not_hold_pushes_back() -> None:
    reader = Reader(GroupState(0, 0, "0-0"))
    admission = Admission(reader, max_backlog=64, max_wait=5, max_delay=0.03, clock=Clock())
    admission.observe(GroupState(0, 60, "100-0", oldest_unread_ms=29))
    assert returns_at_once(admission.admit())
    assert reader.calls == 0


async def test_a_delay_bound_of_zero_is_off() -> None:
    admission = Admission(Reader(GroupState(0, 0, "0-0")), max_backlog=64, max_wait=5, max_delay=0)
    admission.observe(GroupState(0, 1, "100-0", oldest_unread_ms=10**6))
    assert not admission.congested()
