"""The session store against a real Redis: the one-round-trip lookup a batch of pushes uses."""

from __future__ import annotations

from redis.asyncio import Redis

from gochat_py.logic.sessions import Session, SessionStore
from tests.e2e.harness import Infra


async def test_senders_and_targets_in_one_lookup_survive_a_script_flush(infra: Infra) -> None:
    redis = Redis.from_url(f"redis://{infra.redis_address}/15")
    await redis.flushdb()
    store = SessionStore(redis, ttl=60)
    try:
        alice = await store.login(7, "alice")
        await store.connect(Session(8, "bob"), room_id=3, server_id="node-a")
        await store.connect(Session(8, "bob"), room_id=0, server_id="node-b")
        await redis.script_flush()  # a restarted Redis knows no script: the store loads it again
        sessions, servers = await store.senders_and_targets([alice, "no-such-token"], [8, 9])
        assert sessions == {alice: Session(7, "alice"), "no-such-token": None}
        assert servers == {8: "node-a,node-b", 9: ""}
        assert await redis.ttl(f"sess_{alice}") > 0
        assert await store.senders_and_targets([], []) == ({}, {})
    finally:
        await redis.flushdb()
        await redis.aclose()
