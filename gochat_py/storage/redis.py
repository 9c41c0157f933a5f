"""Redis connection from settings.  One client per process; redis-py pools connections.

A command that cannot reach Redis is tried once more on a fresh connection (that is what a
pooled connection needs after Redis restarted) and then fails at once.  redis-py's own default
(ten retries with backoff, several seconds) would make every request hang while Redis is down;
the callers have their own answer to an outage: logic replies UNAVAILABLE, task backs off.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py.config import RedisSettings, split_host_port


def make_redis(settings: RedisSettings) -> Redis:
    host, port = split_host_port(settings.address)
    return Redis(
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
