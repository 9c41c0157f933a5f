"""A connect node killed with SIGKILL while messages flow: nothing is lost for the users on the other
node, nobody sees a message twice, and the dead node's users leave the room within the lease time."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid

import redis

from gochat_py.logic.reaper import SWEEP_INTERVAL
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, eventually, free_port, op_is

LEASE_TTL, NODE_GRACE = 3, 1
CLUSTER_ENV = {
    "GOCHAT_ETCD__LEASE_TTL": str(LEASE_TTL),
    "GOCHAT_LOGIC__NODE_GRACE": str(NODE_GRACE),
    "GOCHAT_TASK__CLAIM_IDLE": "1",
}
CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")
# etcd checks lease expiry every 500 ms; the rest is a margin for a busy two-core machine
SLACK = 4.0


def _bodies(ws: WsClient, start: int = 0) -> list[dict]:
    return [json.loads(frame) for frame in ws.seen[start:] if frame]


def _texts(ws: WsClient, op: int) -> list[str]:
    return [body["msg"] for body in _bodies(ws) if body.get("op") == op]


async def test_sigkill_of_a_connect_node_loses_nothing_for_the_others_and_leaves_no_ghosts(
    cluster: Cluster, infra: Infra
) -> None:
    victim_rpc = f"127.0.0.1:{free_port()}"
    victim_ws = free_port()
    victim = cluster.start_module(
        "connect_websocket",
        name="connect_websocket_victim",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{victim_ws}",
        GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=victim_rpc,
        GOCHAT_CONNECT_WEBSOCKET__SERVER_ID="ws-victim",
    )
    task = cluster.processes("task")[0]
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    room = random.randint(10**6, 10**9)
    tag = uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api:
        names = [f"{who}{tag}" for who in ("ann", "amy", "bob", "ben")]
        tokens = [await api.register(name) for name in names]
        ids = [await api.user_id(token) for token in tokens]
        survivors = [await WsClient(cluster.ws_url).join(token, room) for token in tokens[:2]]
        doomed = [await WsClient(f"ws://127.0.0.1:{victim_ws}/ws").join(token, room) for token in tokens[2:]]
        everyone = {str(i): n for i, n in zip(ids, names, strict=True)}
        alive = {str(i): n for i, n in zip(ids[:2], names[:2], strict=True)}
        for ws in survivors + doomed:
            await ws.next_frame(op_is(5, roomUserInfo=everyone), timeout=15)

        room_texts = [f"r{n}" for n in range(300)]
        private_texts = [f"p{n}" for n in range(100)]

        async def send_room() -> None:
            for text in room_texts:  # from a user on the surviving node
                reply = await api.post("/push/pushRoom", {"authToken": tokens[0], "msg": text, "roomId": room})
                assert reply["code"] == 0, reply

        async def send_private() -> None:
            for text in private_texts:  # from a user on the dying node, to one on the surviving node
                body = {"authToken": tokens[2], "msg": text, "toUserId": str(ids[1]), "roomId": room}
                reply = await api.post("/push/push", body)
                assert reply["code"] == 0, reply

        senders = asyncio.gather(send_room(), send_private())
        await eventually(lambda: len(_texts(survivors[1], 3)) >= 60, 30, "traffic flowing before the kill")
        seen_at_kill = [len(ws.seen) for ws in survivors]
        victim.kill()
        killed = time.monotonic()
        await senders

        # task forgets the node once its lease has expired (the key is gone and task says so)
        removed = f"removed={victim_rpc}"
        # (a generous deadline: the watch drops it when etcd expires the lease, the relist a moment
        # later; one that never did would wait for ever)
        took = await eventually(
            lambda: any("service nodes changed" in line and removed in line for line in task.lines),
            LEASE_TTL + SLACK + 10,
            "task dropping the dead node",
        )
        print(f"task dropped the dead node {took:.1f} s after the kill")

        # the survivors get a member list without the dead node's users, and a right count
        def ghosts_gone() -> bool:
            return all(
                any(b.get("op") == 5 and b.get("roomUserInfo") == alive for b in _bodies(ws, start))
                for ws, start in zip(survivors, seen_at_kill, strict=True)
            )

        await eventually(ghosts_gone, LEASE_TTL + NODE_GRACE + SWEEP_INTERVAL + SLACK + 10, "op-5 without ghosts")
        print(f"ghost members gone {time.monotonic() - killed:.1f} s after the kill")
        members = db.hgetall(f"gochat_room_{room}")
        assert {k.decode(): v.decode() for k, v in members.items()} == alive
        await api.post("/push/count", {"authToken": tokens[0], "roomId": room})
        for ws in survivors:
            assert await ws.next_frame(op_is(4)) == b'{"count":2,"op":4}'

        # every message reached the survivors exactly once: wait until nothing is pending any more
        # (no redelivery can follow), then a marker pushed after everything else
        await eventually(lambda: db.xpending("gochat_stream", "gochat_task")["pending"] == 0, 30, "queue drained")
        await api.post("/push/pushRoom", {"authToken": tokens[0], "msg": "marker", "roomId": room})
        for ws in survivors:
            await ws.next_frame(op_is(3, msg="marker"), timeout=15)
        for ws in survivors:
            got = _texts(ws, 3)
            missing = set(room_texts) - set(got)
            assert not missing, f"{len(missing)} room messages lost, e.g. {sorted(missing)[:5]}"
            assert len(got) == len(room_texts) + 1, f"{len(got) - len(room_texts) - 1} room duplicates"
        got_private = _texts(survivors[1], 2)
        assert sorted(got_private) == sorted(private_texts), (
            f"{len(set(private_texts) - set(got_private))} lost, {len(got_private) - len(set(got_private))} repeated"
        )
        assert not _texts(survivors[0], 2)
        for ws in survivors + doomed:
            await ws.close()
    assert all(p.running() for p in cluster.system.modules if p is not victim), cluster.tails()
