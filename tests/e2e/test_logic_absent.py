"""api and connect nodes started before logic: with no logic reachable at all a push gets code 1 and
a websocket join close 1013 (try again later); once a logic process starts they use it, unrestarted."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
import websockets

from gochat_py.client.tcp import TcpClient
from tests.e2e.harness import ApiClient, Cluster, TcpReader, WsClient, eventually, op_is

CLUSTER_MODULES = ("connect_websocket", "connect_tcp", "task", "api")  # no logic
ATTEMPTS = 60  # joins tried while the nodes learn about the new logic process (etcd watch)


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def ws_join_refusal(cluster: Cluster, token: str, room: int) -> int | None:
    """Joins; None when the member list arrives, else the close code the node sent."""
    async with websockets.connect(cluster.ws_url, open_timeout=10) as ws:
        await ws.send(json.dumps({"authToken": token, "roomId": room}))
        try:
            while json.loads(await asyncio.wait_for(ws.recv(), 30)).get("op") != 5:
                pass
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code
    return None


async def test_api_and_connect_without_logic_refuse_then_use_logic_once_it_starts(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    fake_token = "A" * 43 + "="
    async with ApiClient(cluster.api_url) as api:
        for path, body in (
            ("/push/pushRoom", {"authToken": fake_token, "msg": "hello", "roomId": room}),
            ("/push/push", {"authToken": fake_token, "msg": "hello", "toUserId": "1", "roomId": room}),
            ("/push/count", {"authToken": fake_token, "roomId": room}),
            ("/user/checkAuth", {"authToken": fake_token}),
            ("/user/register", {"userName": unique("early"), "passWord": "pw-123456"}),
        ):
            reply = await api.post(path, body)
            # code 1 with a message: not a fake success, and not a misleading session error (40000)
            assert reply["code"] == 1 and reply["data"] is None and reply["message"], (path, reply)
        assert await ws_join_refusal(cluster, fake_token, room) == 1013

        cluster.start_module("logic")

        tokens: list[str] = []

        async def register() -> bool:
            reply = await api.post("/user/register", {"userName": unique("late"), "passWord": "pw-123456"})
            if reply["code"] == 0:
                tokens.append(reply["data"])
            return reply["code"] == 0

        await eventually(register, 60, "the api reaches the logic process started after it", interval=0.2)
        await eventually(register, 10, "a second user")
        web_token, tcp_token = tokens[:2]

        for _ in range(ATTEMPTS):  # the websocket node reaches logic too
            code = await ws_join_refusal(cluster, web_token, room)
            if code is None:
                break
            assert code == 1013, code
            await asyncio.sleep(0.5)
        else:
            pytest.fail("websocket joins still refused after logic started")

        web = await WsClient(cluster.ws_url).join(web_token, room)
        client: TcpClient | None = None
        try:
            await web.next_frame(op_is(5))
            for _ in range(ATTEMPTS):  # and so does the TCP node
                client = await TcpClient.connect(f"127.0.0.1:{cluster.tcp_ports[0]}")
                reader = TcpReader(client)
                await client.join(tcp_token, room)
                try:
                    await reader.next(op_is(5, count=2))
                    break
                except AssertionError:  # closed: the join was refused
                    await client.close()
                    client = None
                    await asyncio.sleep(0.5)
            else:
                pytest.fail("TCP joins still refused after logic started")

            assert client is not None
            await client.send_room("from tcp")
            await web.next_frame(op_is(3, msg="from tcp"))
            reply = await api.post("/push/pushRoom", {"authToken": web_token, "msg": "from web", "roomId": room})
            assert reply["code"] == 0, reply
            await reader.next(op_is(3, msg="from web"))
        finally:
            if client:
                await client.close()
            await web.close()
