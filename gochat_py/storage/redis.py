"""Redis connection from settings.  One client per process; redis-py pools connections."""

from __future__ import annotations

from redis.asyncio import Redis

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
        retry_on_timeout=False,
    )
