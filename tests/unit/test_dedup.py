"""RecentIds: a bounded FIFO window of message ids a connect node has already delivered."""

from __future__ import annotations

from gochat_py.connect.dedup import RecentIds


def test_first_time_then_repeat() -> None:
    seen = RecentIds(10)
    assert seen.first_time("1-0") is True
    assert seen.first_time("1-0") is False
    assert seen.first_time("1-0") is False
    assert seen.first_time("2-0") is True


def test_empty_id_is_always_new() -> None:
    seen = RecentIds(10)
    assert seen.first_time("") is True
    assert seen.first_time("") is True


def test_zero_capacity_remembers_nothing() -> None:
    seen = RecentIds(0)
    assert seen.first_time("a") is True
    assert seen.first_time("a") is True


def test_window_is_bounded_and_forgets_the_oldest() -> None:
    seen = RecentIds(3)
    for ident in ("a", "b", "c", "d"):
        assert seen.first_time(ident) is True
    assert seen.first_time("b") is False
    assert seen.first_time("c") is False
    assert seen.first_time("d") is False
    assert seen.first_time("a") is True  # evicted by "d", so it counts as new again


def test_a_repeat_does_not_refresh_an_id() -> None:
    seen = RecentIds(2)
    seen.first_time("a")
    seen.first_time("b")
    assert seen.first_time("a") is False
    seen.first_time("c")  # first in, first out: "a" goes although it was just seen
    assert seen.first_time("a") is True


def test_capacity_one() -> None:
    seen = RecentIds(1)
    assert seen.first_time("x") is True
    assert seen.first_time("x") is False
    assert seen.first_time("y") is True
    assert seen.first_time("x") is True


def test_large_window_keeps_everything_inside_it() -> None:
    seen = RecentIds(1000)
    ids = [f"{n}-0" for n in range(1000)]
    assert all(seen.first_time(ident) for ident in ids)
    assert not any(seen.first_time(ident) for ident in ids)
