"""The v2 client's reconnect delays: exponential, capped, jittered within the upper half of each step."""

from __future__ import annotations

import random

import pytest

from gochat_py.client.backoff import Backoff


def test_delays_double_up_to_the_cap_each_in_the_upper_half_of_its_step() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0, rng=random.Random(7))
    steps = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    for step in steps:
        delay = backoff.next_delay()
        assert step / 2 <= delay <= step


def test_jitter_spreads_clients_that_fail_together() -> None:
    delays = {round(Backoff(initial=1.0, rng=random.Random(seed)).next_delay(), 6) for seed in range(20)}
    assert len(delays) == 20


def test_reset_starts_over_after_a_connection_that_worked() -> None:
    backoff = Backoff(initial=1.0, maximum=60.0, rng=random.Random(1))
    for _ in range(5):
        backoff.next_delay()
    assert backoff.step() == 32.0
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_a_long_outage_never_overflows() -> None:
    backoff = Backoff(initial=0.1, maximum=10.0, rng=random.Random(3))
    for _ in range(5000):
        assert backoff.next_delay() <= 10.0


@pytest.mark.parametrize(("initial", "maximum", "factor"), [(0, 1, 2), (2, 1, 2), (1, 2, 0.5)])
def test_nonsense_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError):
        Backoff(initial, maximum, factor)
