"""Whatever a websocket client sends, only its own connection suffers, with a clear close code."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.e2e.harness import ApiClient, Cluster, WsClient, op_is


async def _close_code(ws: ClientConnection) -> int:
    with pytest.raises(websockets.ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 15)
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


@pytest.mark.parametrize(
    ("name", "join", "code"),
    [
        ("array", "[1, 2]", 1008),
        ("number token", json.dumps({"authToken": 5, "roomId": 1}), 1008),
        ("empty token", json.dumps({"authToken": "", "roomId": 1}), 1008),
        ("null", "null", 1008),
        ("empty", "", 1008),
        ("binary garbage", b"\x00\xff\x10", 1008),
    ],
)
async def test_a_bad_join_closes_that_connection(cluster: Cluster, name: str, join: str | bytes, code: int) -> None:
    async with websockets.connect(cluster.ws_url) as ws:
        await ws.send(join)
        assert await _close_code(ws) == code


async def test_invalid_utf8_is_a_protocol_error(cluster: Cluster) -> None:
    async with websockets.connect(cluster.ws_url) as ws:
        # a text frame with invalid UTF-8, written below the library (which would refuse to send it)
        ws.protocol.send_frame(websockets.frames.Frame(websockets.frames.Opcode.TEXT, b"\xff\xfe"))
        ws.send_data()
        assert await _close_code(ws) == 1007
    await cluster.logged("websocket closed before joining")


async def test_a_binary_join_works_and_later_messages_are_ignored(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"bin{uuid.uuid4().hex[:8]}")
        async with websockets.connect(cluster.ws_url) as ws:
            await ws.send(json.dumps({"authToken": token, "roomId": room}).encode())  # binary frame
            async with asyncio.timeout(15):  # joined: the member list arrives
                while json.loads(await ws.recv()).get("op") != 5:
                    pass
            # repeated joins, garbage and other rooms after the join change nothing
            for extra in (json.dumps({"authToken": token, "roomId": room + 1}), "garbage", b"\x00"):
                await ws.send(extra)
            await api.post("/push/pushRoom", {"authToken": token, "msg": "still in the first room", "roomId": room})
            async with asyncio.timeout(15):
                while json.loads(await ws.recv()).get("msg") != "still in the first room":
                    pass
            reply = await api.post("/push/count", {"authToken": token, "roomId": room})
            assert reply["code"] == 0
            async with asyncio.timeout(15):
                while (frame := json.loads(await ws.recv())).get("op") != 4:
                    pass
            assert frame == {"count": 1, "op": 4}  # counted once


async def test_a_flood_of_joins_leaves_the_node_serving(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"flood{uuid.uuid4().hex[:8]}")
        witness = await WsClient(cluster.ws_url).join(token, room)
        await witness.next_frame(op_is(5))

        async def bad_join(n: int) -> int:
            async with websockets.connect(cluster.ws_url) as ws:
                await ws.send(json.dumps({"authToken": f"forged-{n}", "roomId": room}))
                return await _close_code(ws)

        codes = await asyncio.gather(*(bad_join(n) for n in range(100)))
        assert set(codes) == {1008}
        await api.post("/push/pushRoom", {"authToken": token, "msg": "after the flood", "roomId": room})
        await witness.next_frame(op_is(3, msg="after the flood"))
        await witness.close()
    assert all(p.running() for p in cluster.system.modules)
