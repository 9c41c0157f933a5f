"""How long a client waits before connecting again: exponential, capped, with jitter.

Without jitter every client of a node that restarts comes back in the same instant, and again in
the same instant after each failure; with "equal jitter" each waits between half and all of its
current step, so they spread out yet none retries at once in a tight loop.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays of 1, 2, 4, ... times ``initial`` (capped at ``maximum``), each drawn from the upper
    half of its step; :meth:`reset` after a connection that worked."""

    def __init__(
        self, initial: float = 0.25, maximum: float = 10.0, factor: float = 2.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < initial <= maximum or factor < 1:
            raise ValueError("need 0 < initial <= maximum and factor >= 1")
        self.initial, self.maximum, self.factor = initial, maximum, factor
        self.attempt = 0
        self._rng = rng or random.Random()

    def step(self) -> float:
        """The cap of the current attempt, before jitter."""
        return min(self.maximum, self.initial * self.factor**self.attempt)

    def next_delay(self) -> float:
        step = self.step()
        if step < self.maximum:  # past the cap the count stops, so the power never overflows
            self.attempt += 1
        return step / 2 + self._rng.uniform(0, step / 2)

    def reset(self) -> None:
        self.attempt = 0
