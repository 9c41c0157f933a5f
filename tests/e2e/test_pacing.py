"""A websocket node whose clients fall behind holds deliveries back instead of burying them in
socket buffers, and loses nothing doing so (connect.pacing).  That one slow client among many
does not hold the node up is shown by test_connect_limits' slow-client test."""

from __future__ import annotations

import asyncio
import json
import random
import uuid

from tests.e2e.harness import ApiClient, Cluster, WsClient, eventually, op_is, scrape

CLUSTER_ENV = {"GOCHAT_CONNECT__PACE_LAG": "0.02", "GOCHAT_CONNECT__PACE_SAMPLE": "3"}


def holds(cluster: Cluster) -> float:
    return scrape(cluster, "connect_websocket").get("gochat_pace_hold_seconds_count", 0.0)


async def test_a_node_whose_clients_stop_reading_holds_deliveries_and_loses_nothing(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        tokens = [await api.register(f"paced{n}{uuid.uuid4().hex[:8]}") for n in range(3)]
        clients = []
        for token in tokens:
            clients.append(await WsClient(cluster.ws_url).join(token, room))
        try:
            for client in clients:
                await client.next_frame(op_is(5, count=3))
            # while messages flow the node pings its clients, and learns each one's round trip
            warm = [f"w{n}" for n in range(20)]
            for text in warm:
                await api.push_room_many(tokens[0], room, [text], concurrency=1)
                await asyncio.sleep(0.03)
            for client in clients:
                assert [json.loads(await client.next_frame(op_is(3)))["msg"] for _ in warm] == warm
            before = holds(cluster)

            stalled = clients[1:]  # two of three: the median client falls behind
            for client in stalled:
                assert client.ws is not None
                client.ws.transport.pause_reading()
            texts = [f"m{n}" for n in range(300)]
            sending = asyncio.create_task(api.push_room_many(tokens[0], room, texts, concurrency=1))
            await eventually(lambda: holds(cluster) > before, 20, "a delivery held")
            await cluster.logged("clients fall behind; holding deliveries until they catch up")
            for client in stalled:
                assert client.ws is not None
                client.ws.transport.resume_reading()
            await asyncio.wait_for(sending, 60)

            for client in clients:  # every message, once, in the order sent, stalled or not
                got = [json.loads(await client.next_frame(op_is(3), timeout=30))["msg"] for _ in texts]
                assert got == texts
        finally:
            for client in clients:
                await client.close()
    await cluster.logged("clients caught up; deliveries flow freely", timeout=20)
