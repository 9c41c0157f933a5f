"""Redis connection from settings.  One client per process; redis-py pools connections.

A command that cannot reach Redis is tried once more on a fresh connection (that is what a
pooled connection needs after Redis restarted) and then fails at once.  redis-py's own default
(ten retries with backoff, several seconds) would make every request hang while Redis is down;
the callers have their own answer to an outage: logic replies UNAVAILABLE, task backs off.

With ``[redis] sentinels`` set, a new connection asks the Sentinels where the primary of
``master_name`` is.  After a failover the connections to the old primary fail (it died, or it
answers READONLY as a replica now), each such command fails like any outage, and the next one
connects to the promoted replica: no restart, and no command waits for the failover to end.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py.config import RedisSettings, split_host_port

SENTINEL_TIMEOUT = 1.0  # seconds for one question to one Sentinel: a dead one costs no more


class SentinelBlockingConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """Connections to whichever server the Sentinels name as the primary, with the blocking
    pool's wait for a free connection (the same burst behaviour as without Sentinels)."""


class SentinelRedis(Redis):
    """The client of a Sentinel-managed primary; closing it closes the Sentinel clients too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        await self.connection_pool.sentinel_manager.aclose()


def make_redis(settings: RedisSettings) -> Redis:
    # A bounded pool that makes a burst wait for a free connection (up to the command timeout)
    # instead of failing with "Too many connections": a thousand sockets joining at once are a
    # thousand commands in flight, and Redis answers them faster queued on a few connections.
    options: dict[str, Any] = dict(
        max_connections=settings.max_connections,
        timeout=settings.timeout,
        db=settings.db,
        password=settings.password or None,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        health_check_interval=15,
        # a timeout is not retried: a Redis that hangs costs one socket_timeout, not several
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    if settings.sentinels:
        asked = min(settings.timeout, SENTINEL_TIMEOUT)
        sentinel = Sentinel(
            [split_host_port(address) for address in settings.sentinels],
            sentinel_kwargs={
                "socket_timeout": asked,
                "socket_connect_timeout": asked,
                "password": settings.sentinel_password or None,
            },
        )
        return sentinel.master_for(
            settings.master_name,
            redis_class=SentinelRedis,
            connection_pool_class=SentinelBlockingConnectionPool,
            **options,
        )
    host, port = split_host_port(settings.address)
    pool = BlockingConnectionPool(host=host, port=port, **options)
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
