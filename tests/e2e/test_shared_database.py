"""Several logic processes (as on several hosts) and one user database.

Logic processes on two databases would fail logins half the time (the api picks a logic at
random), hand out user id 1 twice (one user's login ending the other's session, a private message
reaching the other database's user), and let a taken name be registered again.  So a logic or task
whose database is not the cluster's refuses to start; on one database every logic serves every
user.  On SQLite (two processes on one file) and on PostgreSQL (the multi-host setup).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import uuid
from pathlib import Path

import grpc
import pytest
import redis

from gochat_py.rpc import logic_pb2 as pb
from gochat_py.rpc import logic_pb2_grpc
from gochat_py.storage.database_identity import IDENTITY_KEY
from gochat_py.storage.schema import upgrade
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, op_is, registered
from tests.postgres import PostgresServer
from tests.pre_migration import make_pre_migration_sqlite

CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")
READY_RPC = re.compile(r"msg=ready rpc=(\S+)")


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def cluster_identity(cluster: Cluster) -> str:
    value = redis.Redis.from_url(f"redis://{cluster.env['GOCHAT_REDIS__ADDRESS']}/{cluster.db}").get(IDENTITY_KEY)
    assert value, "no logic recorded the cluster's database"
    return value.decode()


async def other_database(cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A second, migrated database of the cluster's kind, holding a user of its own (id 1)."""
    if "postgresql" in cluster.env.get("GOCHAT_LOGIC__DATABASE_URL", ""):
        postgres: PostgresServer = request.getfixturevalue("postgres")
        url = postgres.new_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite3'}"
    await upgrade(url)
    return url


