"""Turns queue entries into per-node delivery batches and reports which entries are done.

A private message (op 2) goes to the nodes recorded for its target, and a copy of it (an echo)
to the nodes recorded for its sender, for the sender's other v2 sockets; room frames (ops 3 to 5)
go to every node, once each; a v2 event goes where its target, a user or a room, is.  All of a
batch's entries for one node travel in one Deliver call, and the calls to different nodes run
concurrently, each with a deadline.  An entry is done when every node it went to accepted it, or
when its target is on no known node (an offline user); an entry a node failed to take stays
pending and is delivered again later, and the connect node drops the repeat by message id.

A node that refuses connections (gRPC UNAVAILABLE: the process or its host is gone) is routed
around at once, not only when its etcd lease ends seconds later: its clients are reconnecting
to other nodes, where they resume by ``since`` and drop repeats by id, and messages held back for
a dead node would reach them late and out of order.  It is routed to again as soon as it registers
anew (restarted: clients may be joining it, and they must get every message queued after their
join) and otherwise tried again every ``reprobe`` seconds.  A node that is merely slow (a
deadline) is not routed around: its clients are still there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from gochat_py.logs import kv
from gochat_py.metrics import DELIVERED, RPC_SECONDS
from gochat_py.protocol.frames import (
    OP_ROOM_COUNT_SEND,
    OP_ROOM_INFO_SEND,
    OP_ROOM_SEND,
    OP_SINGLE_SEND,
    room_count_body,
    room_info_body,
)
from gochat_py.protocol.queue_message import OP_DISCONNECT_USER, OP_V2_EVENT, QueueMessage
from gochat_py.queue import Entry
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.rpc.client import ConnectClients

log = logging.getLogger("gochat.task")
MSG_VERSION = 1
# One Deliver call carries at most this much frame data (several calls in order when a batch holds
# more, e.g. member lists of big rooms): far below gRPC's 16 MiB message limit, whose excess would
# fail the call, and with it every message of the batch, on every retry.
MAX_CALL_BYTES = 4 * 1024 * 1024
MAX_FRAME_BYTES = 15 * 1024 * 1024  # a frame this large cannot go in any call: dropped, and said
ITEM_OVERHEAD = 64  # a Delivery's bytes besides its body (ids, op, protobuf tags), roughly


@dataclass
class RouteStats:
    """Counters for the periodic summary line (no log line per message)."""

    delivered: int = 0
    offline: int = 0
    undecodable: int = 0
    too_large: int = 0
    failed_calls: int = 0
    by_op: dict[int, int] = field(default_factory=lambda: defaultdict(int))


def frame_body(message: QueueMessage) -> bytes | None:
    """The bytes every target socket receives, or None for an op nobody knows."""
    if message.op == OP_DISCONNECT_USER:
        return b"logged out"  # the close reason
    if message.op in (OP_SINGLE_SEND, OP_ROOM_SEND, OP_V2_EVENT):
        return message.msg or b""
    if message.op == OP_ROOM_COUNT_SEND:
        return room_count_body(message.count)
    if message.op == OP_ROOM_INFO_SEND:
        return room_info_body(message.room_id, message.room_user_info)
    return None


class Router:
    def __init__(
        self,
        clients: ConnectClients,
        timeout: float,
        reprobe: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.timeout = timeout
        self.reprobe = reprobe
        self.clock = clock
        self.stats = RouteStats()
        # server id -> (when it last refused a connection, its registration then): routed around
        # until ``reprobe`` later, or until it registers again
        self._unreachable: dict[str, tuple[float, int]] = {}
        # server id -> calls that failed since it last took a batch: one log line per bad spell of a
        # node, not one per batch (a dead node fails every batch until its lease expires)
        self._failing: dict[str, int] = {}

    def plan(
        self, entries: list[Entry], nodes: dict[str, str]
    ) -> tuple[dict[str, list[pb.Delivery]], dict[str, set[str]]]:
        """Per-node delivery lists and, per entry id, the server ids it must reach."""
        batches: dict[str, list[pb.Delivery]] = defaultdict(list)
        targets: dict[str, set[str]] = {}
        for entry in entries:
            message = entry.message
            body = frame_body(message) if message else None
            if message is None or body is None:
                self.stats.undecodable += 1
                reason = entry.error or (f"unknown op {message.op}" if message else "undecodable")
                log.warning("dropping queue entry", extra=kv(id=entry.id, error=reason))
                targets[entry.id] = set()
                continue
            if len(body) > MAX_FRAME_BYTES:
                self.stats.too_large += 1
                log.warning(
                    "dropping queue entry: its frame is too large to deliver",
                    extra=kv(id=entry.id, op=message.op, room_id=message.room_id, bytes=len(body)),
                )
                targets[entry.id] = set()
                continue
            self.stats.by_op[message.op] += 1
            msg = pb.Msg(ver=MSG_VERSION, op=message.op, seq_id=entry.id, body=body)
            if message.op == OP_DISCONNECT_USER:
                # rare, and the user may have sockets anywhere: every node closes its own
                delivery = pb.Delivery(user_id=message.user_id, msg=msg, disconnect=True)
                for server_id in nodes:
                    batches[server_id].append(delivery)
                targets[entry.id] = set(nodes)
            elif message.op == OP_SINGLE_SEND or (message.op == OP_V2_EVENT and message.user_id):
                # every node holding a socket of the user (phone and desktop on different nodes)
                servers = message.server_id if entry.servers is None else entry.servers
                holders = {sid for sid in servers.split(",") if sid in nodes}
                delivery = pb.Delivery(user_id=message.user_id, msg=msg)
                for server_id in holders:
                    batches[server_id].append(delivery)
                echoed = self._echo(entry, msg, nodes, batches) if message.op == OP_SINGLE_SEND else set()
                if not holders and not echoed:
                    self.stats.offline += 1
                targets[entry.id] = holders | echoed
            else:
                delivery = pb.Delivery(room_id=message.room_id, msg=msg)
                for server_id in nodes:
                    batches[server_id].append(delivery)
                targets[entry.id] = set(nodes)
        return batches, targets

    @staticmethod
    def _echo(entry: Entry, msg: pb.Msg, nodes: dict[str, str], batches: dict[str, list[pb.Delivery]]) -> set[str]:
        """The copy of a private message for its sender's v2 sockets, to the nodes logic recorded
        for the sender; the node the message came from is told which socket sent it (that one
        has the send's reply and is skipped).  The nodes it went to."""
        if not entry.echo_user or not entry.echo_servers:
            return set()
        number, _, origin_server = entry.origin.partition("@")
        origin = int(number) if number.isdigit() and origin_server else 0
        senders = {sid for sid in entry.echo_servers.split(",") if sid in nodes}
        for server_id in senders:
            skip = origin if server_id == origin_server else 0
            batches[server_id].append(pb.Delivery(user_id=entry.echo_user, msg=msg, echo=True, origin=skip))
        return senders

    async def deliver(self, entries: list[Entry]) -> list[str]:
        """Delivers what it can; returns the ids that may be acknowledged."""
        nodes = self.clients.by_server_id()
        registrations = self.clients.registrations()
        for server_id, (_, registered) in list(self._unreachable.items()):
            if server_id not in nodes or registrations.get(server_id) != registered:
                del self._unreachable[server_id]  # its lease ended (gone for good), or it came back
        now = self.clock()
        for server_id, (since, _) in self._unreachable.items():
            if now - since < self.reprobe:
                nodes.pop(server_id, None)
        for server_id in [sid for sid in self._failing if sid not in nodes]:
            log.info(
                "failing connect node left", extra=kv(server_id=server_id, failed_calls=self._failing.pop(server_id))
            )
        batches, targets = self.plan(entries, nodes)
        server_ids = list(batches)
        results = await asyncio.gather(
            *(self._send(sid, nodes[sid], batches[sid]) for sid in server_ids), return_exceptions=True
        )
        taken = {
            sid: result if isinstance(result, set) else set() for sid, result in zip(server_ids, results, strict=True)
        }
        done = [entry_id for entry_id, need in targets.items() if all(entry_id in taken[sid] for sid in need)]
        self.stats.delivered += len(done)
        ops = {entry.id: entry.message.op for entry in entries if entry.message}
        for entry_id in done:
            if entry_id in ops:
                DELIVERED.labels(ops[entry_id]).inc()
        return done

    async def _send(self, server_id: str, address: str, items: list[pb.Delivery]) -> set[str]:
        """The node's items in calls of at most MAX_CALL_BYTES, in order; the ids it took.  After a
        failed call the rest of this batch is not sent either: it would overtake the messages that
        failed, which are delivered again later (later batches can still overtake them, as before:
        a node that fails calls is either gone soon, by its lease, or back soon)."""
        taken: set[str] = set()
        for chunk in call_chunks(items):
            if not await self._call(server_id, address, chunk):
                break
            taken.update(item.msg.seq_id for item in chunk)
        return taken

    async def _call(self, server_id: str, address: str, items: list[pb.Delivery]) -> bool:
        try:
            with RPC_SECONDS.labels("Deliver").time():
                await self.clients.stub(address).Deliver(pb.DeliverRequest(items=items), timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            self.stats.failed_calls += 1
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                if server_id not in self._unreachable:
                    log.warning(
                        "connect node unreachable: routing around it until it answers (its clients resume elsewhere)",
                        extra=kv(server_id=server_id, address=address),
                    )
                self._unreachable[server_id] = (self.clock(), self.clients.registrations().get(server_id, 0))
                self.clients.reset(address)  # when it is back, the next call must not wait out a backoff
            self._failing[server_id] = self._failing.get(server_id, 0) + 1
            if self._failing[server_id] == 1:
                log.warning(
                    "connect node did not take a batch; its messages stay queued and are retried",
                    extra=kv(server_id=server_id, address=address, items=len(items), error=exc.code().name),
                )
            return False
        self._unreachable.pop(server_id, None)
        if server_id in self._failing:
            log.info(
                "connect node takes batches again",
                extra=kv(server_id=server_id, failed_calls=self._failing.pop(server_id)),
            )
        return True


def call_chunks(items: list[pb.Delivery]) -> list[list[pb.Delivery]]:
    """Consecutive runs of items of at most MAX_CALL_BYTES each (an item larger than that alone)."""
    chunks: list[list[pb.Delivery]] = [[]]
    size = 0
    for item in items:
        cost = len(item.msg.body) + ITEM_OVERHEAD
        if chunks[-1] and size + cost > MAX_CALL_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += cost
    return chunks if chunks[0] else []
