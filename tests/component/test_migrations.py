"""Schema migrations on each database gochat-py supports (a SQLite file, a real PostgreSQL): what
they create, adopting a database made before migrations, the modules' start-up check, concurrent
upgrades, ``gochat-py db``, and the cluster's database identity in Redis."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from gochat_py.config import load_settings
from gochat_py.launcher import upgrade_local_database
from gochat_py.logic.users import Base, UserStore
from gochat_py.storage import archive
from gochat_py.storage.archive import Archive
from gochat_py.storage.database_identity import (
    IDENTITY_KEY,
    ForeignDatabaseError,
    claim_cluster_database,
    keep_cluster_database,
)
from gochat_py.storage.history import Conversation
from gochat_py.storage.schema import SchemaError, head_revision, read_state, require_current_schema, upgrade
from gochat_py.storage.sql import make_engine
from tests.e2e.harness import Infra, eventually
from tests.postgres import PostgresServer
from tests.pre_migration import PRE_MIGRATION_SQLITE, make_pre_migration_sqlite


def sqlite_path(database_url: str) -> Path:
    return Path(make_url(database_url).database or "")


def sqlite_objects(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall()
    return dict(rows)


def gochat_db(command: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
    env["GOCHAT_LOGIC__DATABASE_URL"] = database_url
    return subprocess.run(
        [sys.executable, "-m", "gochat_py", "db", command], env=env, capture_output=True, text=True, timeout=120
    )


async def test_a_new_database_gets_the_schema_the_release_before_migrations_made(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.sqlite3'}"
    before, after = await upgrade(url)
    assert before.current is None and after is not None and after.current == head_revision()
    objects = sqlite_objects(sqlite_path(url))
    assert {name: objects[name] for name in PRE_MIGRATION_SQLITE} == PRE_MIGRATION_SQLITE
    assert set(objects) - set(PRE_MIGRATION_SQLITE) == {"alembic_version", "database_identity"}


async def test_the_migrations_make_what_the_models_describe_on_postgresql(postgres: PostgresServer) -> None:
    """The models (users.py, archive.py) and the migrations must not drift apart: both made on a
    real PostgreSQL, every column, key, unique constraint and index compared."""
    migrated, modelled = postgres.new_database(), postgres.new_database()
    await upgrade(migrated)
    engine = make_engine(modelled)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
        await conn.run_sync(archive.metadata.create_all)
    await engine.dispose()

    def describe(connection) -> dict[str, object]:  # type: ignore[no-untyped-def]
        inspector = inspect(connection)
        return {
            table: (
                [
                    (c["name"], str(c["type"]), c["nullable"], bool(c.get("autoincrement")))
                    for c in inspector.get_columns(table)
                ],
                inspector.get_pk_constraint(table)["constrained_columns"],
                sorted((u["name"], tuple(u["column_names"])) for u in inspector.get_unique_constraints(table)),
                sorted((i["name"], tuple(i["column_names"]), i["unique"]) for i in inspector.get_indexes(table)),
            )
            for table in ("user", "message")
        }

    shapes = []
    for url in (migrated, modelled):
        engine = make_engine(url)
        async with engine.connect() as conn:
            shapes.append(await conn.run_sync(describe))
        await engine.dispose()
    assert shapes[0] == shapes[1]
    assert shapes[0]["user"][2] == [("user_user_name_key", ("user_name",))]  # type: ignore[index]


@pytest.mark.parametrize("with_messages", [True, False], ids=["with-history", "users-only"])
async def test_a_database_made_before_migrations_is_adopted_with_every_row(tmp_path: Path, with_messages: bool) -> None:
    path = tmp_path / "gochat.sqlite3"
    make_pre_migration_sqlite(path, with_messages)
    url = f"sqlite+aiosqlite:///{path}"
    store = UserStore(url)
    try:
        with pytest.raises(SchemaError, match=r"before schema migrations.*gochat-py db upgrade.*every row is kept"):
            await require_current_schema(store.engine, url, "logic")
        assert "alembic_version" not in sqlite_objects(path)  # the check changed nothing

        result = gochat_db("upgrade", url)
        assert result.returncode == 0, result.stderr
        assert f"upgraded: revision none -> {head_revision()}" in result.stdout

        await require_current_schema(store.engine, url, "logic")  # logic would start now
        alice, bob = await store.by_name("alice"), await store.by_name("bob")
        assert alice is not None and (alice.id, alice.password) == (1, "$argon2id$a")
        assert bob is not None and (bob.id, bob.password) == (2, "0123abcd")
        carol = await store.create("carol", "h")
        assert carol.id == 3  # ids go on after the old ones
        kept = await Archive(store.engine).newest(Conversation.room(1), None, None, 10)
        assert kept == ([("100-0", b'{"msg":"one"}')] if with_messages else [])
        objects = sqlite_objects(path)
        assert objects["user"] == PRE_MIGRATION_SQLITE["user"]
        assert {name: objects[name] for name in PRE_MIGRATION_SQLITE} == PRE_MIGRATION_SQLITE
    finally:
        await store.close()


async def test_a_postgresql_database_made_by_create_all_is_adopted_with_every_row(postgres: PostgresServer) -> None:
    """Releases before migrations made any database's tables with create_all (the models)."""
    url = postgres.new_database()
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            await conn.execute(
                text("""INSERT INTO "user" (user_name, password, create_time) VALUES ('ann', 'h', now())""")
            )
        with pytest.raises(SchemaError, match="before schema migrations"):
            await require_current_schema(engine, url, "logic")
        before, after = await upgrade(url)
        assert before.current is None and after is not None and after.up_to_date
        await require_current_schema(engine, url, "logic")
        store = UserStore(url)
        try:
            ann = await store.by_name("ann")
            assert ann is not None and ann.id == 1
            assert (await store.create("ben", "h")).id == 2  # the sequence goes on
            assert await Archive(store.engine).is_empty()  # the table history needs was added
        finally:
            await store.close()
    finally:
        await engine.dispose()


