"""Backpressure at the entry of the system: a push waits while the queue is congested.

Without it a burst of pushes is accepted as fast as the api can answer, and every message then
waits behind all the others in the Redis stream: latency becomes the length of the burst.  With
it, logic holds a push back while more than ``max_backlog`` entries wait for a task to pick them
up, or while the oldest of them has waited more than ``max_delay``, so a burst waits in the
clients' own requests in flight instead (Little's law).  The count bounds memory; the delay
bounds latency whatever a message costs to deliver: a room message to thousands of sockets
drains far slower than a private one, and a connect node whose clients fall behind holds task
back (connect.pacing), which shows here as entries that wait.

Holding back only helps while task is draining the stream.  When no consumer makes progress
(task stopped, restarting, or stuck on a dead node) waiting would only slow every push down, so
a push is admitted at once and the message waits in the stream as it always did (at-least-once:
nothing is refused).  A wait is also bounded by ``max_wait``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gochat_py.metrics import ADMISSION_WAIT
from gochat_py.queue import GroupState

StateReader = Callable[[int], Awaitable[GroupState | None]]  # the cap of the unread count


class Admission:
    def __init__(
        self,
        read_state: StateReader,
        max_backlog: int,
        max_wait: float,
        max_delay: float = 0.0,
        stall_after: float = 0.5,
        poll: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.read_state = read_state
        self.max_backlog = max_backlog
        self.max_wait = max_wait
        self.max_delay_ms = max_delay * 1000
        self.stall_after = stall_after
        self.poll = poll
        self.clock = clock
        self.state = GroupState(0, 0, "")
        self._progress_at = self.clock()
        self._reading: asyncio.Future[GroupState] | None = None

    def observe(self, state: GroupState | None) -> None:
        """Records a fresh reading (one comes back with every enqueue, at no extra round trip)."""
        if state is None:
            return
        if (state.last_read, state.pending) != (self.state.last_read, self.state.pending):
            self._progress_at = self.clock()
        self.state = state

    @property
    def cap(self) -> int:
        """How far a reading needs to count unread entries: just past the limit."""
        return self.max_backlog + 1

    def congested(self) -> bool:
        state = self.state
        return (self.max_backlog > 0 and state.backlog > self.max_backlog) or (
            self.max_delay_ms > 0 and state.oldest_unread_ms > self.max_delay_ms
        )

    def stalled(self) -> bool:
        """No consumer has read or acknowledged anything for ``stall_after`` seconds."""
        return self.clock() - self._progress_at > self.stall_after

    async def admit(self) -> None:
        """Returns when a push may be enqueued."""
        if not self.congested() or self.stalled():
            return
        started = self.clock()
        deadline = started + self.max_wait
        while True:
            await asyncio.sleep(self.poll)
            self.observe(await self._refresh())
            if not self.congested() or self.stalled() or self.clock() >= deadline:
                break
        ADMISSION_WAIT.observe(self.clock() - started)

    async def _refresh(self) -> GroupState | None:
        """One XINFO at a time, shared by every push waiting in this process."""
        if self._reading is None:
            self._reading = asyncio.ensure_future(self.read_state(self.cap))
            self._reading.add_done_callback(self._forget_reading)
        return await asyncio.shield(self._reading)

    def _forget_reading(self, _: asyncio.Future[GroupState]) -> None:
        self._reading = None