async def test_a_logic_or_task_on_another_database_refuses_to_start_and_changes_nothing(
    db_cluster: Cluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    cluster = db_cluster
    identity = cluster_identity(cluster)
    logic_keys = {k for k in await registered(cluster) if cluster.settings.etcd.logic_service in k}
    other = await other_database(cluster, request, tmp_path)
    for module in ("logic", "task"):
        process = cluster.system.start_module(module, {"GOCHAT_LOGIC__DATABASE_URL": other}, name=f"{module}_other")
        assert await asyncio.to_thread(process.proc.wait, 60) == 1, process.tail()  # type: ignore[union-attr]
        output = process.tail()
        assert 'msg="cannot start"' in output and "is not the database this cluster uses" in output, output
        assert f"(identity {identity}, recorded in Redis key {IDENTITY_KEY}" in output
        assert "GOCHAT_LOGIC__DATABASE_URL" in output and "msg=ready" not in output
    assert cluster_identity(cluster) == identity  # not overwritten
    assert {k for k in await registered(cluster) if cluster.settings.etcd.logic_service in k} == logic_keys

    async with ApiClient(cluster.api_url) as api:  # the cluster goes on with its one database
        name = unique("after")
        await api.register(name, "pw")
        for _ in range(10):
            assert (await api.post("/user/login", {"userName": name, "passWord": "pw"}))["code"] == 0


class Logic:
    """One logic process called directly, not through the api's random pick."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.aio.insecure_channel(address)
        self.stub = logic_pb2_grpc.LogicStub(self.channel)

    async def register(self, name: str, password: str = "pw") -> pb.AuthReply:
        return await self.stub.Register(pb.AuthRequest(name=name, password=password), timeout=15)

    async def login(self, name: str, password: str = "pw") -> pb.AuthReply:
        return await self.stub.Login(pb.AuthRequest(name=name, password=password), timeout=15)

    async def whoami(self, token: str) -> tuple[int, str] | None:
        reply = await self.stub.CheckAuth(pb.CheckAuthRequest(auth_token=token), timeout=5)
        return (reply.user_id, reply.user_name) if reply.code == 0 else None


def logic_address(cluster: Cluster, name: str) -> str:
    (process,) = [p for p in cluster.processes(name) if p.running()]
    found = [m.group(1) for line in list(process.lines) if (m := READY_RPC.search(line))]
    assert found, process.tail()
    return found[-1]


async def test_two_logic_processes_on_one_database_serve_every_user_alike(db_cluster: Cluster) -> None:
    cluster = db_cluster
    if not cluster.processes("logic_2"):
        cluster.start_module("logic", name="logic_2")  # same settings, same database
    first, second = Logic(logic_address(cluster, "logic")), Logic(logic_address(cluster, "logic_2"))
    try:
        # ids: registrations through both logics at once get one id each, never the same
        names = [unique(f"u{i}") for i in range(12)]
        replies = await asyncio.gather(*((first if i % 2 else second).register(n) for i, n in enumerate(names)))
        assert all(r.code == 0 for r in replies), replies
        who = [await first.whoami(r.auth_token) for r in replies]
        assert [w[1] for w in who if w] == names
        assert len({w[0] for w in who if w}) == len(names)

        # a taken name cannot be registered again through the other logic
        taken = unique("taken")
        assert (await first.register(taken, "first")).code == 0
        again = await second.register(taken, "second")
        assert again.code != 0 and "already" in again.message
        assert (await second.login(taken, "first")).code == 0 and (await first.login(taken, "second")).code != 0

        # logins never depend on which logic the api picks
        async with ApiClient(cluster.api_url) as api:
            name = unique("carol")
            await api.register(name, "pw-c")
            for _ in range(20):
                assert (await api.post("/user/login", {"userName": name, "passWord": "pw-c"}))["code"] == 0
        assert (await first.login(name, "pw-c")).code == 0 and (await second.login(name, "pw-c")).code == 0

        # one user's login does not end another user's session
        dave, erin = unique("dave"), unique("erin")
        dave_token = (await first.register(dave)).auth_token
        erin_token = (await second.register(erin)).auth_token
        dave_id = (await first.whoami(dave_token) or (0, ""))[0]
        erin_token = (await second.login(erin)).auth_token
        assert await first.whoami(dave_token) == (dave_id, dave) == await second.whoami(dave_token)
        assert (await first.whoami(erin_token) or (0, ""))[1] == erin

        # a private message to a user id reaches that user, and nobody else
        room = 424242
        dave_ws = await WsClient(cluster.ws_url).join(dave_token, room)
        erin_ws = await WsClient(cluster.ws_url).join(erin_token, room)
        try:
            for ws in (dave_ws, erin_ws):
                await ws.next_frame(op_is(5))
            text = unique("for-dave-")
            sent = await second.stub.Push(pb.PushRequest(to_user_id=dave_id, msg=text, auth_token=erin_token))
            assert sent.code == 0, sent
            await dave_ws.next_frame(op_is(2, msg=text))
            marker = unique("room-")  # a room message after it: erin has seen everything sent before
            await first.stub.PushRoom(pb.PushRoomRequest(room_id=room, msg=marker, auth_token=dave_token))
            await erin_ws.next_frame(op_is(3, msg=marker))
            assert not [f for f in erin_ws.seen if text.encode() in f]
        finally:
            await dave_ws.close()
            await erin_ws.close()
    finally:
        await first.channel.close()
        await second.channel.close()


async def test_a_database_made_before_migrations_is_upgraded_and_logic_starts_on_it(
    infra: Infra, tmp_path: Path
) -> None:
    """The release before migrations made the SQLite file with create_all: logic refuses it and
    names the command; after ``gochat-py db upgrade`` it starts and its users log in as before."""
    cluster = Cluster(infra, tmp_path)
    cluster.settings.state_path.mkdir(parents=True)
    database = cluster.settings.state_path / "gochat.sqlite3"
    make_pre_migration_sqlite(database)
    with sqlite3.connect(database) as conn:  # alice's password as the original stored it (sha1)
        conn.execute("UPDATE user SET password = ? WHERE user_name = 'alice'", (hashlib.sha1(b"old-pw").hexdigest(),))
    try:
        refused = cluster.system.start_module("logic", name="logic_refused")
        assert await asyncio.to_thread(refused.proc.wait, 60) == 1  # type: ignore[union-attr]
        assert "made by a release before schema migrations" in refused.tail()
        assert "run `gochat-py db upgrade`" in refused.tail()
        cluster.system.modules.remove(refused)  # start() below waits for every module it holds

        assert "upgraded: revision none -> " in cluster.upgrade_database()
        cluster.start(("logic", "api"))
        async with ApiClient(cluster.api_url) as api:
            login = await api.post("/user/login", {"userName": "alice", "passWord": "old-pw"})
            assert login["code"] == 0, login
            assert await api.user_id(login["data"]) == 1
            token = await api.register("carol", "pw")
            assert await api.user_id(token) == 3
            assert (await api.post("/user/register", {"userName": "bob", "passWord": "x"}))["code"] == 1
    finally:
        cluster.stop()
