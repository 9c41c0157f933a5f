"""Runs the task module: the queue consumer loop, take-over of stale entries, trimming, and the
history writer (task/archiver.py) beside it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from redis.exceptions import RedisError

from gochat_py import metrics
from gochat_py.config import Settings
from gochat_py.discovery import ServiceWatcher, make_etcd_client
from gochat_py.health import Check, Health, database_check, redis_check
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.queue import Entry, MessageQueue
from gochat_py.rpc.client import ConnectClients
from gochat_py.rpc.credentials import load_rpc_tls
from gochat_py.runtime import wait_for_stop_signal
from gochat_py.storage.archive import Archive
from gochat_py.storage.database_identity import keep_cluster_database, open_cluster_database
from gochat_py.storage.redis import make_redis
from gochat_py.storage.sql import make_engine
from gochat_py.task.archiver import HistoryWriter
from gochat_py.task.leader import Leadership
from gochat_py.task.router import Router

log = logging.getLogger("gochat.task")
STATS_INTERVAL = 60.0
REDIS_RETRY_MIN, REDIS_RETRY_MAX = 0.2, 2.0  # seconds between attempts while Redis is down
TAKEOVER_LIMIT = 100_000  # pending entries a new lease holder takes over at once, at most
LEASE_KEY = "gochat_task_lease"


class Consumer:
    def __init__(
        self,
        queue: MessageQueue,
        router: Router,
        settings: Settings,
        name: str,
        leadership: Leadership | None = None,
    ) -> None:
        """``leadership``: deliver only while this process holds the task lease (None: always)."""
        self.queue = queue
        self.router = router
        self.task_settings = settings.task
        self.name = name
        self.leadership = leadership
        self.stopping = asyncio.Event()
        # every group that reads the queue: it is trimmed only past what all of them are done with
        self.groups = [settings.queue.group] + ([settings.history.group] if settings.history.enabled else [])

    async def run(self) -> None:
        """Loops until :attr:`stopping` is set; the batch in hand is always finished first."""
        settings = self.task_settings
        claim_idle_ms = int(settings.claim_idle * 1000)
        next_claim = next_trim = next_stats = 0.0
        backoff = REDIS_RETRY_MIN
        group_ready = False
        while not self.stopping.is_set():
            try:
                if not group_ready:
                    # the history writer's group too: a trim before it existed would drop its entries
                    await self.queue.ensure_group(*self.groups[1:])
                    group_ready = True
                if not await self._may_deliver():
                    continue
                now = time.monotonic()
                if now >= next_claim:
                    next_claim = now + settings.claim_idle / 2
                    await self._process(await self.queue.claim_stale(self.name, claim_idle_ms, settings.batch_size))
                    pending, lag = await self.queue.backlog()
                    metrics.QUEUE_PENDING.set(pending)
                    metrics.QUEUE_LAG.set(lag)
                if now >= next_trim:
                    next_trim = now + settings.trim_interval
                    await self.queue.trim(self.groups)
                    await self.queue.forget_idle_consumers(idle_ms=3_600_000)
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL
                    self._log_stats()
                await self._process(await self._read_batch())
                if backoff > REDIS_RETRY_MIN:
                    log.info("redis reachable again")
                backoff = REDIS_RETRY_MIN
            except RedisError as exc:
                if backoff == REDIS_RETRY_MIN:  # one line per outage, not one per attempt
                    log.warning("redis unavailable; retrying", extra=kv(error=repr(exc)))
                group_ready = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, REDIS_RETRY_MAX)

    async def _may_deliver(self) -> bool:
        """True while this process delivers.  A standby waits; a new holder of the lease first
        delivers what its predecessor left pending, oldest first."""
        lease = self.leadership
        if lease is None:
            return True
        if not lease.leading:
            await asyncio.sleep(min(0.2, lease.ttl / 6))
            return False
        if lease.taken_over.is_set():
            lease.taken_over.clear()
            left = await self.queue.claim_stale(self.name, 0, TAKEOVER_LIMIT)
            for start in range(0, len(left), self.task_settings.batch_size):
                await self._process(left[start : start + self.task_settings.batch_size])
        return True

    async def _read_batch(self) -> list[Entry]:
        """A blocking read.  Under load (the read found more than one entry waiting) a partial
        batch waits ``linger`` seconds for more: a busy room's messages then reach each socket in
        fewer, larger writes, which costs the connect node and the clients less CPU per message.
        A lone message (a quiet system) goes at once."""
        settings = self.task_settings
        entries = await self.queue.read(self.name, settings.batch_size, settings.block_ms)
        if settings.linger and 1 < len(entries) < settings.batch_size:
            await asyncio.sleep(settings.linger)
            entries += await self.queue.read(self.name, settings.batch_size - len(entries), None)
        return entries

    async def _process(self, entries: list[Entry]) -> None:
        if entries:
            await self.queue.ack(await self.router.deliver(entries))

    def _log_stats(self) -> None:
        stats = self.router.stats
        log.info(
            "queue stats",
            extra=kv(
                delivered=stats.delivered,
                offline_targets=stats.offline,
                undecodable=stats.undecodable,
                too_large=stats.too_large,
                failed_calls=stats.failed_calls,
                nodes=len(self.router.clients.watcher.nodes),
            ),
        )


async def serve(settings: Settings) -> None:
    rpc_tls = load_rpc_tls(settings.rpc)
    redis = make_redis(settings.redis)
    archive: Archive | None = None
    identity = ""
    if settings.history.enabled:  # before discovery: a module that cannot start touches nothing
        archive = Archive(make_engine(settings.database_url))
        try:
            identity = await open_cluster_database(redis, archive.engine, settings.database_url, "task")
        except BaseException:
            await archive.close()
            await redis.aclose()
            raise
    etcd_settings = settings.etcd
    etcd = make_etcd_client(etcd_settings)
    watcher = ServiceWatcher(etcd, etcd_settings, etcd_settings.connect_service)
    await watcher.start()
    clients = ConnectClients(watcher, rpc_tls)
    name = settings.task.consumer or f"{socket.gethostname()}-{os.getpid()}"
    leadership = Leadership(redis, LEASE_KEY, name, settings.task.leader_ttl)
    consumer = Consumer(
        MessageQueue(redis, settings.queue),
        Router(clients, settings.rpc.timeout),
        settings,
        name,
        leadership,
    )
    writer: HistoryWriter | None = None
    if archive is not None:
        writer = HistoryWriter(
            MessageQueue(redis, settings.queue, group=settings.history.group), archive, settings, name
        )

    # Consuming before discovery has answered would route room messages to nobody (§12.31).
    await watcher.ready.wait()
    leadership.start()
    loop_task = asyncio.create_task(consumer.run(), name="consumer")
    loops = {loop_task}
    keeper = None
    if writer is not None:
        loops.add(asyncio.create_task(writer.run(), name="history-writer"))
        keeper = asyncio.create_task(keep_cluster_database(redis, identity, "task"))
    checks: dict[str, Check] = {"etcd": watcher.check, "redis": redis_check(redis)}
    if writer is not None:
        checks["database"] = database_check(writer.archive.engine)
    serve_metrics(settings, "task", Health("task", checks))
    log.info("ready", extra=kv(consumer=name, connect_nodes=len(watcher.nodes), history=writer is not None))

    stop = asyncio.create_task(wait_for_stop_signal())
    done, _ = await asyncio.wait({stop, *loops}, return_when=asyncio.FIRST_COMPLETED)
    for finished in done & loops:
        finished.result()  # a crash of a loop is a crash of the module: let it show
    log.info("stopping")
    consumer.stopping.set()
    if writer is not None:
        writer.stopping.set()
    _, late = await asyncio.wait(loops, timeout=settings.rpc.timeout + settings.task.block_ms / 1000 + 1)
    if late:
        log.warning("a loop did not finish in time; its entries stay pending for another task")
        for unfinished in late:
            unfinished.cancel()
    if keeper is not None:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    await leadership.stop()
    consumer._log_stats()
    if writer is not None:
        log.info("history writer stats", extra=kv(written=writer.written))
        await writer.archive.close()
    await watcher.stop()
    await clients.close()
    await etcd.close()
    await redis.aclose()
    log.info("stopped")
