"""README promises, end to end: membership with several sockets, joins renewing sessions, imported
SHA-1 passwords, the request body limit, and frames too large for TCP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
import uuid
from datetime import UTC, datetime

import pytest
import redis
from argon2 import PasswordHasher

from gochat_py.client.tcp import TcpClient
from gochat_py.protocol.tcp_frame import MAX_FRAME_SIZE
from tests.e2e.harness import ApiClient, Cluster, TcpReader, WsClient, eventually, op_is

CLUSTER_ENV = {
    # every member-list request is its own list (none is merged with a later one), so a list that
    # should not have gone out at all shows as a frame of its own
    "GOCHAT_LOGIC__MEMBER_LIST_DELAY": "0",
    # room messages long enough to make a frame over the TCP limit
    "GOCHAT_API__MAX_MESSAGE_LENGTH": "40000",
}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def db(cluster: Cluster) -> redis.Redis:
    return redis.Redis.from_url(f"redis://{cluster.settings.redis.address}/{cluster.db}")


def member_lists(ws: WsClient, start: int) -> list[dict]:
    bodies = [json.loads(frame) for frame in ws.seen[start:] if frame]
    return [body for body in bodies if body.get("op") == 5]


class Socket:
    """One socket of a user in a room: a websocket, or a TCP connection."""

    def __init__(self, kind: str, cluster: Cluster) -> None:
        self.kind, self.cluster = kind, cluster
        self.ws: WsClient | None = None
        self.tcp: TcpClient | None = None
        self.reader: TcpReader | None = None

    async def join(self, token: str, room: int) -> Socket:
        if self.kind == "websocket":
            self.ws = await WsClient(self.cluster.ws_url).join(token, room)
            await self.ws.next_frame(op_is(5))
        else:
            self.tcp = await TcpClient.connect(f"127.0.0.1:{self.cluster.tcp_ports[0]}")
            self.reader = TcpReader(self.tcp)
            await self.tcp.join(token, room)
            await self.reader.next(op_is(5))
        return self

    async def close(self) -> None:
        if self.ws:
            await self.ws.close()
        if self.tcp:
            await self.tcp.close()


# --- several sockets of one user in a room -------------------------------------------------------


@pytest.mark.parametrize("second", ["websocket", "tcp"])
async def test_a_user_stays_in_the_room_until_the_last_of_their_sockets_closes(cluster: Cluster, second: str) -> None:
    """Two tabs on one node, or a websocket and a TCP connection on two nodes: closing one socket
    sends no member list and leaves the user a member; closing the last sends the list without them."""
    room = random.randint(10**6, 10**9)
    redis_db = db(cluster)
    async with ApiClient(cluster.api_url) as api:
        names = {who: unique(who) for who in ("alice", "bob", "carol")}
        tokens = {who: await api.register(name) for who, name in names.items()}
        ids = {who: str(await api.user_id(token)) for who, token in tokens.items()}
        bob = await WsClient(cluster.ws_url).join(tokens["bob"], room)
        await bob.next_frame(op_is(5, count=1))
        # each join waits for a list sent after it: no two joins' lists are merged into one
        first = await Socket("websocket", cluster).join(tokens["alice"], room)
        other = await Socket(second, cluster).join(tokens["alice"], room)
        carol: WsClient | None = None
        try:
            both = {ids["alice"]: names["alice"], ids["bob"]: names["bob"]}
            assert redis_db.hget(f"gochat_room_refs_{room}", ids["alice"]) == b"2"
            assert redis_db.hget(f"gochat_room_{room}", ids["alice"]) == names["alice"].encode()
            # the three joins' lists, so that none of them arrives after the close below
            await eventually(lambda: len(member_lists(bob, 0)) >= 3, 15, "the lists of three joins")
            assert member_lists(bob, 0)[-1]["roomUserInfo"] == both

            mark = len(bob.seen)
            await first.close()
            await eventually(
                lambda: redis_db.hget(f"gochat_room_refs_{room}", ids["alice"]) == b"1", 15, "logic saw the close"
            )
            # a later join's list shows who is in the room, and that nothing went out in between
            carol = await WsClient(cluster.ws_url).join(tokens["carol"], room)
            three = {**both, ids["carol"]: names["carol"]}
            await bob.next_frame(op_is(5, count=3, roomUserInfo=three))
            assert member_lists(bob, mark) == [{"op": 5, "roomId": room, "count": 3, "roomUserInfo": three}], (
                "closing one of two sockets sent a member list of its own"
            )
            count = await api.post("/push/count", {"authToken": tokens["bob"], "roomId": room})
            assert count["code"] == 0
            assert await bob.next_frame(op_is(4)) == b'{"count":3,"op":4}'

            # the last socket closes: the room hears alice left
            await other.close()
            without = {ids["bob"]: names["bob"], ids["carol"]: names["carol"]}
            await bob.next_frame(op_is(5, count=2, roomUserInfo=without))
            assert not redis_db.hexists(f"gochat_room_refs_{room}", ids["alice"])
            assert not redis_db.hexists(f"gochat_room_{room}", ids["alice"])
        finally:
            await first.close()
            await other.close()
            await bob.close()
            if carol:
                await carol.close()


# --- sessions renewed by joins -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["websocket", "tcp"])
async def test_a_join_renews_the_session(cluster: Cluster, kind: str) -> None:
    """README: a token lives session_ttl from its last use, a websocket or TCP join included."""
    redis_db = db(cluster)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("renew"))
        user_id = await api.user_id(token)
        # as if the session had been idle for most of its life
        redis_db.expire(f"sess_{token}", 30)
        redis_db.expire(f"sess_map_{user_id}", 30)
        assert 0 < redis_db.ttl(f"sess_{token}") <= 30
        sock = await Socket(kind, cluster).join(token, random.randint(10**6, 10**9))
        try:
            ttl = cluster.settings.logic.session_ttl
            assert 30 < redis_db.ttl(f"sess_{token}") <= ttl
            assert 30 < redis_db.ttl(f"sess_map_{user_id}") <= ttl
        finally:
            await sock.close()


# --- passwords imported from the original ---------------------------------------------------------


async def test_a_sha1_password_is_rehashed_with_argon2id_at_the_first_login(cluster: Cluster) -> None:
    name, password = unique("imported"), "old-secret"
    path = cluster.settings.state_path / "gochat.sqlite3"
    legacy = hashlib.sha1(password.encode()).hexdigest()

    def row() -> str:
        with sqlite3.connect(path, timeout=10) as conn:
            (stored,) = conn.execute("SELECT password FROM user WHERE user_name = ?", (name,)).fetchone()
        return stored

    with sqlite3.connect(path, timeout=10) as conn:  # a row as the original's MySQL dump has it
        conn.execute(
            "INSERT INTO user (user_name, password, create_time) VALUES (?, ?, ?)",
            (name, legacy, datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")),
        )
    async with ApiClient(cluster.api_url) as api:
        wrong = await api.post("/user/login", {"userName": name, "passWord": "not-it"})
        assert wrong["code"] == 1, wrong
        assert row() == legacy  # a failed login changes nothing

        login = await api.post("/user/login", {"userName": name, "passWord": password})
        assert login["code"] == 0, login
        stored = row()
        assert stored.startswith("$argon2id$"), stored
        assert PasswordHasher().verify(stored, password)

        # and the new hash is what logs in from now on
        assert (await api.post("/user/login", {"userName": name, "passWord": password}))["code"] == 0
        assert (await api.post("/user/login", {"userName": name, "passWord": "not-it"}))["code"] == 1
        assert row() == stored


# --- request bodies --------------------------------------------------------------------------------


async def test_request_bodies_over_64_kib_are_refused(cluster: Cluster) -> None:
    limit = 64 * 1024
    async with ApiClient(cluster.api_url) as api:
        name = unique("body")
        await api.register(name)
        login = json.dumps({"userName": name, "passWord": "pw-123456"}).encode()
        padded = login[:-1] + b" " * (limit - len(login)) + b"}"  # JSON whitespace: the same login
        assert len(padded) == limit
        status, reply, _ = await api.post_raw("/user/login", padded)
        assert status == 200 and reply["code"] == 0, reply  # 64 KiB exactly is allowed
        token = reply["data"]  # the login ended the register session (one session per user)

        too_big = login[:-1] + b" " * (limit + 1 - len(login)) + b"}"
        assert len(too_big) == limit + 1
        status, reply, _ = await api.post_raw("/user/login", too_big)
        assert status == 200
        assert reply == {"code": 1, "data": None, "message": f"request body too large (limit {limit} bytes)"}

        room = random.randint(10**6, 10**9)
        ws = await WsClient(cluster.ws_url).join(token, room)
        try:
            await ws.next_frame(op_is(5))
            refused = json.dumps({"authToken": token, "roomId": room, "msg": "r" * 30000}).encode()
            refused = refused[:-1] + b" " * (limit + 1 - len(refused)) + b"}"
            _, reply, _ = await api.post_raw("/push/pushRoom", refused)
            assert reply == {"code": 1, "data": None, "message": f"request body too large (limit {limit} bytes)"}
            accepted = json.dumps({"authToken": token, "roomId": room, "msg": "m" * 30000}).encode()
            _, reply, _ = await api.post_raw("/push/pushRoom", accepted)
            assert reply["code"] == 0, reply
            frame = await ws.next_frame(op_is(3))
            assert json.loads(frame)["msg"] == "m" * 30000  # the refused one never went out
        finally:
            await ws.close()


# --- frames too large for TCP ---------------------------------------------------------------------


async def test_a_frame_over_the_tcp_limit_is_withheld_from_tcp_clients_only(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        sender = await api.register(unique("big"))
        web = await WsClient(cluster.ws_url).join(sender, room)
        client = await TcpClient.connect(f"127.0.0.1:{cluster.tcp_ports[0]}")
        tcp = TcpReader(client)
        await client.join(await api.register(unique("tcp")), room)
        try:
            await tcp.next(op_is(5))

            async def push(text: str) -> None:
                reply = await api.post("/push/pushRoom", {"authToken": sender, "msg": text, "roomId": room})
                assert reply["code"] == 0, reply

            await push("probe")
            probe = await tcp.next(op_is(3))
            assert await web.next_frame(op_is(3)) == probe
            overhead = len(probe) - len("probe")  # the rest of the op-3 body: same sender, same length
            fits = "f" * (MAX_FRAME_SIZE - 4 - overhead)  # a frame of exactly 32767 bytes
            too_big = "b" * (len(fits) + 1)
            for text in (fits, too_big, "after"):
                await push(text)
            for text in (fits, too_big, "after"):  # websocket clients get every one
                assert json.loads(await web.next_frame(op_is(3), timeout=15))["msg"] == text

            got = await tcp.next(op_is(3), timeout=15)
            assert len(got) == MAX_FRAME_SIZE - 4 and json.loads(got)["msg"] == fits
            # the next frame on the connection is the one after the oversize message
            assert json.loads(await tcp.next(op_is(3), timeout=15))["msg"] == "after"
            await cluster.logged("frame not sent: the transport cannot carry it")
            await client.send_room("still connected")
            assert json.loads(await web.next_frame(op_is(3), timeout=15))["msg"] == "still connected"
        finally:
            await client.close()
            await web.close()
            await asyncio.wait_for(tcp.task, 10)