async def test_the_start_up_check_creates_only_a_new_sqlite_database(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        if database_url.startswith("sqlite"):
            await require_current_schema(engine, database_url, "logic")  # a new dev machine: one command
            assert (await read_state(engine)).up_to_date
        else:
            with pytest.raises(SchemaError, match=r"has no gochat schema; run `gochat-py db upgrade`"):
                await require_current_schema(engine, database_url, "logic")
            assert (await read_state(engine)).tables == frozenset()  # refused, and touched nothing
    finally:
        await engine.dispose()


async def test_an_older_or_newer_schema_refuses_start_up(database_url: str) -> None:
    await upgrade(database_url)
    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0001'"))
        with pytest.raises(SchemaError, match=rf"revision 0001, this release needs {head_revision()}.*db upgrade"):
            await require_current_schema(engine, database_url, "task")
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
        with pytest.raises(SchemaError, match=r"f00dfeed, which this release does not know.*newer gochat-py"):
            await require_current_schema(engine, database_url, "logic")
        before, after = await upgrade(database_url)  # nor does an upgrade touch a newer schema
        assert after is None and before.current == "f00dfeed"
    finally:
        await engine.dispose()


async def test_upgrades_started_together_run_once(database_url: str) -> None:
    results = await asyncio.gather(*(upgrade(database_url) for _ in range(4)))
    assert sum(after is not None for _, after in results) == 1, results
    engine = make_engine(database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM database_identity"))).scalar() == 1
        assert (await read_state(engine)).up_to_date
    finally:
        await engine.dispose()


def test_db_current_and_upgrade_commands(postgres: PostgresServer) -> None:
    """On PostgreSQL, where operators run them; the SQLite adoption test above runs `db upgrade` too."""
    database_url = postgres.new_database()
    shown = gochat_db("current", database_url)
    assert shown.returncode == 1 and "revision: none" in shown.stdout and "gochat-py db upgrade" in shown.stdout
    assert gochat_db("upgrade", database_url).returncode == 0
    again = gochat_db("upgrade", database_url)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    shown = gochat_db("current", database_url)
    assert shown.returncode == 0 and f"revision: {head_revision()}" in shown.stdout and "up to date" in shown.stdout


def test_db_commands_name_an_unreachable_database_without_its_password() -> None:
    result = gochat_db("upgrade", "postgresql+asyncpg://gochat:s3cret@127.0.0.1:1/gochat")
    assert result.returncode == 1
    assert "cannot use the database postgresql+asyncpg://gochat:***@127.0.0.1:1/gochat" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr


async def test_the_first_database_is_the_clusters_and_another_is_refused(
    infra: Infra, postgres: PostgresServer, tmp_path: Path
) -> None:
    first, other = postgres.new_database(), f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}"
    for url in (first, other):
        await upgrade(url)
    redis = Redis.from_url(f"redis://{infra.redis_address}/14")
    engines = [make_engine(first), make_engine(other)]
    try:
        await redis.flushdb()
        identity = await claim_cluster_database(redis, engines[0], first, "logic")
        assert (await redis.get(IDENTITY_KEY)).decode() == identity
        assert await claim_cluster_database(redis, engines[0], first, "task") == identity  # same database: fine
        with pytest.raises(ForeignDatabaseError, match=rf"not the database this cluster uses \(identity {identity}"):
            await claim_cluster_database(redis, engines[1], other, "logic")
        assert (await redis.get(IDENTITY_KEY)).decode() == identity  # not overwritten
    finally:
        await redis.flushdb()
        await redis.aclose()
        for engine in engines:
            await engine.dispose()


async def test_a_running_process_records_its_database_again_after_redis_lost_it(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'gochat.sqlite3'}"
    await upgrade(url)
    redis = Redis.from_url(f"redis://{infra.redis_address}/14")
    engine = make_engine(url)
    keeper: asyncio.Task[None] | None = None
    try:
        await redis.flushdb()
        identity = await claim_cluster_database(redis, engine, url, "logic")
        keeper = asyncio.create_task(keep_cluster_database(redis, identity, "logic", interval=0.05))
        await redis.flushdb()  # Redis restarted without its data
        await eventually(redis_holds(redis, identity), 5, "the identity recorded again")
        await redis.set(IDENTITY_KEY, "another-database")  # a process on another database got in first
        await eventually(lambda: "the cluster uses another database than this process" in caplog.text, 5, "error")
        assert (await redis.get(IDENTITY_KEY)) == b"another-database"  # said, not overwritten
    finally:
        if keeper is not None:
            keeper.cancel()
        await redis.flushdb()
        await redis.aclose()
        await engine.dispose()


def redis_holds(redis: Redis, identity: str):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await redis.get(IDENTITY_KEY)) == identity.encode()

    return check


def test_up_upgrades_a_local_sqlite_database_and_leaves_a_shared_one_to_db_upgrade(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    """`gochat-py up` (./run.sh local): a state folder from the release before migrations keeps
    working with one command; a PostgreSQL database is upgraded by an operator only."""
    make_pre_migration_sqlite(tmp_path / "gochat.sqlite3")
    local = load_settings(env="dev", environ={"GOCHAT_STATE_DIR": str(tmp_path)})
    done = upgrade_local_database(local)
    assert done == f"database {tmp_path / 'gochat.sqlite3'}: schema revision none -> {head_revision()}"
    assert upgrade_local_database(local) is None  # nothing left to do
    with sqlite3.connect(tmp_path / "gochat.sqlite3") as conn:
        assert conn.execute("SELECT user_name FROM user ORDER BY id").fetchall() == [("alice",), ("bob",)]

    shared_url = postgres.new_database()
    shared = load_settings(
        env="dev", environ={"GOCHAT_STATE_DIR": str(tmp_path), "GOCHAT_LOGIC__DATABASE_URL": shared_url}
    )
    assert upgrade_local_database(shared) is None
    assert (
        postgres.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", shared_url.rsplit("/", 1)[1]) == "0"
    )
