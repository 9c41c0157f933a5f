"""Every process serves Prometheus metrics that follow what happened."""

from __future__ import annotations

import random
import uuid

from tests.e2e.harness import ApiClient, Cluster, WsClient, op_is, scrape


async def test_metrics_follow_the_traffic(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"metered{uuid.uuid4().hex[:8]}")
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5))
        await api.push_room_many(token, room, [f"m{n}" for n in range(5)], concurrency=2)
        got = {(await ws.next_frame(op_is(3))).decode() for _ in range(5)}  # two senders: any order
        assert len(got) == 5
        connect = scrape(cluster, "connect_websocket")
        assert connect["gochat_connections"] >= 1
        assert connect["gochat_joins_total"] >= 1
        assert connect['gochat_frames_out_total{op="3"}'] >= 5
        assert connect['gochat_frames_out_total{op="5"}'] >= 1
        assert connect["gochat_queue_to_socket_seconds_count"] >= 6  # five messages and a member list
        await ws.close()

    logic = scrape(cluster, "logic")
    assert logic['gochat_messages_in_total{op="3"}'] >= 5
    task = scrape(cluster, "task")
    assert task['gochat_queue_delivered_total{op="3"}'] >= 5
    assert task['gochat_rpc_seconds_count{method="Deliver"}'] >= 1
    assert "gochat_queue_pending" in task and "gochat_queue_lag" in task
    api_samples = scrape(cluster, "api")
    assert api_samples['gochat_rpc_seconds_count{method="PushBatch"}'] >= 1
    assert "gochat_connections" in scrape(cluster, "connect_tcp")
