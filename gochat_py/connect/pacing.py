"""Pacing: a connect node takes messages no faster than its clients read them.

Why: the kernel's socket buffers take frames far faster than a busy client reads them (on a LAN
or loopback a few hundred KiB per socket before the writer notices anything), so a burst does
not back up in the node or in the queue, where the server could hold it, but in the sockets:
every message then waits behind all the ones before it, and nothing tells the senders to slow
down.  A websocket ping measures what matters: it queues behind the frames already written and
comes back once the client has read up to it.  Its round trip, less the lowest one that client
has shown (its network's own delay), is how far behind the client is.

The node pings a small sample of the sockets it writes to.  While the sample's median lag is over
``[connect] pace_lag``, a Deliver call returns only once the lag has fallen (or after
``pace_max_hold``): task then reads nothing more, the queue's backlog passes ``[queue]
max_backlog``, and logic holds new pushes back.  A burst then waits in the senders' requests,
where it costs nothing, instead of in socket buffers, where every later message waits behind it.
A few slow clients do not slow the node (the median ignores them); they fill their own send
buffers and are closed as too slow, as before.  Nor do clients that stay behind for good: a node
holds for at most HOLD_SHARE of any HOLD_WINDOW seconds, since every task waits for every node
and one node's slow clients would otherwise set the pace of the whole cluster.

The sample follows the traffic (it is filled from the sockets the node last wrote to), and
sockets are pinged only while frames flow, at most one ping in flight per socket and one per
``PROBE_INTERVAL``: an idle node sends nothing.  :class:`LagSample` holds the arithmetic and no
I/O; :class:`Pacer` drives it on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from itertools import islice

from gochat_py.logs import kv
from gochat_py.metrics import PACE_HOLD, PACE_LAG

log = logging.getLogger("gochat.connect")

PROBE_INTERVAL = 0.02  # seconds between two pings to the same socket, at most
ROTATE_TICKS = 50  # while busy, one member of the sample is swapped for a fresh one this often
STUCK = 5.0  # seconds a ping may go unanswered before its socket leaves the sample (gone, or about
# to be closed by the keepalive): a client stalled in a room that went quiet must not hold the node
CANDIDATES = 256  # sockets looked at to fill the sample: a huge room costs no more than a small one
# Holding absorbs bursts; it must not become a permanent brake.  A node holds deliveries at most
# HOLD_SHARE of any HOLD_WINDOW seconds: clients that stay behind longer are structurally too slow
# for the traffic, and slowing the whole cluster (task waits for every node) to their pace would
# be worse than what happens then, as without pacing: their send buffers take the backlog, and
# those that overflow them are closed as too slow.
HOLD_WINDOW = 10.0
HOLD_SHARE = 0.5
SPELL_QUIET = 5.0  # seconds without a hold that end a spell of holding (one log line each way)


@dataclass(slots=True)
class _Member:
    floor: float | None = None  # lowest round trip seen: the path's own delay, not lag
    sent_at: float | None = None  # when the ping in flight went out
    lag: float | None = None  # what the last answered ping showed


class LagSample:
    """How far behind a sample of sockets are, from the pings sent to them and their answers."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.members: dict[Hashable, _Member] = {}

    def wanted(self) -> int:
        return self.size - len(self.members)

    def add(self, key: Hashable) -> None:
        if key not in self.members and len(self.members) < self.size:
            self.members[key] = _Member()

    def drop(self, key: Hashable) -> None:
        self.members.pop(key, None)

    def stuck(self, now: float, after: float) -> list[Hashable]:
        """Members whose ping has gone unanswered for more than ``after`` seconds."""
        return [key for key, m in self.members.items() if m.sent_at is not None and now - m.sent_at > after]

    def to_ping(self) -> list[Hashable]:
        """Members without a ping in flight."""
        return [key for key, member in self.members.items() if member.sent_at is None]

    def sent(self, key: Hashable, now: float) -> None:
        member = self.members.get(key)
        if member is not None:
            member.sent_at = now

    def answered(self, key: Hashable, rtt: float) -> None:
        member = self.members.get(key)
        if member is None or member.sent_at is None:
            return
        member.sent_at = None
        member.floor = rtt if member.floor is None else min(member.floor, rtt)
        member.lag = rtt - member.floor

    def lag(self, now: float) -> float:
        """The median lag in seconds.  A ping still in flight counts with its age so far (the least
        its answer can show), so a client that stops reading raises the figure at once, without
        waiting for an answer that may never come.  Members never answered yet have no floor and
        do not count."""
        values: list[float] = []
        for member in self.members.values():
            if member.floor is None:
                continue
            if member.sent_at is not None:
                values.append(max(now - member.sent_at - member.floor, member.lag or 0.0))
            elif member.lag is not None:
                values.append(member.lag)
        return statistics.median_low(values) if values else 0.0


Probe = Callable[[object], Awaitable[Awaitable[float]]]
"""Sends a ping on a channel; the awaitable it returns gives the round trip in seconds."""


