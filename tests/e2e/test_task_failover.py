"""Task processes die mid-stream and nothing is lost or duplicated: the queue is at-least-once,
the connect node drops repeats."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid

import redis

from gochat_py.launcher import ManagedProcess
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, consumer_of, eventually, lease_holder, op_is, scrape

# A small backlog limit: every test here also runs with logic holding pushes back.
CLUSTER_ENV = {"GOCHAT_QUEUE__MAX_BACKLOG": "5"}


STREAM, GROUP = "gochat_stream", "gochat_task"


def _drained(db: redis.Redis) -> bool:
    """Every entry of the stream has been read and acknowledged (a task acknowledges an entry
    once it has delivered it): nothing is pending, so no redelivery can follow."""
    (group,) = [g for g in db.xinfo_groups(STREAM) if g["name"] == GROUP.encode()]
    last = db.xinfo_stream(STREAM)["last-generated-id"]
    return group["pending"] == 0 and group["last-delivered-id"] == last


async def _collect(api: ApiClient, db: redis.Redis, token: str, room: int, ws: WsClient) -> list[str]:
    """The room messages ``ws`` received, once the queue has drained and a marker pushed after
    everything else has arrived (every delivery and redelivery came before it)."""
    await eventually(lambda: _drained(db), 60, "queue drained")
    marker = f"marker{uuid.uuid4().hex[:8]}"
    assert (await api.post("/push/pushRoom", {"authToken": token, "msg": marker, "roomId": room}))["code"] == 0
    await ws.next_frame(op_is(3, msg=marker), timeout=30)
    return [m for m in _texts(ws) if m != marker]


def _texts(ws: WsClient) -> list[str]:
    return [body["msg"] for body in (json.loads(f) for f in ws.seen if f) if body.get("op") == 3]


def _held_by(db: redis.Redis, consumer: str) -> int:
    """Entries ``consumer`` has read and not acknowledged."""
    return sum(c["pending"] for c in db.xinfo_consumers(STREAM, GROUP) if c["name"] == consumer.encode())


async def _kill_while_holding_entries(process: ManagedProcess, db: redis.Redis) -> int:
    """SIGKILL at a moment the task holds unacknowledged entries (read, being delivered): it is
    stopped, looked at, and killed if it holds some, let go on if not.  Returns how many it held."""
    consumer = consumer_of(process)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while loop.time() < deadline:
        process.signal(signal.SIGSTOP)
        held = _held_by(db, consumer)
        if held:
            process.kill()
            return held
        process.signal(signal.SIGCONT)
        await asyncio.sleep(random.uniform(0.005, 0.03))
    raise AssertionError(f"task {consumer} never held an unacknowledged entry: the kill would prove nothing")


async def test_kill_9_one_of_two_task_processes_mid_stream(cluster: Cluster, infra: Infra) -> None:
    cluster.start_module("task", name="task_2")
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"flow{uuid.uuid4().hex[:8]}")
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5))
        texts = [f"m{n}" for n in range(600)]
        sender = asyncio.create_task(api.push_room_many(token, room, texts, concurrency=8))
        await eventually(lambda: len(_texts(ws)) >= 100, 30, "messages flowing")
        victim = lease_holder(cluster, db)  # the one that delivers; task_2 waits as its standby
        held = await _kill_while_holding_entries(victim, db)
        await sender
        received = await _collect(api, db, token, room, ws)
        await ws.close()
    print(f"task SIGKILL: it held {held} unacknowledged entries")
    missing = set(texts) - set(received)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert len(received) == len(texts), f"{len(received) - len(texts)} duplicates"
    assert any(p.running() for p in cluster.processes("task") + cluster.processes("task_2"))


async def test_messages_a_dead_consumer_held_are_taken_over(cluster: Cluster, infra: Infra) -> None:
    """A task that read entries and died before acknowledging them: another task delivers them."""
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    tasks = [p for p in cluster.system.modules if p.name.startswith("task") and p.running()]
    assert tasks
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"ghost{uuid.uuid4().hex[:8]}")
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5))
        for process in tasks:
            process.signal(signal.SIGSTOP)
        try:
            texts = [f"held{n}" for n in range(20)]
            await api.push_room_many(token, room, texts, concurrency=4)
            # a consumer that takes everything and dies without acknowledging
            taken = db.xreadgroup("gochat_task", "ghost", {"gochat_stream": ">"}, count=1000)
            # (a stopped task's blocking read may already hold one or two: those it delivers itself)
            assert taken and len(taken[0][1]) >= len(texts) - len(tasks)
        finally:
            for process in tasks:
                process.signal(signal.SIGCONT)
        received = await _collect(api, db, token, room, ws)
        await ws.close()
    assert sorted(received) == sorted(texts)
    # the marker's own entry is acknowledged once task has its Deliver reply, just after the frame
    await eventually(lambda: db.xpending(STREAM, GROUP)["pending"] == 0, 10, "nothing left pending")


async def test_pushes_are_held_back_while_task_drains_and_queued_while_it_is_stopped(
    cluster: Cluster, infra: Infra
) -> None:
    """Backpressure: over the backlog limit a push waits for task; with task stopped it does not
    wait (that would only slow every sender down): the messages wait in the queue instead."""
    tasks = [p for p in cluster.system.modules if p.name.startswith("task") and p.running()]
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"held{uuid.uuid4().hex[:8]}")
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5))
        waits_before = scrape(cluster, "logic").get("gochat_admission_wait_seconds_count", 0)
        burst = [f"burst{n}" for n in range(300)]
        await api.push_room_many(token, room, burst, concurrency=16)
        assert scrape(cluster, "logic")["gochat_admission_wait_seconds_count"] > waits_before
        for process in tasks:
            process.signal(signal.SIGSTOP)
        try:
            stopped = [f"stopped{n}" for n in range(40)]
            await asyncio.wait_for(api.push_room_many(token, room, stopped, concurrency=4), 20)
        finally:
            for process in tasks:
                process.signal(signal.SIGCONT)
        texts = burst + stopped
        received = await _collect(api, db, token, room, ws)
        await ws.close()
    assert sorted(received) == sorted(texts)
