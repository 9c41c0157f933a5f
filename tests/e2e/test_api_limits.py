"""Rate limits and the message length limit of the live api, turned on for loopback with small numbers.

The api believes ``X-Forwarded-For`` from 127.0.0.1 here, so each test speaks from addresses of
its own (documentation ranges) and the buckets of one test never hold up another.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import aiohttp

from tests.e2e.harness import ApiClient, Cluster

CLUSTER_MODULES = ("logic", "api")
CLUSTER_ENV = {
    "GOCHAT_API__RATE_LIMIT_LOOPBACK": "true",
    "GOCHAT_API__TRUSTED_PROXIES": "127.0.0.1",
    "GOCHAT_API__REGISTER_ADDRESS_BURST": "3",
    "GOCHAT_API__REGISTER_ADDRESS_RATE": "0.25",  # a token every 4 s: a busy machine still sees a refusal
    "GOCHAT_API__LOGIN_ADDRESS_BURST": "4",
    "GOCHAT_API__LOGIN_ADDRESS_RATE": "0.01",
    "GOCHAT_API__LOGIN_USER_BURST": "2",
    "GOCHAT_API__LOGIN_USER_RATE": "0.01",
    "GOCHAT_API__PUSH_ADDRESS_BURST": "6",
    "GOCHAT_API__PUSH_ADDRESS_RATE": "0.01",
    "GOCHAT_API__PUSH_USER_BURST": "3",
    "GOCHAT_API__PUSH_USER_RATE": "0.01",
    "GOCHAT_API__MAX_MESSAGE_LENGTH": "10",
}
TOO_MANY = re.compile(r"too many requests, try again in [1-9][0-9]* s")
TOO_MANY_WAIT = re.compile(r"try again in ([0-9]+) s")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


class Client:
    """POSTs as if from ``address`` (through the trusted proxy 127.0.0.1)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, address: str) -> None:
        self.session, self.base_url, self.address = session, base_url, address

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "X-Forwarded-For": self.address}
        async with self.session.post(self.base_url + path, data=json.dumps(body), headers=headers) as response:
            assert response.status == 200
            assert response.headers["Access-Control-Allow-Origin"] == "*"
            envelope = await response.json()
        assert list(envelope) == ["code", "data", "message"], envelope
        return envelope

    async def register(self, name: str) -> str:
        reply = await self.post("/user/register", {"userName": name, "passWord": "pw"})
        assert reply["code"] == 0, reply
        return reply["data"]


def refused(reply: dict[str, Any]) -> bool:
    return reply["code"] == 1 and reply["data"] is None and bool(TOO_MANY.fullmatch(reply["message"]))


async def test_register_is_limited_per_address(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        first, other = (
            Client(session, cluster.api_url, "198.51.100.1"),
            Client(session, cluster.api_url, "198.51.100.2"),
        )
        for _ in range(3):
            await first.register(unique("reg"))
        reply = await first.post("/user/register", {"userName": unique("reg"), "passWord": "pw"})
        # one token every 4 s: the wait it names is at most that, however long the three took
        assert refused(reply), reply
        wait = int(TOO_MANY_WAIT.search(reply["message"]).group(1))
        assert 1 <= wait <= 4, reply
        await other.register(unique("reg"))  # another address has its own bucket
        await asyncio.sleep(wait)  # the wait it named is enough
        await first.register(unique("reg"))


async def test_loopback_itself_is_limited_when_configured(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        replies = [await api.post("/user/register", {"userName": unique("lo"), "passWord": "pw"}) for _ in range(4)]
        assert [reply["code"] for reply in replies[:3]] == [0, 0, 0]
        assert refused(replies[3]), replies[3]


async def test_login_is_limited_per_user_name_and_per_address(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        name = unique("ann")
        await Client(session, cluster.api_url, "198.51.100.10").register(name)
        one, two = Client(session, cluster.api_url, "198.51.100.11"), Client(session, cluster.api_url, "198.51.100.12")
        assert (await one.post("/user/login", {"userName": name, "passWord": "wrong"}))["code"] == 1
        assert (await one.post("/user/login", {"userName": name, "passWord": "pw"}))["code"] == 0
        # the name's bucket is empty now, whichever address asks
        assert refused(await two.post("/user/login", {"userName": name, "passWord": "pw"}))
        other = await two.post("/user/login", {"userName": unique("nobody"), "passWord": "pw"})
        assert other == {"code": 1, "data": None, "message": "no this user or password error!"}

        guesser = Client(session, cluster.api_url, "198.51.100.13")
        for _ in range(4):
            reply = await guesser.post("/user/login", {"userName": unique("nobody"), "passWord": "pw"})
            assert reply["message"] == "no this user or password error!"
        assert refused(await guesser.post("/user/login", {"userName": unique("nobody"), "passWord": "pw"}))


async def test_push_routes_are_limited_per_token_and_per_address(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        registrar = Client(session, cluster.api_url, "198.51.100.20")
        ann, bob, cid = [await registrar.register(unique(n)) for n in ("ann", "bob", "cid")]
        room = {"roomId": 7, "msg": "hi"}

        # per token: 3, shared by pushRoom, count and getRoomInfo, from any address
        one, two = Client(session, cluster.api_url, "198.51.100.21"), Client(session, cluster.api_url, "198.51.100.22")
        assert (await one.post("/push/pushRoom", {**room, "authToken": ann}))["code"] == 0
        assert (await one.post("/push/count", {"roomId": 7, "authToken": ann}))["code"] == 0
        assert (await two.post("/push/pushRoom", {**room, "authToken": ann}))["code"] == 0
        assert refused(await two.post("/push/pushRoom", {**room, "authToken": ann}))
        assert refused(await two.post("/push/getRoomInfo", {"roomId": 7, "authToken": ann}))
        assert (await two.post("/push/pushRoom", {**room, "authToken": bob}))["code"] == 0

        # per address: 6, whatever the tokens
        crowd = Client(session, cluster.api_url, "198.51.100.23")
        registrar = Client(session, cluster.api_url, "198.51.100.24")  # 3 registrations per address
        tokens = [await registrar.register(unique("d")) for _ in range(2)]
        for token in tokens:
            for _ in range(3):
                assert (await crowd.post("/push/pushRoom", {**room, "authToken": token}))["code"] == 0
        assert refused(await crowd.post("/push/pushRoom", {**room, "authToken": cid}))
        assert refused(await crowd.post("/push/pushRoom", {**room, "authToken": "no-such-token"}))
        # refused by its address, cid's token was not spent
        assert (await one.post("/push/pushRoom", {**room, "authToken": cid}))["code"] == 0


async def test_messages_over_the_limit_are_refused(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        client = Client(session, cluster.api_url, "198.51.100.30")
        token = await client.register(unique("eve"))
        user_id = (await client.post("/user/checkAuth", {"authToken": token}))["data"]["userId"]
        assert await client.post("/push/pushRoom", {"authToken": token, "msg": "é" * 10, "roomId": 1}) == {
            "code": 0,
            "data": "",
            "message": "ok",
        }
        too_long = {"code": 1, "data": None, "message": "msg is too long: 11 characters, at most 10 are allowed"}
        assert await client.post("/push/pushRoom", {"authToken": token, "msg": "x" * 11, "roomId": 1}) == too_long
        private = {"authToken": token, "msg": "x" * 11, "toUserId": str(user_id), "roomId": 1}
        assert await client.post("/push/push", private) == too_long