class Pacer:
    """Holds Deliver calls while the clients of this node fall behind (see the module's text).

    ``targets()`` names the channels the node last wrote to (where new sample members come from;
    only the first CANDIDATES are looked at, so it should start at a random place);
    ``probe(channel)`` pings one.  Channels must have ``closed`` (True once gone).
    """

    def __init__(
        self,
        limit: float,
        max_hold: float,
        sample_size: int,
        probe: Probe,
        targets: Callable[[], Iterable[object]],
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.limit = limit
        # seconds, monotonic; by default the event loop's own clock (the one its timers run on)
        self._clock = clock
        self.max_hold = max_hold
        self.sample = LagSample(sample_size)
        self.probe = probe
        self.targets = targets
        self.written = 0  # frames written since the last tick: pings go out only while they flow
        self._calm = asyncio.Event()
        self._calm.set()
        self._holding = 0
        self._held_since = 0.0  # when the current stretch of holding (one hold or more) began
        self._held_spans: deque[tuple[float, float]] = deque()  # (start, end) of recent stretches
        self._gave_up = False  # this spell used up the holding budget
        self._ticks = 0
        self._spell_started = 0.0
        self._last_hold = 0.0
        self._spell_holds = 0
        self._spell_held = 0.0
        self._loop_task: asyncio.Task[None] | None = None

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run(), name="pacer")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        self._calm.set()  # nothing may stay held by a node that stops

    async def hold(self) -> None:
        """Returns at once while clients keep up; otherwise once they do, or after max_hold, or
        at once when this node has held for HOLD_SHARE of the last HOLD_WINDOW seconds."""
        now = self._now()
        if self.sample.lag(now) <= self.limit:
            return
        if self._budget_spent(now):
            if not self._gave_up:
                self._gave_up = True
                log.warning(
                    "clients stay behind; deliveries are no longer held (slow clients are closed when"
                    " their send buffers fill)",
                    extra=kv(lag_ms=round(self.sample.lag(now) * 1000), window_s=HOLD_WINDOW, share=HOLD_SHARE),
                )
            return
        self._calm.clear()
        if not self._holding:
            self._held_since = now
        self._holding += 1
        if not self._spell_holds:
            self._spell_started = now
            log.warning(
                "clients fall behind; holding deliveries until they catch up",
                extra=kv(lag_ms=round(self.sample.lag(now) * 1000), limit_ms=round(self.limit * 1000)),
            )
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._calm.wait(), self.max_hold)
        finally:
            end = self._now()
            self._holding -= 1
            if not self._holding:
                self._held_spans.append((self._held_since, end))
            PACE_HOLD.observe(end - now)
            self._spell_holds += 1
            self._spell_held += end - now
            self._last_hold = end

    def _budget_spent(self, now: float) -> bool:
        """Held (any hold in progress counts) for HOLD_SHARE of the last HOLD_WINDOW seconds."""
        spans = self._held_spans
        while spans and spans[0][1] < now - HOLD_WINDOW:
            spans.popleft()
        held = sum(end - max(start, now - HOLD_WINDOW) for start, end in spans)
        if self._holding:
            held += now - self._held_since
        return held >= HOLD_SHARE * HOLD_WINDOW

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROBE_INTERVAL)
            try:
                await self._tick(self._now())
            except Exception:  # a bug here must not end pacing for the node's lifetime
                log.exception("pacing tick failed")

    async def _tick(self, now: float) -> None:
        busy = self.written > 0 or self._holding > 0
        self.written = 0
        self._settle(now)
        if not busy:
            if self._spell_holds and now - self._last_hold > SPELL_QUIET:
                log.info(
                    "clients caught up; deliveries flow freely",
                    extra=kv(
                        holds=self._spell_holds,
                        held_s=round(self._spell_held, 3),
                        spell_s=round(self._last_hold - self._spell_started, 3),
                    ),
                )
                self._spell_holds, self._spell_held, self._gave_up = 0, 0.0, False
            return
        self._refresh(now)
        for channel in self.sample.to_ping():
            try:
                answer = await self.probe(channel)
            except Exception:  # closed meanwhile: another member takes its place next tick
                self.sample.drop(channel)
                continue
            self.sample.sent(channel, now)
            asyncio.ensure_future(answer).add_done_callback(lambda done, ch=channel: self._answered(ch, done))

    def _answered(self, channel: object, done: asyncio.Future[float]) -> None:
        if done.cancelled() or done.exception() is not None:
            self.sample.drop(channel)  # the connection closed before answering
        else:
            self.sample.answered(channel, done.result())
        self._settle(self._now())

    def _settle(self, now: float) -> None:
        lag = self.sample.lag(now)
        PACE_LAG.set(lag)
        if lag <= self.limit:
            self._calm.set()

    def _refresh(self, now: float) -> None:
        """Drops closed and stuck members, swaps one now and then, and fills up from the latest
        targets (at most CANDIDATES of them looked at)."""
        gone = [ch for ch in self.sample.members if getattr(ch, "closed", True)]
        for channel in gone + self.sample.stuck(now, STUCK):
            self.sample.drop(channel)
        self._ticks += 1
        if self._ticks % ROTATE_TICKS == 0 and self.sample.members:
            self.sample.drop(random.choice(list(self.sample.members)))
        wanted = self.sample.wanted()
        if wanted:
            members = self.sample.members
            fresh = [
                ch for ch in islice(self.targets(), CANDIDATES) if ch not in members and not getattr(ch, "closed", True)
            ]
            for channel in random.sample(fresh, min(wanted, len(fresh))):
                self.sample.add(channel)
