"""The user store on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

from gochat_py.logic.users import UserStore


async def test_names_of_many_users_in_one_query(tmp_path: Path) -> None:
    store = UserStore(f"sqlite+aiosqlite:///{tmp_path / 'users.db'}")
    await store.create_schema()
    try:
        alice = await store.create("alice", "hash-a")
        bob = await store.create("bob", "hash-b")
        assert await store.names_of([bob.id, alice.id, 999]) == {alice.id: "alice", bob.id: "bob"}
        assert await store.names_of([]) == {}
    finally:
        await store.close()
