"""Pacing's arithmetic and its hold (pure logic: the probe is a fake that answers when told)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator

import pytest

from gochat_py.connect import pacing
from gochat_py.connect.pacing import LagSample, Pacer


def test_a_member_s_first_answer_sets_its_floor_and_shows_no_lag() -> None:
    sample = LagSample(4)
    sample.add("a")
    sample.sent("a", now=10.0)
    sample.answered("a", rtt=0.080)  # a far client: 80 ms is its network, not lag
    assert sample.lag(now=10.1) == 0.0
    sample.sent("a", now=11.0)
    sample.answered("a", rtt=0.130)
    assert sample.lag(now=11.2) == pytest.approx(0.050)


def test_a_ping_in_flight_counts_with_its_age_so_far() -> None:
    sample = LagSample(4)
    sample.add("a")
    sample.sent("a", now=0.0)
    sample.answered("a", rtt=0.010)
    sample.sent("a", now=1.0)
    assert sample.lag(now=1.005) == 0.0  # younger than the floor: nothing known yet
    assert sample.lag(now=1.310) == pytest.approx(0.300)  # unanswered for 310 ms: at least 300 behind


def test_the_median_ignores_a_few_slow_clients() -> None:
    sample = LagSample(5)
    for key, rtt in zip("abcde", (0.001, 0.002, 0.001, 0.003, 0.001), strict=True):
        sample.add(key)
        sample.sent(key, now=0.0)
        sample.answered(key, rtt)
    for key in "ab":  # two stop reading
        sample.sent(key, now=1.0)
    for key in "cde":
        sample.sent(key, now=1.0)
        sample.answered(key, 0.002)
    assert sample.lag(now=3.0) <= 0.001
    sample.sent("c", now=3.0)  # a third one stops: now the median is behind
    assert sample.lag(now=4.0) == pytest.approx(0.999)


def test_members_never_answered_do_not_count_and_the_sample_is_bounded() -> None:
    sample = LagSample(2)
    for key in "abc":
        sample.add(key)
    assert set(sample.members) == {"a", "b"}
    assert sample.wanted() == 0
    sample.sent("a", now=0.0)
    assert sample.lag(now=9.0) == 0.0  # no floor yet: its age says nothing about lag
    sample.drop("a")
    sample.answered("a", 1.0)  # an answer from a dropped member is ignored
    assert sample.wanted() == 1 and sample.to_ping() == ["b"]


def test_a_ping_unanswered_for_long_marks_its_member_stuck() -> None:
    sample = LagSample(3)
    for key in "ab":
        sample.add(key)
        sample.sent(key, now=0.0)
    sample.answered("b", 0.001)
    assert sample.stuck(now=4.0, after=5.0) == []
    assert sample.stuck(now=6.0, after=5.0) == ["a"]


class Chan:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def __repr__(self) -> str:
        return self.name


class FakeProbe:
    """Pings that are answered only when the test says so, with a round trip it chooses."""

    def __init__(self) -> None:
        self.waiting: dict[Chan, asyncio.Future[float]] = {}
        self.sent = 0

    async def __call__(self, channel: object) -> asyncio.Future[float]:
        assert isinstance(channel, Chan)
        if channel.closed:
            raise ConnectionError("closed")
        self.sent += 1
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[channel] = future
        return future

    def answer(self, rtt: float) -> None:
        for future in self.waiting.values():
            if not future.done():
                future.set_result(rtt)
        self.waiting.clear()


async def ticks(n: int) -> None:
    await asyncio.sleep(pacing.PROBE_INTERVAL * n + 0.01)


@contextlib.asynccontextmanager
async def running(
    targets: Callable[[], Iterable[object]], sample: int, max_hold: float = 0.5
) -> AsyncIterator[tuple[Pacer, FakeProbe]]:
    """A started pacer (limit 20 ms) with a fake probe; stopped on the way out."""
    probe = FakeProbe()
    pacer = Pacer(0.02, max_hold, sample, probe, targets)
    pacer.start()
    try:
        yield pacer, probe
    finally:
        await pacer.stop()


async def busy(pacer: Pacer, n: int = 1) -> None:
    """Frames flow for ``n`` ticks."""
    for _ in range(n):
        pacer.written = 100
        await asyncio.sleep(pacing.PROBE_INTERVAL)
    await asyncio.sleep(0.01)


async def test_an_idle_node_sends_no_ping() -> None:
    async with running(lambda: [Chan("a"), Chan("b")], sample=4) as (_, probe):
        await ticks(3)
    assert probe.sent == 0


async def test_deliveries_are_held_while_clients_lag_and_go_once_they_catch_up() -> None:
    channels = [Chan(n) for n in "abcdef"]
    async with running(lambda: channels, sample=4, max_hold=5.0) as (pacer, probe):
        await busy(pacer)
        assert probe.sent == 4  # a sample of 4 of the sockets written to
        probe.answer(0.001)  # floors: 1 ms
        await asyncio.wait_for(pacer.hold(), 0.05)  # nobody behind: no wait
        await busy(pacer)  # pinged again; the clients now stop reading
        await asyncio.sleep(0.05)
        held = asyncio.ensure_future(pacer.hold())
        await ticks(2)
        assert not held.done()  # pings unanswered for 50+ ms: held
        probe.answer(0.002)
        await asyncio.wait_for(held, 0.5)  # released by the answers, not by max_hold


async def test_a_hold_is_bounded_and_stopping_releases_every_hold() -> None:
    channels = [Chan(n) for n in "abc"]
    async with running(lambda: channels, sample=3, max_hold=0.1) as (pacer, probe):
        await busy(pacer)
        probe.answer(0.001)
        await busy(pacer)
        await asyncio.sleep(0.05)  # unanswered: behind
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(pacer.hold(), 1)
        assert loop.time() - started >= 0.1
        held = asyncio.ensure_future(pacer.hold())
        await asyncio.sleep(0.01)
    await asyncio.wait_for(held, 0.05)


async def test_closed_sockets_leave_the_sample_and_others_take_their_place() -> None:
    channels = [Chan(n) for n in "abcd"]
    async with running(lambda: channels, sample=2) as (pacer, _):
        await busy(pacer)
        first = set(pacer.sample.members)
        assert len(first) == 2
        for channel in first:
            channel.closed = True
        await busy(pacer)
        assert set(pacer.sample.members) == {c for c in channels if not c.closed}


async def test_a_stuck_member_leaves_the_sample_and_a_fresh_one_takes_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A client stalled in a room that went quiet must not hold the node for ever."""
    monkeypatch.setattr(pacing, "STUCK", 0.1)
    quiet, busy_room = [Chan("a"), Chan("b")], [Chan("c"), Chan("d")]
    targets = [quiet]
    async with running(lambda: targets[0], sample=2) as (pacer, _):
        await busy(pacer)
        assert set(pacer.sample.members) == set(quiet)  # pinged, and they never answer
        targets[0] = busy_room  # the traffic moves to another room
        await busy(pacer, 2)
        assert set(pacer.sample.members) == set(quiet)  # not yet stuck
        await busy(pacer, 6)  # unanswered for longer than STUCK
        assert set(pacer.sample.members) == set(busy_room)


