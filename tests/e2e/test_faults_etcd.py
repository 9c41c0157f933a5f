"""etcd stopped and started again: messages keep flowing between the nodes everyone already knows,
every node is registered again afterwards, and a module started after the restart finds the others.

This module runs on its own Redis and etcd, so stopping etcd disturbs no other test.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from tests.e2e.harness import (
    ApiClient,
    Cluster,
    Infra,
    WsClient,
    eventually,
    free_port,
    op_is,
    registered,
    running_infra,
)

LEASE_TTL = 3
CLUSTER_ENV = {"GOCHAT_ETCD__LEASE_TTL": str(LEASE_TTL), "GOCHAT_TASK__CLAIM_IDLE": "1"}
CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """This module's own Redis and etcd (the ``cluster`` fixture picks this one up)."""
    with running_infra(tmp_path_factory, "infra_etcd_faults") as running:
        yield running


def _texts(ws: WsClient, op: int) -> list[str]:
    return [body["msg"] for body in (json.loads(f) for f in ws.seen if f) if body.get("op") == op]


async def test_etcd_restart_keeps_traffic_flowing_and_every_node_registers_again(
    cluster: Cluster, infra: Infra
) -> None:
    before = await registered(cluster)
    assert len(before) == 2, before  # logic and connect_websocket
    room = random.randint(10**6, 10**9)
    tag = uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api:
        sender, receiver, late = [await api.register(f"{who}{tag}") for who in ("sam", "rita", "leo")]
        receiver_id = await api.user_id(receiver)
        ws = await WsClient(cluster.ws_url).join(receiver, room)
        await ws.next_frame(op_is(5))

        infra.stop_etcd()
        stopped = time.monotonic()
        sent: list[str] = []
        # longer than a lease: nothing may expire or be forgotten while etcd is away
        while time.monotonic() - stopped < LEASE_TTL + 1:
            text = f"down{len(sent)}"
            assert (await api.post("/push/pushRoom", {"authToken": sender, "msg": text, "roomId": room}))["code"] == 0
            body = {"authToken": sender, "msg": text, "toUserId": str(receiver_id), "roomId": room}
            assert (await api.post("/push/push", body))["code"] == 0
            sent.append(text)
            await ws.next_frame(op_is(2, msg=text), timeout=10)
        # a new socket joins through the logic node the connect node already knows
        newcomer = await WsClient(cluster.ws_url).join(late, room)
        await newcomer.next_frame(op_is(5, count=2), timeout=10)
        assert (await api.post("/user/checkAuth", {"authToken": late}))["code"] == 0

        infra.start_etcd()
        took = await eventually(lambda: _all_registered(cluster, before), 30, "every node registered again")
        print(f"{len(sent)} messages while etcd was down; all nodes registered {took:.1f} s after its restart")

        # modules started after the restart find the others: a second api and a second websocket node
        api_2_port, ws_2_port, ws_2_rpc = cluster.start_second_api_and_websocket_node()
        assert f"{cluster.settings.etcd.base_path}/ConnectRpc/tcp@{ws_2_rpc}" in await registered(cluster)
        task = cluster.processes("task")[0]
        took = await eventually(
            lambda: any("service nodes changed" in line and f"added={ws_2_rpc}" in line for line in task.lines),
            LEASE_TTL + 10,
            "task seeing the new connect node",
        )
        print(f"task saw the new node {took:.1f} s after it registered")
        async with ApiClient(f"http://127.0.0.1:{api_2_port}") as api_2:
            fresh = await api_2.register(f"fred{tag}")
            on_new_node = await WsClient(f"ws://127.0.0.1:{ws_2_port}/ws").join(fresh, room)
            await on_new_node.next_frame(op_is(5, count=3), timeout=15)
            reply = await api_2.post("/push/pushRoom", {"authToken": fresh, "msg": "after etcd", "roomId": room})
            assert reply["code"] == 0, reply
            for client in (ws, newcomer, on_new_node):
                await client.next_frame(op_is(3, msg="after etcd"), timeout=15)

        assert sorted(_texts(ws, 3)) == sorted([*sent, "after etcd"])
        assert sorted(_texts(ws, 2)) == sorted(sent)
        for client in (ws, newcomer, on_new_node):
            await client.close()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()


