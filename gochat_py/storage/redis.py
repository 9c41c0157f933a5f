"""Redis connection from settings.  One client per process; redis-py pools connections.

A command that cannot reach Redis is tried once more on a fresh connection (that is what a
pooled connection needs after Redis restarted) and then fails at once.  redis-py's own default
(ten retries with backoff, several seconds) would make every request hang while Redis is down;
the callers have their own answer to an outage: logic replies UNAVAILABLE, task backs off.

With ``[redis] tls_ca`` set the connections use TLS (Redis's ``tls-port``), checking Redis's
certificate against the CA and the address's host; ``tls_cert`` and ``tls_key`` add the client
certificate Redis asks for by default (``tls-auth-clients yes``).

With ``[redis] sentinels`` set, a new connection asks the Sentinels where the primary of
``master_name`` is.  After a failover the connections to the old primary fail (it died, or it
answers READONLY as a replica now), each such command fails like any outage, and the next one
connects to the promoted replica: no restart, and no command waits for the failover to end.  With
TLS configured too, the Sentinels are asked over TLS as well (their ``tls-port``).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, SSLConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedSSLConnection
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py.config import RedisSettings, split_host_port
from gochat_py.tls import check_files

SENTINEL_TIMEOUT = 1.0  # seconds for one question to one Sentinel: a dead one costs no more


def _tls_files(settings: RedisSettings) -> dict[str, Any]:
    return {
        "ssl_ca_certs": settings.tls_ca,
        "ssl_certfile": settings.tls_cert or None,
        "ssl_keyfile": settings.tls_key or None,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


def tls_options(settings: RedisSettings) -> dict[str, Any]:
    """The pool's TLS arguments; none without ``tls_ca``.  The files are checked here, once."""
    if not settings.tls_ca:
        return {}
    check_files("redis", settings.tls_ca, settings.tls_cert, settings.tls_key)
    connection = SentinelManagedSSLConnection if settings.sentinels else SSLConnection
    return {"connection_class": connection, **_tls_files(settings)}


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
        **tls_options(settings),
    )
    if settings.sentinels:
        asked = min(settings.timeout, SENTINEL_TIMEOUT)
        sentinel_options: dict[str, Any] = {
            "socket_timeout": asked,
            "socket_connect_timeout": asked,
            "password": settings.sentinel_password or None,
        }
        if settings.tls_ca:
            sentinel_options.update(ssl=True, **_tls_files(settings))
        sentinel = Sentinel(
            [split_host_port(address) for address in settings.sentinels], sentinel_kwargs=sentinel_options
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
