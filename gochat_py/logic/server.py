"""Runs the logic module: gRPC server, etcd registration, dead-node reaper."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import grpc
from redis.exceptions import RedisError

from gochat_py.config import Settings
from gochat_py.discovery import Node, Registration, ServiceWatcher, advertised_address, make_etcd_client
from gochat_py.health import Health, database_check, redis_check
from gochat_py.logic.admission import Admission
from gochat_py.logic.history import HistoryReader
from gochat_py.logic.member_lists import MemberLists
from gochat_py.logic.passwords import Passwords
from gochat_py.logic.reaper import reap_dead_nodes
from gochat_py.logic.service import LogicService
from gochat_py.logic.sessions import SessionStore
from gochat_py.logic.users import UserStore
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.queue import Keeping, MessageQueue, ReplicaWait
from gochat_py.rpc import logic_pb2_grpc
from gochat_py.rpc.client import SERVER_OPTIONS
from gochat_py.rpc.credentials import add_port, load_rpc_tls
from gochat_py.rpc.health import add_health_service
from gochat_py.runtime import wait_for_stop_signal
from gochat_py.storage.archive import Archive
from gochat_py.storage.database_identity import keep_cluster_database, open_cluster_database
from gochat_py.storage.history import SINCE_KEY, HotHistory
from gochat_py.storage.redis import make_redis

log = logging.getLogger("gochat.logic")
DRAIN_DELAY = 0.5


async def serve(settings: Settings) -> None:
    tls = load_rpc_tls(settings.rpc)  # first: unreadable certificates refuse start-up at once
    settings.state_path.mkdir(parents=True, exist_ok=True)
    users = UserStore(settings.database_url)
    redis = make_redis(settings.redis)
    try:
        identity = await open_cluster_database(redis, users.engine, settings.database_url, "logic")
    except BaseException:
        await redis.aclose()
        await users.close()
        raise
    hs = settings.history
    replica_wait = ReplicaWait(settings.redis.wait_replicas, settings.redis.wait_timeout)
    keeping = Keeping(hs.size, hs.ttl, SINCE_KEY, settings.logic.mid_window)
    queue = MessageQueue(redis, settings.queue, keeping, replica_wait=replica_wait)
    sessions = SessionStore(redis, settings.logic.session_ttl, settings.queue.stream)
    history: HistoryReader | None = None
    if hs.enabled:
        archive = Archive(users.engine)
        hot = HotHistory(redis, hs.ttl)
        if await archive.is_empty():
            try:
                await hot.mark_complete()  # so reads below the hot stores need not ask the database
            except RedisError as exc:  # only an optimisation: Redis may come later
                log.warning("redis unavailable at start", extra=kv(error=repr(exc)))
        history = HistoryReader(hot, archive, hs.size)
    member_lists = MemberLists(sessions, queue, settings.logic.member_list_delay, settings.logic.member_list_auto_limit)
    service = LogicService(
        users,
        sessions,
        queue,
        Passwords(settings.logic.password_time_cost, settings.logic.password_memory_kib),
        member_lists,
        Admission(queue.group_state, settings.queue.max_backlog, settings.queue.max_wait, settings.queue.max_delay),
        settings.logic.max_user_name_length,
        history,
    )

    server = grpc.aio.server(options=SERVER_OPTIONS)
    logic_pb2_grpc.add_LogicServicer_to_server(service, server)
    grpc_health = await add_health_service(server)
    port = add_port(server, settings.logic.rpc_bind, tls)
    # before serving: an address nobody can dial refuses start-up (a ConfigError)
    address = advertised_address(settings.logic.rpc_bind, settings.logic.rpc_advertise, port, "logic")
    await server.start()

    etcd_settings = settings.etcd
    etcd = make_etcd_client(etcd_settings)
    registration = Registration(
        etcd, etcd_settings, etcd_settings.logic_service, Node(address, f"logic-{uuid.uuid4()}", "logic")
    )
    try:
        await registration.start()
    except Exception:
        await server.stop(None)
        raise
    connect_nodes = ServiceWatcher(etcd, etcd_settings, etcd_settings.connect_service)
    await connect_nodes.start()
    reaper = asyncio.create_task(
        reap_dead_nodes(connect_nodes, service.sessions, service.purge_node, settings.logic.node_grace)
    )
    keeper = asyncio.create_task(keep_cluster_database(redis, identity, "logic"))
    checks = {"etcd": registration.check, "redis": redis_check(redis), "database": database_check(users.engine)}
    serve_metrics(settings, "logic", Health("logic", checks))
    log.info("ready", extra=kv(rpc=address, rpc_tls=tls is not None, database=settings.database_url.split("://")[0]))

    await wait_for_stop_signal()
    log.info("stopping")
    await grpc_health.enter_graceful_shutdown()
    await registration.stop()
    # Callers learn from etcd that we are gone within moments; until then they may still send
    # calls here, which must be served rather than cut off by the stop below.
    await asyncio.sleep(DRAIN_DELAY)
    for background in (reaper, keeper):
        background.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await background
    await server.stop(grace=settings.logic.stop_grace)
    await member_lists.close()
    await connect_nodes.stop()
    await etcd.close()
    await redis.aclose()
    await users.close()
    log.info("stopped")
