"""One user database per cluster: the database's identity, recorded in the cluster's Redis.

User ids, unique names and kept messages are only right when every logic (and task's history
writer) of a cluster uses the same database.  Two hosts on two databases would hand out user id 1
twice (a private message to one reaching the other, one login ending the other's session), let a
taken name be registered again, and fail every login the api sends to the host that does not
know the user.  So the first process to start records its database's identity (a random id the
migration stored in ``database_identity``) in Redis, and every later one compares: a process whose
database holds another identity refuses to start and overwrites nothing.
"""

from __future__ import annotations

import asyncio
import logging

from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gochat_py.logs import kv
from gochat_py.storage.schema import DatabaseRefused, require_current_schema, safe_url

log = logging.getLogger("gochat.database")
IDENTITY_KEY = "gochat_cluster_database"
_RETRY_DELAY = 1.0


class ForeignDatabaseError(DatabaseRefused):
    """This process's database is not the one the cluster uses."""


async def database_identity(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        identity = (await conn.execute(text("SELECT identity FROM database_identity"))).scalar_one_or_none()
    if identity is None:
        raise DatabaseRefused("the database has no row in database_identity; restore it from a backup")
    return str(identity)


async def claim_cluster_database(redis: Redis, engine: AsyncEngine, database_url: str, module: str) -> str:
    """Records this database as the cluster's, or checks it is the one recorded; returns the identity.

    Waits for Redis when it does not answer yet: a module started before its Redis must not run
    on an unchecked database."""
    identity = await database_identity(engine)
    waited = False
    while True:
        try:
            await redis.set(IDENTITY_KEY, identity, nx=True)
            recorded = await redis.get(IDENTITY_KEY)
            break
        except RedisError as exc:
            if not waited:
                log.warning("waiting for redis to check the cluster's database", extra=kv(error=repr(exc)))
                waited = True
            await asyncio.sleep(_RETRY_DELAY)
    recorded_identity = recorded.decode() if isinstance(recorded, bytes) else str(recorded)
    if recorded_identity != identity:
        raise ForeignDatabaseError(
            f"{module}'s database {safe_url(database_url)} (identity {identity}) is not the database this cluster"
            f" uses (identity {recorded_identity}, recorded in Redis key {IDENTITY_KEY} by the first logic or task"
            " to start): every logic and task of a cluster must use one database, or users, ids and names"
            " split between them. Point [logic] database_url (GOCHAT_LOGIC__DATABASE_URL) at the cluster's"
            f" database; only if the cluster is to move to this database for good, delete the key {IDENTITY_KEY}"
            " once every process on the old one has stopped"
        )
    log.info("cluster database", extra=kv(module=module, identity=identity))
    return identity


async def keep_cluster_database(redis: Redis, identity: str, module: str, interval: float = 10.0) -> None:
    """Runs until cancelled: records the identity again once Redis lost it (restarted without its
    data), so a process started later on another database is still refused; logs an error while
    Redis holds another identity (a process on another database started in that gap)."""
    warned = False
    while True:
        await asyncio.sleep(interval)
        try:
            if await redis.set(IDENTITY_KEY, identity, nx=True):
                log.warning("recorded the cluster's database again", extra=kv(module=module, identity=identity))
            recorded = await redis.get(IDENTITY_KEY)
        except RedisError:
            continue  # Redis away: the next round records it
        other = recorded.decode() if isinstance(recorded, bytes) else recorded
        if other is not None and other != identity:
            if not warned:
                log.error(
                    "the cluster uses another database than this process",
                    extra=kv(module=module, identity=identity, cluster_identity=other, key=IDENTITY_KEY),
                )
            warned = True
        else:
            warned = False


async def open_cluster_database(redis: Redis, engine: AsyncEngine, database_url: str, module: str) -> str:
    """What a module that uses the database checks before it starts: the schema is the one this
    release expects (storage.schema) and the database is the cluster's.  Returns its identity."""
    await require_current_schema(engine, database_url, module)
    return await claim_cluster_database(redis, engine, database_url, module)
