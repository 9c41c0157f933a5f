"""Nodes come and go through etcd, and nobody has to be restarted."""

from __future__ import annotations

import random
import uuid

from tests.e2e.harness import ApiClient, Cluster, WsClient, op_is

# start without any connect node: task must come up and wait
CLUSTER_MODULES = ("logic", "task", "api")


async def test_task_starts_without_connect_nodes_and_uses_one_that_appears(cluster: Cluster) -> None:
    task = cluster.processes("task")[0]
    assert task.running()
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"early{uuid.uuid4().hex[:8]}")
        # nobody can be in the room yet; the message is accepted and goes nowhere
        assert (await api.post("/push/pushRoom", {"authToken": token, "msg": "too early", "roomId": room}))["code"] == 0

        cluster.start_module("connect_websocket")
        ws = await WsClient(cluster.ws_url).join(token, room)
        try:
            await ws.next_frame(op_is(5))
            await api.post("/push/pushRoom", {"authToken": token, "msg": "now", "roomId": room})
            await ws.next_frame(op_is(3, msg="now"))
        finally:
            await ws.close()
    assert task.running() and cluster.processes("task")[0].pid == task.pid


async def test_api_fails_over_to_another_logic_process(cluster: Cluster) -> None:
    first = cluster.processes("logic")[0]
    cluster.start_module("logic", name="logic_2", GOCHAT_LOGIC__RPC_BIND="127.0.0.1:0")
    async with ApiClient(cluster.api_url) as api:
        name = f"failover{uuid.uuid4().hex[:8]}"
        await api.register(name, "pw")
        first.kill()  # its etcd key is still there for up to the lease time
        for _ in range(10):
            reply = await api.post("/user/login", {"userName": name, "passWord": "pw"})
            assert reply["code"] == 0, reply
