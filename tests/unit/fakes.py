"""Fakes shared by unit tests of code that reads a clock or must not wait."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any


class Clock:
    """A fake monotonic clock: it moves only when the test (or a fake reading) moves it.  Pass it
    where the code takes a ``clock`` callable, or patch ``time.monotonic`` with :meth:`monotonic`."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def returns_at_once(call: Coroutine[Any, Any, None]) -> bool:
    """True if the call finishes without waiting for anything (it never suspends)."""
    try:
        call.send(None)
    except StopIteration:
        return True
    call.close()
    return False
