"""Redis stopped and started again: no process crashes, the API says so at once while Redis is down,
and the messages it had accepted are delivered once Redis is back (the append-only file keeps them).

This module runs on its own Redis and etcd, so stopping Redis disturbs no other test.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import websockets

from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, eventually, op_is, running_infra

CLUSTER_ENV = {"GOCHAT_TASK__CLAIM_IDLE": "1"}
CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")
RPC_DEADLINE = 3.0  # [rpc] timeout
ANSWER_BOUND = RPC_DEADLINE + 3.0  # an answer after this is a hang


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """This module's own Redis and etcd (the ``cluster`` fixture picks this one up)."""
    with running_infra(tmp_path_factory, "infra_redis_faults") as running:
        yield running


def _texts(ws: WsClient, op: int) -> list[str]:
    return [body["msg"] for body in (json.loads(f) for f in ws.seen if f) if body.get("op") == op]


async def _timed(api: ApiClient, path: str, body: dict) -> tuple[dict, float]:
    start = time.monotonic()
    reply = await asyncio.wait_for(api.post(path, body), ANSWER_BOUND)
    return reply, time.monotonic() - start


async def test_redis_restart_loses_no_accepted_message_and_the_api_fails_fast_meanwhile(
    cluster: Cluster, infra: Infra
) -> None:
    cluster.start_module("task", name="task_2")
    tasks = cluster.processes("task") + cluster.processes("task_2")
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    room = random.randint(10**6, 10**9)
    tag = uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api:
        sender_name = f"sender{tag}"
        sender, receiver = await api.register(sender_name), await api.register(f"receiver{tag}")
        receiver_id = await api.user_id(receiver)
        ws = await WsClient(cluster.ws_url).join(receiver, room)
        await ws.next_frame(op_is(5))

        room_texts = [f"held{n}" for n in range(60)]
        private_texts = [f"secret{n}" for n in range(20)]
        for process in tasks:
            process.signal(signal.SIGSTOP)  # nothing is consumed: the messages wait in Redis
        try:
            for text in room_texts:
                reply = await api.post("/push/pushRoom", {"authToken": sender, "msg": text, "roomId": room})
                assert reply["code"] == 0, reply
            for text in private_texts:
                body = {"authToken": sender, "msg": text, "toUserId": str(receiver_id), "roomId": room}
                assert (await api.post("/push/push", body))["code"] == 0
            assert db.xlen("gochat_stream") >= len(room_texts) + len(private_texts)

            infra.stop_redis()
            answers = {}
            for path, body in (
                ("/user/checkAuth", {"authToken": sender}),
                ("/push/pushRoom", {"authToken": sender, "msg": "lost?", "roomId": room}),
                ("/push/push", {"authToken": sender, "msg": "lost?", "toUserId": str(receiver_id), "roomId": room}),
                ("/push/count", {"authToken": sender, "roomId": room}),
                ("/user/login", {"userName": sender_name, "passWord": "pw-123456"}),
            ):
                reply, took = await _timed(api, path, body)
                answers[path] = took
                assert reply["code"] == 1 and reply["message"] and reply["data"] is None, (path, reply)
            print("answers while redis is down (s):", {k: round(v, 2) for k, v in answers.items()})
            # a new websocket is refused with "try again later"; the open one stays
            async with websockets.connect(cluster.ws_url) as refused:
                await refused.send(json.dumps({"authToken": sender, "roomId": room}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(refused.recv(), ANSWER_BOUND)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
            assert ws.ws is not None and ws.ws.close_code is None

            infra.start_redis()
        finally:
            for process in tasks:
                process.signal(signal.SIGCONT)

        # service resumes by itself: the first request after the restart already works
        reply, _ = await _timed(api, "/user/checkAuth", {"authToken": sender})
        assert reply["code"] == 0, reply
        await eventually(
            lambda: set(room_texts) <= set(_texts(ws, 3)) and set(private_texts) <= set(_texts(ws, 2)),
            30,
            "messages accepted before the restart delivered",
        )
        await eventually(lambda: db.xpending("gochat_stream", "gochat_task")["pending"] == 0, 30, "queue drained")
        assert (await api.post("/push/pushRoom", {"authToken": sender, "msg": "after", "roomId": room}))["code"] == 0
        await ws.next_frame(op_is(3, msg="after"), timeout=15)
        assert sorted(_texts(ws, 3)) == sorted([*room_texts, "after"])
        assert sorted(_texts(ws, 2)) == sorted(private_texts)
        login = await api.post("/user/login", {"userName": sender_name, "passWord": "pw-123456"})
        assert login["code"] == 0, login
        await ws.close()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()
