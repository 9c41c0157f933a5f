"""Redis connection from settings.  One client per process; redis-py pools connections.

A command that cannot reach Redis is tried once more on a fresh connection (that is what a
pooled connection needs after Redis restarted) and then fails at once.  redis-py's own default
(ten retries with backoff, several seconds) would make every request hang while Redis is down;
the callers have their own answer to an outage: logic replies UNAVAILABLE, task backs off.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py.config import RedisSettings, split_host_port


def make_redis(settings: RedisSettings) -> Redis:
    host, port = split_host_port(settings.address)
    # A bounded pool that makes a burst wait for a free connection (up to the command timeout)
    # instead of failing with "Too many connections": a thousand sockets joining at once are a
    # thousand commands in flight, and Redis answers them faster queued on a few connections.
    pool = BlockingConnectionPool(
        max_connections=settings.max_connections,
        timeout=settings.timeout,
        host=host,
        port=port,
        db=settings.db,
        password=settings.password or None,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        health_check_interval=15,
        # a timeout is not retried: a Redis that hangs costs one socket_timeout, not several
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
