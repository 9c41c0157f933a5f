"""Pacing's arithmetic and its hold (pure logic: the probe is a fake that answers when told)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

import pytest

from gochat_py.connect import pacing
from gochat_py.connect.pacing import LagSample, Pacer
from tests.unit.fakes import Clock, returns_at_once


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


LIMIT = 0.02


def pacer_on(
    targets: Callable[[], Iterable[object]], sample: int, max_hold: float = 60.0
) -> tuple[Pacer, FakeProbe, Clock]:
    """A pacer (limit 20 ms) on a fake clock with a fake probe, not started: the test turns its
    loop (a long max_hold by default, so only the clients' answers end a hold)."""
    probe, clock = FakeProbe(), Clock()
    return Pacer(LIMIT, max_hold, sample, probe, targets, clock=clock), probe, clock


async def tick(pacer: Pacer, clock: Clock, busy: bool = True, seconds: float = pacing.PROBE_INTERVAL) -> None:
    """One turn of the pacer's loop, ``seconds`` after the last; frames flowed meanwhile if ``busy``."""
    clock.advance(seconds)
    if busy:
        pacer.written = 100
    await pacer._tick(clock())
    await asyncio.sleep(0)  # whatever the turn woke runs


async def answer(probe: FakeProbe, rtt: float) -> None:
    probe.answer(rtt)
    await asyncio.sleep(0)  # the answers' callbacks run


async def behind(pacer: Pacer, probe: FakeProbe, clock: Clock) -> None:
    """Pinged and answered in 1 ms (the floors), pinged again, and 50 ms later still unanswered:
    the clients have stopped reading, their lag is over the limit."""
    await tick(pacer, clock)
    await answer(probe, 0.001)
    await tick(pacer, clock)
    clock.advance(0.05)
    assert pacer.sample.lag(clock()) > LIMIT


async def eventually(condition: Callable[[], bool], timeout: float) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_an_idle_node_sends_no_ping() -> None:
    pacer, probe, clock = pacer_on(lambda: [Chan("a"), Chan("b")], sample=4)
    for _ in range(3):
        await tick(pacer, clock, busy=False)
    assert probe.sent == 0
    await tick(pacer, clock)  # frames flow: now it pings
    assert probe.sent == 2


async def test_a_started_pacer_turns_its_loop_by_itself() -> None:
    probe = FakeProbe()
    pacer = Pacer(LIMIT, 60.0, 2, probe, lambda: [Chan("a"), Chan("b")])
    pacer.start()
    try:
        pacer.written = 100
        await eventually(lambda: probe.sent == 2, 10)
    finally:
        await pacer.stop()


async def test_deliveries_are_held_while_clients_lag_and_go_once_they_catch_up() -> None:
    channels = [Chan(n) for n in "abcdef"]
    pacer, probe, clock = pacer_on(lambda: channels, sample=4)
    await tick(pacer, clock)
    assert probe.sent == 4  # a sample of 4 of the sockets written to
    await answer(probe, 0.001)  # floors: 1 ms
    assert returns_at_once(pacer.hold())  # nobody behind: no wait
    await tick(pacer, clock)  # pinged again; the clients now stop reading
    clock.advance(0.05)
    held = asyncio.ensure_future(pacer.hold())
    await tick(pacer, clock)
    await tick(pacer, clock)
    assert not held.done()  # pings unanswered for 50+ ms: held
    await answer(probe, 0.002)
    await asyncio.wait_for(held, 10)  # released by the answers (max_hold is 60 s)


async def test_a_hold_is_bounded_by_max_hold() -> None:
    channels = [Chan(n) for n in "abc"]
    pacer, probe, clock = pacer_on(lambda: channels, sample=3, max_hold=0.1)
    await behind(pacer, probe, clock)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(pacer.hold(), 10)  # nothing answers: only max_hold ends it
    assert loop.time() - started >= 0.099  # (the event loop may fire a timer a clock tick early)
    assert pacer.sample.lag(clock()) > LIMIT


async def test_stopping_releases_every_hold() -> None:
    channels = [Chan(n) for n in "abc"]
    pacer, probe, clock = pacer_on(lambda: channels, sample=3)
    await behind(pacer, probe, clock)
    held = [asyncio.ensure_future(pacer.hold()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(h.done() for h in held)
    await pacer.stop()
    await asyncio.wait_for(asyncio.gather(*held), 10)  # by the stop, not by max_hold (60 s)


async def test_closed_sockets_leave_the_sample_and_others_take_their_place() -> None:
    channels = [Chan(n) for n in "abcd"]
    pacer, _, clock = pacer_on(lambda: channels, sample=2)
    await tick(pacer, clock)
    first = set(pacer.sample.members)
    assert len(first) == 2
    for channel in first:
        channel.closed = True
    await tick(pacer, clock)
    assert set(pacer.sample.members) == {c for c in channels if not c.closed}


async def test_a_stuck_member_leaves_the_sample_and_a_fresh_one_takes_its_place() -> None:
    """A client stalled in a room that went quiet must not hold the node for ever."""
    quiet, busy_room = [Chan("a"), Chan("b")], [Chan("c"), Chan("d")]
    targets = [quiet]
    pacer, _, clock = pacer_on(lambda: targets[0], sample=2)
    await tick(pacer, clock)
    assert set(pacer.sample.members) == set(quiet)  # pinged, and they never answer
    targets[0] = busy_room  # the traffic moves to another room
    await tick(pacer, clock, seconds=pacing.STUCK - 0.1)
    assert set(pacer.sample.members) == set(quiet)  # not yet stuck
    await tick(pacer, clock, seconds=0.2)  # unanswered for longer than STUCK
    assert set(pacer.sample.members) == set(busy_room)


async def test_only_a_bounded_number_of_candidates_is_looked_at() -> None:
    looked = 0

    def many() -> Iterator[Chan]:
        nonlocal looked
        for n in range(100_000):
            looked += 1
            yield Chan(str(n))

    pacer, _, clock = pacer_on(many, sample=4)
    await tick(pacer, clock)
    assert len(pacer.sample.members) == 4
    assert looked <= pacing.CANDIDATES


async def test_holding_stops_once_a_node_has_held_for_its_share_of_the_window() -> None:
    """Clients that stay behind must not slow the whole cluster for ever: past the budget the node
    stops holding (its slow clients then overflow their send buffers and are closed, as before)."""
    channels = [Chan(n) for n in "abc"]
    pacer, probe, clock = pacer_on(lambda: channels, sample=3, max_hold=0.01)
    await behind(pacer, probe, clock)  # and they never answer again: behind for good
    budget = pacing.HOLD_SHARE * pacing.HOLD_WINDOW
    step = budget / 4  # each hold lasts this long on the clock (max_hold ends it)

    async def hold() -> float:
        started = clock()
        held = asyncio.ensure_future(pacer.hold())
        await asyncio.sleep(0)  # it checks and starts waiting (max_hold cannot end it before this)
        if not held.done():
            clock.advance(step)
        await asyncio.wait_for(held, 10)
        return clock() - started

    took = [await hold() for _ in range(7)]
    assert took == pytest.approx([step] * 4 + [0.0] * 3)  # held for the whole budget, then not at all
    clock.advance(pacing.HOLD_WINDOW)  # a window later the budget is back
    assert await hold() == pytest.approx(step)
