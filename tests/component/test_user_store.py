"""The user store on each database gochat-py supports (a SQLite file, a real PostgreSQL), with the
schema made by the migrations as ``gochat-py db upgrade`` makes it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from gochat_py.logic.users import DuplicateUserError, UserStore
from gochat_py.storage.schema import upgrade


async def store_on(database_url: str) -> UserStore:
    await upgrade(database_url)
    return UserStore(database_url)


async def test_names_are_unique_and_ids_are_handed_out_once(database_url: str) -> None:
    store = await store_on(database_url)
    try:
        alice = await store.create("alice", "hash-a")
        with pytest.raises(DuplicateUserError):
            await store.create("alice", "hash-other")
        # many registrations at once (several api requests in flight): distinct ids, every name once
        made = await asyncio.gather(*(store.create(f"user{i}", f"hash-{i}") for i in range(20)))
        ids = [alice.id, *(user.id for user in made)]
        assert len(set(ids)) == 21 and all(i > 0 for i in ids)
        racing = await asyncio.gather(*(store.create("bob", "h") for _ in range(5)), return_exceptions=True)
        assert sum(isinstance(r, DuplicateUserError) for r in racing) == 4, racing
        assert (await store.by_name("alice")) == alice
        assert (await store.by_name("Alice")) is None  # names are case-sensitive on both databases
        assert (await store.by_name("nobody")) is None
    finally:
        await store.close()


async def test_names_of_many_users_in_one_query(database_url: str) -> None:
    store = await store_on(database_url)
    try:
        alice = await store.create("alice", "hash-a")
        bob = await store.create("bob", "hash-b")
        assert await store.names_of([bob.id, alice.id, 999]) == {alice.id: "alice", bob.id: "bob"}
        assert await store.names_of([]) == {}
    finally:
        await store.close()


async def test_a_new_password_hash_replaces_the_old_one_and_keeps_the_rest(database_url: str) -> None:
    store = await store_on(database_url)
    try:
        alice = await store.create("älice 名前", "sha1-legacy")  # names beyond ASCII round-trip too
        other = await store.create("carol", "hash-c")
        await store.set_password(alice.id, "$argon2id$new")
        assert await store.by_name("älice 名前") == type(alice)(alice.id, "älice 名前", "$argon2id$new")
        assert await store.by_name("carol") == other
    finally:
        await store.close()


async def test_the_creation_time_is_kept_in_utc(database_url: str) -> None:
    store = await store_on(database_url)
    try:
        before = datetime.now(UTC).replace(tzinfo=None)
        user = await store.create("dave", "h")
        async with store.engine.connect() as conn:
            from sqlalchemy import text

            stored = (
                await conn.execute(text('SELECT create_time FROM "user" WHERE id = :id'), {"id": user.id})
            ).scalar()
        if isinstance(stored, str):  # SQLite hands back text
            stored = datetime.fromisoformat(stored)
        assert before <= stored <= datetime.now(UTC).replace(tzinfo=None)
    finally:
        await store.close()