async def test_etcd_that_lost_its_data_gets_every_node_back_and_nobody_is_forgotten(
    cluster: Cluster, infra: Infra
) -> None:
    """An etcd that comes back empty (a new member, its data folder lost): every node registers
    again by itself, messages sent meanwhile arrive, and logic does not take the live nodes, whose
    keys vanished, for dead ones (their users stay in the rooms)."""
    before = await registered(cluster)
    room = random.randint(10**6, 10**9)
    tag = uuid.uuid4().hex[:6]
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    async with ApiClient(cluster.api_url) as api:
        sender, receiver = await api.register(f"sue{tag}"), await api.register(f"ray{tag}")
        receiver_id = await api.user_id(receiver)
        ws = await WsClient(cluster.ws_url).join(receiver, room)
        await ws.next_frame(op_is(5))
        members = db.hgetall(f"gochat_room_{room}")
        assert list(members) == [str(receiver_id).encode()]

        infra.stop_etcd()
        shutil.rmtree(infra.root / "etcd")
        infra.start_etcd()
        back = asyncio.create_task(eventually(lambda: _all_registered(cluster, before), 30, "nodes registered again"))
        sent: list[str] = []
        # through the whole time the nodes need to register again, and a lease and a grace more
        # (logic's settling time, then the reaper's grace, when it could take them for dead)
        back_at: float | None = None
        while back_at is None or time.monotonic() - back_at < LEASE_TTL + 2:
            text = f"wiped{len(sent)}"
            assert (await api.post("/push/pushRoom", {"authToken": sender, "msg": text, "roomId": room}))["code"] == 0
            sent.append(text)
            await asyncio.sleep(0.05)
            if back_at is None and back.done():
                back_at = time.monotonic()
        took = await back
        print(f"{len(sent)} messages; all nodes registered again {took:.1f} s after etcd came back empty")
        await eventually(lambda: set(sent) <= set(_texts(ws, 3)), 30, "messages sent while nodes registered again")
        await eventually(lambda: db.xpending("gochat_stream", "gochat_task")["pending"] == 0, 30, "queue drained")
        assert db.hgetall(f"gochat_room_{room}") == members, "a live user was purged from the room"
        await api.post("/push/count", {"authToken": sender, "roomId": room})
        assert await ws.next_frame(op_is(4)) == b'{"count":1,"op":4}'
        got = _texts(ws, 3)
        assert sorted(got) == sorted(sent), f"{len(got) - len(set(got))} repeated"
        await ws.close()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()


async def _all_registered(cluster: Cluster, keys: set[str]) -> bool:
    return keys <= await registered(cluster)


async def _count_registered(cluster: Cluster, count: int) -> bool:
    return len(await registered(cluster)) == count


async def test_a_node_started_while_etcd_is_down_registers_when_it_comes_back(cluster: Cluster, infra: Infra) -> None:
    """It does not exit: it serves, and the others see it once etcd answers."""
    ws_port, rpc = free_port(), f"127.0.0.1:{free_port()}"
    key = f"{cluster.settings.etcd.base_path}/ConnectRpc/tcp@{rpc}"
    infra.stop_etcd()
    try:
        node = cluster.start_module(
            "connect_websocket",
            name="connect_websocket_early",
            GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{ws_port}",
            GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=rpc,
        )
        await cluster.logged("etcd unreachable; this node registers as soon as it answers")
        await asyncio.sleep(1)
        assert node.running(), node.tail()
    finally:
        infra.start_etcd()
    await eventually(lambda: _is_registered(cluster, key), LEASE_TTL + 20, "the early node registered")
    task = cluster.processes("task")[0]
    await eventually(
        lambda: any("service nodes changed" in line and f"added={rpc}" in line for line in task.lines),
        LEASE_TTL + 20,
        "task seeing the early node",
    )
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"early{uuid.uuid4().hex[:6]}")
        ws = await WsClient(f"ws://127.0.0.1:{ws_port}/ws").join(token, room)
        await ws.next_frame(op_is(5), timeout=15)
        assert (await api.post("/push/pushRoom", {"authToken": token, "msg": "hello early", "roomId": room}))[
            "code"
        ] == 0
        await ws.next_frame(op_is(3, msg="hello early"), timeout=15)
        await ws.close()
    assert node.running()


async def _is_registered(cluster: Cluster, key: str) -> bool:
    return key in await registered(cluster)
