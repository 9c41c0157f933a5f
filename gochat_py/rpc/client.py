"""gRPC clients for the nodes a :class:`~gochat_py.discovery.ServiceWatcher` knows.

Every call has a deadline.  A failure to reach a node is an :class:`RpcError`, never a reply
with default values that could read as success (the original's bug).  Only a call that never
reached a node (no connection could be made) is tried again on another node, so no call runs
twice: a connection lost during a call is UNAVAILABLE too, but the node may have done the work
(a message queued), and a store outage reported by the node would fail the same way elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import grpc

from gochat_py.config import RpcSettings
from gochat_py.discovery import Node, ServiceWatcher
from gochat_py.logs import kv
from gochat_py.metrics import RPC_SECONDS
from gochat_py.rpc import connect_pb2_grpc, logic_pb2_grpc
from gochat_py.rpc.credentials import RpcTls, open_channel
from gochat_py.rpc.health import serving

log = logging.getLogger("gochat.rpc")

StubT = TypeVar("StubT")

# Kept small and explicit: big enough for a batch of frames, keepalive to notice dead peers.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
]
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


CLOSE_GRACE = 60.0  # seconds; longer than any call's deadline
# How gRPC words an UNAVAILABLE call that was never sent (it could not connect).
_NOT_SENT = ("failed to connect to all addresses", "DNS resolution failed", "empty address list")


def never_sent(exc: grpc.aio.AioRpcError) -> bool:
    """True when the call did not reach the node, so trying another node cannot run it twice."""
    details = exc.details() or ""
    return exc.code() == grpc.StatusCode.UNAVAILABLE and any(marker in details for marker in _NOT_SENT)


class RpcError(Exception):
    """A call that did not get a reply: no node, node unreachable, or deadline passed."""


class NodePool(Generic[StubT]):
    """One channel and stub per live node of a service, opened lazily, closed when it leaves."""

    def __init__(
        self,
        watcher: ServiceWatcher,
        stub_factory: Callable[[grpc.aio.Channel], StubT],
        tls: RpcTls | None = None,
    ) -> None:
        """``tls``: mutual TLS to every node (see rpc.credentials); None = plaintext."""
        self.watcher = watcher
        self._stub_factory = stub_factory
        self._tls = tls
        self._stubs: dict[str, tuple[grpc.aio.Channel, StubT]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        watcher.on_change(self._forget_gone)

    def _forget_gone(self, nodes: dict[str, Node]) -> None:
        for address in list(self._stubs):
            if address not in nodes:
                self.reset(address)

    def reset(self, address: str) -> None:
        """Closes the node's channel; the next call dials afresh.  After a failure gRPC waits out a
        reconnect backoff before it dials again, failing calls meanwhile, even once the node is
        back; a new channel dials at once."""
        entry = self._stubs.pop(address, None)
        if entry is None:
            return
        # A node that stops cleanly leaves etcd first and then answers the calls it has: closing
        # at once would cancel them (asyncio.CancelledError in the caller).  Calls in flight keep
        # the channel until they end; each has a deadline.
        task = asyncio.get_running_loop().create_task(entry[0].close(grace=CLOSE_GRACE))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def stub(self, address: str) -> StubT:
        entry = self._stubs.get(address)
        if entry is None:
            channel = open_channel(address, self._tls, CHANNEL_OPTIONS)
            entry = (channel, self._stub_factory(channel))
            self._stubs[address] = entry
        return entry[1]

    async def reachable(self, timeout: float) -> str:
        """For readiness: a live node that answers the gRPC health check within ``timeout`` (split
        between the nodes, tried in turn); raises RpcError with each node's reason otherwise."""
        nodes = list(self.watcher.nodes)
        if not nodes:
            raise RpcError(f"no {self.watcher.service} node is registered")
        errors = []
        for address in nodes:
            self.stub(address)
            channel, _ = self._stubs[address]
            try:
                await serving(channel, timeout / len(nodes))
                return address
            except grpc.aio.AioRpcError as exc:
                errors.append(f"{address}: {exc.code().name} {exc.details() or ''}".strip())
            except RuntimeError as exc:
                errors.append(f"{address}: {exc}")
        raise RpcError(f"no {self.watcher.service} node reachable ({'; '.join(errors)})")

    async def close(self) -> None:
        for channel, _ in self._stubs.values():
            await channel.close()
        self._stubs.clear()


def log_retry(method: str, attempt: int, address: str, failed_node: str, error: grpc.aio.AioRpcError) -> None:
    """One line per call tried again, when it is tried: a logic node that keeps failing shows up
    as a stream of these with its address, while calls that succeed first time log nothing."""
    log.warning(
        "retrying logic call on another node",
        extra=kv(
            method=method,
            attempt=attempt,
            node=address,
            failed_node=failed_node,
            code=error.code().name,
            error=error.details() or "",
        ),
    )


class LogicClient:
    """Calls logic: a random live node per call, as the original's RandomSelect did."""

    def __init__(self, watcher: ServiceWatcher, settings: RpcSettings, tls: RpcTls | None = None) -> None:
        self._pool = NodePool(watcher, logic_pb2_grpc.LogicStub, tls)
        self._settings = settings
        self.auth_timeout = settings.auth_timeout

    async def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        watcher = self._pool.watcher
        if not watcher.nodes:
            await watcher.wait_changed(self._settings.timeout)
        tried: set[str] = set()
        last_error = "no logic node is registered"
        failed: tuple[str, grpc.aio.AioRpcError] | None = None  # the previous attempt's node and error
        for attempt in range(1, self._settings.attempts + 1):
            candidates = [a for a in watcher.nodes if a not in tried] or list(watcher.nodes)
            if not candidates:
                break
            address = random.choice(candidates)
            tried.add(address)
            if failed is not None:
                log_retry(method, attempt, address, *failed)
            try:
                stub = self._pool.stub(address)
                with RPC_SECONDS.labels(method).time():
                    return await getattr(stub, method)(request, timeout=timeout or self._settings.timeout)
            except grpc.aio.AioRpcError as exc:
                last_error = f"logic {address}: {exc.code().name} {exc.details() or ''}".strip()
                if not never_sent(exc):
                    break
                failed = (address, exc)
        log.warning("logic call failed", extra=kv(method=method, error=last_error))
        raise RpcError(last_error)

    async def reachable(self, timeout: float) -> str:
        return await self._pool.reachable(timeout)

    async def close(self) -> None:
        await self._pool.close()


class ConnectClients(NodePool[connect_pb2_grpc.ConnectStub]):
    """Stubs of the connect nodes, addressable by the server id each node registered."""

    def __init__(self, watcher: ServiceWatcher, tls: RpcTls | None = None) -> None:
        super().__init__(watcher, connect_pb2_grpc.ConnectStub, tls)

    def by_server_id(self) -> dict[str, str]:
        return {node.server_id: address for address, node in self.watcher.nodes.items()}

    def registrations(self) -> dict[str, int]:
        """Server id -> etcd revision of its registration: a node that came back has a new one."""
        return {node.server_id: node.revision for node in self.watcher.nodes.values()}