async def test_only_a_bounded_number_of_candidates_is_looked_at() -> None:
    looked = 0

    def many() -> Iterator[Chan]:
        nonlocal looked
        for n in range(100_000):
            looked += 1
            yield Chan(str(n))

    async with running(many, sample=4) as (pacer, _):
        await busy(pacer)
        assert len(pacer.sample.members) == 4
        assert looked <= pacing.CANDIDATES


async def test_holding_stops_once_a_node_has_held_for_its_share_of_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients that stay behind must not slow the whole cluster for ever: past the budget the node
    stops holding (its slow clients then overflow their send buffers and are closed, as before)."""
    monkeypatch.setattr(pacing, "HOLD_WINDOW", 0.6)
    monkeypatch.setattr(pacing, "HOLD_SHARE", 0.5)  # 0.3 s of holding per 0.6 s
    channels = [Chan(n) for n in "abc"]
    async with running(lambda: channels, sample=3, max_hold=0.1) as (pacer, probe):
        await busy(pacer)
        probe.answer(0.001)
        await busy(pacer)
        await asyncio.sleep(0.05)  # they stop answering: behind for good
        loop = asyncio.get_running_loop()
        took = []
        for _ in range(8):
            started = loop.time()
            await pacer.hold()
            took.append(loop.time() - started)
        first_free = next(n for n, t in enumerate(took) if t < 0.05)  # StopIteration: never stopped
        assert sum(took[:first_free]) >= 0.3  # held for the whole budget first (max_hold at a time)
        assert all(t >= 0.1 for t in took[:first_free])
        assert took[first_free + 1] < 0.05  # and then not at all
        await asyncio.sleep(0.7)  # a window later the budget is back
        started = loop.time()
        await pacer.hold()
        assert loop.time() - started >= 0.1
