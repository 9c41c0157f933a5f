"""The session store's Lua scripts against a real Redis: sessions, membership, disconnects, dead nodes.

Every multi-key change is one script (gochat_py/logic/sessions.py); these tests read the keys the
README names, so a script that forgets one of them fails here, not only somewhere end to end.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gochat_py.logic.sessions import NODES_KEY, Session, SessionStore
from tests.e2e.harness import Infra

TTL = 60
ALICE, BOB, CAROL = Session(7, "alice"), Session(8, "bob"), Session(9, "carol")


@pytest.fixture
async def store(infra: Infra) -> AsyncIterator[SessionStore]:
    redis = Redis.from_url(f"redis://{infra.redis_address}/15")
    await redis.flushdb()
    yield SessionStore(redis, ttl=TTL)
    await redis.flushdb()
    await redis.aclose()


async def text(redis: Redis, key: str) -> str | None:
    value = await redis.get(key)
    return None if value is None else value.decode()


async def hash_of(redis: Redis, key: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}


# --- sessions -----------------------------------------------------------------------------------


async def test_senders_and_targets_in_one_lookup_survive_a_script_flush(store: SessionStore) -> None:
    redis = store.redis
    alice = await store.login(7, "alice")
    await store.connect(BOB, room_id=3, server_id="node-a")
    await store.connect(BOB, room_id=0, server_id="node-b")
    await redis.script_flush()  # a restarted Redis knows no script: the store loads it again
    sessions, servers = await store.senders_and_targets([alice, "no-such-token"], [8, 9])
    assert sessions == {alice: ALICE, "no-such-token": None}
    assert servers == {8: "node-a,node-b", 9: ""}
    assert await redis.ttl(f"sess_{alice}") > 0
    assert await store.senders_and_targets([], []) == ({}, {})


async def test_a_login_ends_the_users_previous_session(store: SessionStore) -> None:
    redis = store.redis
    first = await store.login(7, "alice")
    assert await hash_of(redis, f"sess_{first}") == {"userId": "7", "userName": "alice"}
    assert await text(redis, "sess_map_7") == first
    second = await store.login(7, "alice")
    assert second != first
    assert await store.check(first) is None
    assert not await redis.exists(f"sess_{first}")
    assert await store.check(second) == ALICE
    assert await text(redis, "sess_map_7") == second
    assert 0 < await redis.ttl(f"sess_{second}") <= TTL
    assert 0 < await redis.ttl("sess_map_7") <= TTL


async def test_a_check_renews_the_session_and_the_users_token_map(store: SessionStore) -> None:
    redis = store.redis
    token = await store.login(7, "alice")
    await redis.expire(f"sess_{token}", 5)
    await redis.expire("sess_map_7", 5)
    assert await store.check(token) == ALICE
    assert await redis.ttl(f"sess_{token}") > 5
    assert await redis.ttl("sess_map_7") > 5
    assert await store.check("") is None
    assert await store.check("unknown") is None
    assert not await redis.exists("sess_unknown")  # a miss creates nothing


async def test_a_half_written_session_is_no_session(store: SessionStore) -> None:
    await store.redis.hset("sess_broken", "userId", "7")  # no userName
    assert await store.check("broken") is None


async def test_logout_removes_the_session_the_token_map_and_the_users_node(store: SessionStore) -> None:
    redis = store.redis
    token = await store.login(7, "alice")
    await store.connect(ALICE, room_id=1, server_id="node-a")
    assert await store.logout(token) == ALICE
    assert not await redis.exists(f"sess_{token}", "sess_map_7", "gochat_7")
    assert await store.logout(token) is None


# --- joins and leaves ---------------------------------------------------------------------------


async def test_a_join_records_the_user_in_the_room_on_the_node(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(ALICE, room_id=5, server_id="node-a")
    assert await store.members(5) == {"7": "alice"}
    assert await store.online_count(5) == 1
    assert await hash_of(redis, "gochat_room_refs_5") == {"7": "1"}
    assert await hash_of(redis, "gochat_node_node-a") == {"5:7": "1"}
    assert await hash_of(redis, "gochat_user_nodes_7") == {"node-a": "1"}
    assert await text(redis, "gochat_7") == "node-a"
    assert await store.nodes_with_members() == {"node-a"}
    for key in ("gochat_room_5", "gochat_room_refs_5", "gochat_node_node-a", "gochat_user_nodes_7", NODES_KEY):
        assert await redis.ttl(key) == -1, key  # membership lives as long as the sockets, not a TTL


async def test_a_checked_join_checks_renews_records_and_reads_the_members_in_one_script(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(BOB, room_id=5, server_id="node-a")
    token = await store.login(7, "alice")
    await redis.expire(f"sess_{token}", 5)
    await redis.expire("sess_map_7", 5)
    joined = await store.connect_checked(token, ALICE, room_id=5, server_id="node-b", members=True)
    assert joined is not None and joined.entered and joined.room_size == 2
    assert joined.members == {"7": "alice", "8": "bob"}  # read with the join: the newcomer is in it
    assert await redis.ttl(f"sess_{token}") > 5 and await redis.ttl("sess_map_7") > 5
    assert await hash_of(redis, "gochat_node_node-b") == {"5:7": "1"}
    again = await store.connect_checked(token, ALICE, room_id=5, server_id="node-b")
    assert again is not None and not again.entered and again.members is None  # not asked for


async def test_a_checked_join_of_a_dead_or_foreign_token_records_nothing(store: SessionStore) -> None:
    redis = store.redis
    alice = await store.login(7, "alice")
    assert store.known(alice) is None  # known from checks, not logins
    assert await store.check(alice) == ALICE
    assert store.known(alice) == ALICE
    assert await store.connect_checked("no-such-token", ALICE, room_id=5, server_id="node-a") is None
    assert await store.connect_checked(alice, BOB, room_id=5, server_id="node-a") is None  # alice's, not bob's
    assert store.known(alice) is None  # a failed join forgets what was known of the token
    await store.logout(alice)
    assert await store.connect_checked(alice, ALICE, room_id=5, server_id="node-a", members=True) is None
    for key in ("gochat_room_5", "gochat_room_refs_5", "gochat_node_node-a", "gochat_user_nodes_7", NODES_KEY):
        assert not await redis.exists(key), key
    assert not await redis.exists("sess_no-such-token")


async def test_a_rooms_members_up_to_a_size_are_read_only_if_it_is_no_larger(store: SessionStore) -> None:
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(BOB, room_id=5, server_id="node-a")
    assert await store.members_up_to(5, 2) == {"7": "alice", "8": "bob"}
    assert await store.members_up_to(5, 1) is None
    assert await store.members_up_to(6, 1) == {}


async def test_two_sockets_in_a_room_one_closes_the_user_stays_a_member(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(BOB, room_id=5, server_id="node-a")
    assert await store.online_count(5) == 2  # users, not sockets
    assert await hash_of(redis, "gochat_room_refs_5") == {"7": "2", "8": "1"}

    assert await store.disconnect(7, 5, "node-a") == 1  # one socket left: still a member
    assert await store.members(5) == {"7": "alice", "8": "bob"}
    assert await store.online_count(5) == 2
    assert await text(redis, "gochat_7") == "node-a"

    assert await store.disconnect(7, 5, "node-a") == 0  # the last one: the user left the room
    assert await store.members(5) == {"8": "bob"}
    assert await store.online_count(5) == 1
    assert await hash_of(redis, "gochat_room_refs_5") == {"8": "1"}
    assert await hash_of(redis, "gochat_node_node-a") == {"5:8": "1"}
    assert not await redis.exists("gochat_user_nodes_7", "gochat_7")


async def test_a_repeated_or_unknown_disconnect_changes_nothing(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(BOB, room_id=5, server_id="node-a")
    assert await store.disconnect(7, 5, "node-a") == 0
    before = {key: await hash_of(redis, key) for key in ("gochat_room_5", "gochat_room_refs_5", "gochat_node_node-a")}
    assert await store.disconnect(7, 5, "node-a") == -1  # late repeat
    assert await store.disconnect(8, 5, "node-b") == -1  # bob has no socket on node-b
    assert await store.disconnect(9, 6, "node-a") == -1  # nobody
    after = {key: await hash_of(redis, key) for key in before}
    assert after == before
    assert await store.online_count(5) == 1


async def test_the_last_member_leaving_removes_the_count(store: SessionStore) -> None:
    await store.connect(ALICE, room_id=5, server_id="node-a")
    assert await store.disconnect(7, 5, "node-a") == 0
    assert not await store.redis.exists("gochat_room_5", "gochat_room_online_count_5", "gochat_room_refs_5")
    assert await store.online_count(5) == 0


async def test_the_users_node_follows_the_sockets_left(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(ALICE, room_id=5, server_id="node-b")  # gochat_<uid> names the latest node
    assert await text(redis, "gochat_7") == "node-b"
    assert await store.disconnect(7, 5, "node-b") == 1
    assert await text(redis, "gochat_7") == "node-a"  # the node that still holds a socket
    assert (await store.senders_and_targets([], [7]))[1] == {7: "node-a"}
    # leaving the other node keeps gochat_<uid> where it is
    await store.connect(ALICE, room_id=5, server_id="node-b")
    assert await store.disconnect(7, 5, "node-a") == 1
    assert await text(redis, "gochat_7") == "node-b"


async def test_no_room_is_a_private_only_socket(store: SessionStore) -> None:
    redis = store.redis
    await store.connect(ALICE, room_id=0, server_id="node-a")
    await store.connect(ALICE, room_id=-3, server_id="node-a")  # below 1: no room either
    assert not await redis.exists("gochat_room_0", "gochat_room_online_count_0", "gochat_room_refs_0")
    assert not await redis.exists("gochat_room_-3")
    assert await hash_of(redis, "gochat_node_node-a") == {"0:7": "2"}
    assert (await store.senders_and_targets([], [7]))[1] == {7: "node-a"}  # private messages reach it
    assert await store.disconnect(7, -3, "node-a") == 0
    assert await store.disconnect(7, 0, "node-a") == 0
    assert not await redis.exists("gochat_node_node-a", "gochat_user_nodes_7", "gochat_7")
    assert await store.disconnect(7, 0, "node-a") == -1


# --- dead nodes ---------------------------------------------------------------------------------


async def test_purging_a_dead_node_forgets_its_sockets_and_only_those(store: SessionStore) -> None:
    redis = store.redis
    # node-a dies holding: alice twice in room 5, bob in room 5 and with a private-only socket,
    # alice in room 6 (where she also has a socket on node-b), carol in room 7 (node-b too)
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(BOB, room_id=5, server_id="node-a")
    await store.connect(BOB, room_id=0, server_id="node-a")
    await store.connect(ALICE, room_id=6, server_id="node-a")
    await store.connect(ALICE, room_id=6, server_id="node-b")
    await store.connect(CAROL, room_id=7, server_id="node-b")
    assert await store.nodes_with_members() == {"node-a", "node-b"}

    changed = await store.purge_node("node-a")

    # alice and bob left room 5; room 6 keeps alice (node-b), room 7 never had anyone on node-a
    assert changed == {(5, 7), (5, 8)}
    assert not await redis.exists("gochat_room_5", "gochat_room_online_count_5", "gochat_room_refs_5")
    assert await store.members(6) == {"7": "alice"} and await store.online_count(6) == 1
    assert await hash_of(redis, "gochat_room_refs_6") == {"7": "1"}
    assert await store.members(7) == {"9": "carol"}
    assert not await redis.exists("gochat_node_node-a")
    assert await store.nodes_with_members() == {"node-b"}
    assert await hash_of(redis, "gochat_user_nodes_7") == {"node-b": "1"}
    assert await text(redis, "gochat_7") == "node-b"
    assert not await redis.exists("gochat_user_nodes_8", "gochat_8")  # bob had sockets only there
    assert (await store.senders_and_targets([], [7, 8, 9]))[1] == {7: "node-b", 8: "", 9: "node-b"}
    # a second purge (another logic process's reaper) finds nothing
    assert await store.purge_node("node-a") == set()
    assert await store.members(6) == {"7": "alice"}


async def test_a_late_disconnect_from_a_purged_node_changes_nothing(store: SessionStore) -> None:
    await store.connect(ALICE, room_id=5, server_id="node-a")
    await store.connect(ALICE, room_id=5, server_id="node-b")
    assert await store.purge_node("node-a") == set()
    assert await store.disconnect(7, 5, "node-a") == -1
    assert await store.members(5) == {"7": "alice"}
    assert await hash_of(store.redis, "gochat_room_refs_5") == {"7": "1"}
