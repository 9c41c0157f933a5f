"""Sessions expire after `[logic] session_ttl` seconds unused; every use renews them (sliding)."""

from __future__ import annotations

import asyncio
import uuid

import redis

from tests.e2e.harness import ApiClient, Cluster

TTL = 2
CLUSTER_MODULES = ("logic", "api")
CLUSTER_ENV = {"GOCHAT_LOGIC__SESSION_TTL": str(TTL)}
SESSION_ERROR = {"code": 40000, "data": None, "message": "Session error"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_used_tokens_live_on_and_idle_ones_expire(cluster: Cluster) -> None:
    store = redis.Redis.from_url(f"redis://{cluster.settings.redis.address}/{cluster.db}")
    async with ApiClient(cluster.api_url) as api:
        checker, pusher, idle = [await api.register(unique(name)) for name in ("chk", "psh", "idl")]
        ids = {token: await api.user_id(token) for token in (checker, pusher, idle)}

        # 2.5 TTLs of use: checkAuth renews one token, pushRoom the other; the third is left alone
        for _ in range(10):
            await asyncio.sleep(TTL / 4)
            assert (await api.post("/user/checkAuth", {"authToken": checker}))["code"] == 0
            reply = await api.post("/push/pushRoom", {"authToken": pusher, "msg": "still here", "roomId": 1})
            assert reply == {"code": 0, "data": "", "message": "ok"}

        assert await api.post("/user/checkAuth", {"authToken": idle}) == SESSION_ERROR
        assert not store.exists(f"sess_{idle}", f"sess_map_{ids[idle]}")
        for token in (checker, pusher):
            assert store.exists(f"sess_{token}", f"sess_map_{ids[token]}") == 2
            assert 0 < store.ttl(f"sess_map_{ids[token]}") <= TTL
            assert store.get(f"sess_map_{ids[token]}") == token.encode()

        # the TTL is an idle time: unused now, the tokens go too
        await asyncio.sleep(TTL + 0.5)
        for token in (checker, pusher):
            assert await api.post("/user/checkAuth", {"authToken": token}) == SESSION_ERROR
            assert not store.exists(f"sess_map_{ids[token]}")
    store.close()
