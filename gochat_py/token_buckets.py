"""Token buckets by key, sans-I/O (the caller passes the clock): the rate limits of the HTTP api
and of protocol-v2 sockets.

A bucket holds up to ``burst`` tokens and gains ``rate`` tokens per second; a request takes one,
and a request that finds less than one token is refused with the seconds until one is there.
Buckets live in memory, per process, in last-use order: a bucket that has filled up again is the
same as no bucket, so the oldest full ones are dropped as requests come, and at most ``max_keys``
are kept (the least recently used goes first), however many clients there are.
"""

from __future__ import annotations

from collections import OrderedDict

MAX_KEYS = 100_000


class TokenBuckets:
    """One rate for many keys; a rate of 0 lets everything through."""

    def __init__(self, rate: float, burst: int, max_keys: int = MAX_KEYS) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def _level(self, tokens: float, at: float, now: float) -> float:
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def take(self, key: str, now: float) -> float:
        """Takes a token for ``key``: 0.0 if the request may go ahead, else the seconds to wait."""
        if self.rate <= 0:
            return 0.0
        while self._buckets:  # the least recently used first: drop those that are full again
            oldest, (tokens, at) = next(iter(self._buckets.items()))
            if self._level(tokens, at, now) < self.burst:
                break
            del self._buckets[oldest]
        state = self._buckets.pop(key, None)
        level = self.burst if state is None else self._level(*state, now)
        wait = 0.0
        if level >= 1.0:
            level -= 1.0
        else:
            wait = (1.0 - level) / self.rate
        self._buckets[key] = (level, now)
        if len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
        return wait
