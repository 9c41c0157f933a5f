"""Redis connection from settings.  One client per process; redis-py pools connections.

A command that cannot reach Redis is tried once more on a fresh connection (that is what a
pooled connection needs after Redis restarted) and then fails at once.  redis-py's own default
(ten retries with backoff, several seconds) would make every request hang while Redis is down;
the callers have their own answer to an outage: logic replies UNAVAILABLE, task backs off.

With ``[redis] tls_ca`` set the connections use TLS (Redis's ``tls-port``), checking Redis's
certificate against the CA and the address's host; ``tls_cert`` and ``tls_key`` add the client
certificate Redis asks for by default (``tls-auth-clients yes``).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from gochat_py.config import RedisSettings, split_host_port
from gochat_py.tls import check_files


def tls_options(settings: RedisSettings) -> dict[str, Any]:
    """The pool's TLS arguments; none without ``tls_ca``.  The files are checked here, once."""
    if not settings.tls_ca:
        return {}
    check_files("redis", settings.tls_ca, settings.tls_cert, settings.tls_key)
    return {
        "connection_class": SSLConnection,
        "ssl_ca_certs": settings.tls_ca,
        "ssl_certfile": settings.tls_cert or None,
        "ssl_keyfile": settings.tls_key or None,
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
    }


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
        **tls_options(settings),
    )
    return Redis.from_pool(pool)  # the client owns the pool: closing it closes the connections
