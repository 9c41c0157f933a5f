"""One task process delivers at a time: messages then reach the connect nodes in the order of their
ids, which a client that resumes with ``since`` relies on.

With several processes reading one consumer group, a message held by a process that dies (or
stalls) is delivered by another only after ``claim_idle``, after newer messages of the same room:
a client that reconnected meanwhile asks for what follows the newest id it saw, and the late one
is never sent to it.  So the processes share a lease in Redis (``SET NX PX``, renewed every third
of ``leader_ttl``): the holder delivers, the others wait as hot standbys.  A new holder first
takes over every entry its predecessor left pending and delivers those, oldest first, before it
reads anything new.  Redis is the one place the lease can live: the queue is there too, so a
process that cannot reach Redis could not deliver anyway.  Every task process still writes
history (its own consumer group, where order does not matter).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError

from gochat_py.logs import kv

log = logging.getLogger("gochat.task")

# KEYS[1]: the lease; ARGV: this process, ttl in ms.  Takes a free lease or renews our own.
_HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return holder and 1 or 2
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leadership:
    def __init__(self, redis: Redis, key: str, name: str, ttl: float) -> None:
        self.key = key
        self.name = name
        self.ttl = ttl
        self.leading = False
        self.taken_over = asyncio.Event()  # set when this process became the holder
        self._hold = redis.register_script(_HOLD)
        self._release = redis.register_script(_RELEASE)
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> bool:
        """Takes or renews the lease; True while this process holds it."""
        try:
            result = int(await self._hold(keys=[self.key], args=[self.name, int(self.ttl * 1000)]))
        except RedisError as exc:
            result = 0
            if self.leading:
                log.warning("task lease not renewed: redis unavailable", extra=kv(error=repr(exc)))
        was, self.leading = self.leading, result > 0
        if self.leading and not was:
            log.info("this task process delivers now (took the lease)", extra=kv(consumer=self.name))
            self.taken_over.set()
        elif was and not self.leading:
            log.warning("this task process lost the lease; another one delivers", extra=kv(consumer=self.name))
        return self.leading

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="task-lease")

    async def _run(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.ttl / 3)

    async def stop(self) -> None:
        """Gives the lease up at once, so a standby takes over without waiting for it to expire."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.leading:
            self.leading = False
            with contextlib.suppress(RedisError):
                await self._release(keys=[self.key], args=[self.name])
