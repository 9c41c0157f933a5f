"""Remembers recent message ids so a redelivered message reaches each socket once.

Task delivers at least once: an entry a node took but task could not acknowledge (task killed,
another node slow) comes again.  Ids are queue entry ids, so a bounded FIFO of the latest ones
is enough: a repeat arrives within seconds, long before the window turns over.
"""

from __future__ import annotations

from collections import OrderedDict


class RecentIds:
    __slots__ = ("_capacity", "_seen")

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._seen: OrderedDict[str, None] = OrderedDict()

    def first_time(self, message_id: str) -> bool:
        """True the first time an id is seen (and records it); always True for an empty id."""
        if not message_id or self._capacity == 0:
            return True
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        if len(self._seen) > self._capacity:
            self._seen.popitem(last=False)
        return True
