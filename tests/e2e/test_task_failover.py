"""Task processes die mid-stream and nothing is lost or duplicated: the queue is at-least-once,
the connect node drops repeats."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid

import redis

from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, op_is, scrape

# A small backlog limit: every test here also runs with logic holding pushes back.
CLUSTER_ENV = {"GOCHAT_QUEUE__MAX_BACKLOG": "5"}


async def _collect(ws: WsClient, expected: set[str], timeout: float) -> list[str]:
    received: list[str] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not expected.issubset(received) and loop.time() < deadline:
        try:
            frame = await asyncio.wait_for(ws.frames.get(), max(deadline - loop.time(), 0.01))
        except TimeoutError:
            break
        body = json.loads(frame) if frame else {}
        if body.get("op") == 3:
            received.append(body["msg"])
    await asyncio.sleep(1.5)  # repeats would come after a claim_idle (1 s here): wait for them too
    while not ws.frames.empty():
        body = json.loads(ws.frames.get_nowait() or b"{}")
        if body.get("op") == 3:
            received.append(body["msg"])
    return received


async def test_kill_9_one_of_two_task_processes_mid_stream(cluster: Cluster) -> None:
    cluster.start_module("task", name="task_2")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"flow{uuid.uuid4().hex[:8]}")
        ws = await WsClient(cluster.ws_url).join(token, room)
        await ws.next_frame(op_is(5))
        texts = [f"m{n}" for n in range(600)]
        sender = asyncio.create_task(api.push_room_many(token, room, texts, concurrency=8))
        await asyncio.sleep(0.4)
        victim = cluster.processes("task")[0]
        victim.kill()
        await sender
        received = await _collect(ws, set(texts), timeout=30)
        await ws.close()
    missing = set(texts) - set(received)
    assert not missing, f"{len(missing)} lost, e.g. {sorted(missing)[:5]}"
    assert len(received) == len(texts), f"{len(received) - len(texts)} duplicates"
    assert cluster.processes("task_2")[0].running()


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
        received = await _collect(ws, set(texts), timeout=20)
        await ws.close()
    assert sorted(received) == sorted(texts)
    pending = db.xpending("gochat_stream", "gochat_task")
    assert pending["pending"] == 0, pending


async def test_pushes_are_held_back_while_task_drains_and_queued_while_it_is_stopped(cluster: Cluster) -> None:
    """Backpressure: over the backlog limit a push waits for task; with task stopped it does not
    wait (that would only slow every sender down): the messages wait in the queue instead."""
    tasks = [p for p in cluster.system.modules if p.name.startswith("task") and p.running()]
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
        received = await _collect(ws, set(texts), timeout=30)
        await ws.close()
    assert sorted(received) == sorted(texts)
