"""``gochat-py bench replica-wait``: what ``[redis] wait_replicas`` costs a push.

Starts its own primary and replica (redis-server, loopback, throw-away folders) and times the
step a push spends in Redis, logic's enqueue (``MessageQueue.enqueue_many``, one private message
with its hot stores, as logic sends it), without and with ``WAIT 1`` after it, one push at a time
and with several in flight.  Prints one JSON summary; nothing else of gochat-py needs to run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from gochat_py.config import QueueSettings, RedisSettings
from gochat_py.launcher import redis_process
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import Keeping, MessageQueue, Outgoing, ReplicaWait, ReplicaWaitError
from gochat_py.storage.redis import make_redis

ROUNDS = 4
CAP = QueueSettings().max_backlog + 1  # how far logic has the queue's unread entries counted
FAST_SYNC = ("--repl-diskless-sync-delay", "0")  # the first sync at once, not after 5 s
BODY = b'{"code":0,"msg":"hello there","fromUserId":1,"fromUserName":"ann","toUserId":2,"op":2}'


def add_replica_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pushes", type=int, default=3000, help="pushes timed per variant (default 3000)")
    parser.add_argument(
        "--concurrency", default="1,16", help="comma-separated numbers of pushes in flight (default 1,16)"
    )
    parser.add_argument("--wait-timeout", type=int, default=500, help="WAIT's timeout in ms (default 500)")


def _loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _outgoing(n: int) -> Outgoing:
    return Outgoing(
        QueueMessage(op=2, user_id=2, msg=BODY),
        holders_key="gochat_bench_holders",
        keep_in=("gochat_bench_inbox", f"gochat_bench_pair_{n % 50}"),
        body=BODY,
        mark_key="gochat_bench_cursor",
    )


async def _time_pushes(queue: MessageQueue, pushes: int, concurrency: int, durable: bool) -> dict[str, Any]:
    latencies: list[float] = []
    refused: list[str] = []
    counter = iter(range(pushes))

    async def pusher() -> None:
        for n in counter:
            start = time.perf_counter()
            try:
                await queue.enqueue_many([_outgoing(n)], cap=CAP, durable=durable)
            except ReplicaWaitError as exc:
                if not refused:
                    replication = await queue.redis.info("replication")
                    print(f"refused: {exc}; replication: {replication}", file=sys.stderr)
                refused.append(str(exc))
                continue
            latencies.append(time.perf_counter() - start)

    started = time.perf_counter()
    await asyncio.gather(*(pusher() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "wait_replicas": 1 if durable else 0,
        "concurrency": concurrency,
        "latencies": latencies,
        "refused": len(refused),
        "elapsed": elapsed,
    }


def _merged(runs: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = sorted(x for run in runs for x in run["latencies"])
    elapsed = sum(run["elapsed"] for run in runs)

    def ms(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000, 3)

    return {
        "wait_replicas": runs[0]["wait_replicas"],
        "concurrency": runs[0]["concurrency"],
        "pushes": len(latencies) + sum(run["refused"] for run in runs),
        "refused": sum(run["refused"] for run in runs),
        "p50_ms": ms(0.5),
        "p90_ms": ms(0.9),
        "p99_ms": ms(0.99),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 3),
        "pushes_per_s": round(len(latencies) / elapsed),
    }


async def _measure(primary: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    redis = make_redis(RedisSettings(address=primary))
    try:
        await redis.flushall()
        queue = MessageQueue(
            redis,
            QueueSettings(stream="gochat_bench_stream", group="gochat_bench_group"),
            Keeping(1000, 600, "gochat_bench_since"),
            replica_wait=ReplicaWait(1, args.wait_timeout),
        )
        await queue.ensure_group()
        await _time_pushes(queue, 300, 1, True)  # warm-up: scripts loaded, pool filled
        rows = []
        for concurrency in [int(c) for c in args.concurrency.split(",") if c.strip()]:
            # the two variants take turns, a slice of the pushes each, so a change of the machine's
            # load in the meantime weighs on both alike
            runs: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
            for _ in range(ROUNDS):
                for durable in (False, True):
                    runs[durable].append(await _time_pushes(queue, args.pushes // ROUNDS, concurrency, durable))
                    await redis.delete("gochat_bench_stream")
                    await queue.ensure_group()
            rows += [_merged(runs[False]), _merged(runs[True])]
        return rows
    finally:
        await redis.aclose()


def _wait_in_sync(primary: str, timeout: float = 30) -> None:
    async def check() -> bool:
        client = Redis.from_url(f"redis://{primary}/0")
        try:
            info = await client.info("replication")
        finally:
            await client.aclose()
        return info.get("slave0", {}).get("state") == "online"

    deadline = time.monotonic() + timeout
    while not asyncio.run(check()):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not finish its first sync")
        time.sleep(0.1)


def replica_wait_main(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="gochat-bench-wait-") as folder:
        root = Path(folder)
        primary, replica = f"127.0.0.1:{_loopback_port()}", f"127.0.0.1:{_loopback_port()}"
        with (root / "redis.log").open("a") as log:
            processes = [
                redis_process(primary, root / "primary", log, FAST_SYNC),
                redis_process(
                    replica, root / "replica", log, (*FAST_SYNC, "--replicaof", *primary.split(":")), "replica"
                ),
            ]
            try:
                for process in processes:
                    process.start().wait_ready(30)
                _wait_in_sync(primary)
                rows = asyncio.run(_measure(primary, args))
            finally:
                for process in reversed(processes):
                    process.stop()
    print(json.dumps({"mode": "replica-wait", "wait_timeout_ms": args.wait_timeout, "runs": rows}, indent=1))
    return 0 if not any(row["refused"] for row in rows) else 1
