"""What every connect node shares, whatever its sockets: hub, gRPC server, etcd, logic client.

The front end (websocket or TCP) plugs in with :meth:`ConnectNode.join` and
:meth:`ConnectNode.leave`, so the two speak to logic and to the hub the same way.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1.health import aio as grpc_health_aio

from gochat_py import metrics
from gochat_py.config import ConnectNodeSettings, Settings
from gochat_py.connect.dedup import RecentIds
from gochat_py.connect.hub import WITH_ID, Channel, Hub, Key
from gochat_py.connect.pacing import Pacer, Probe
from gochat_py.connect.service import ConnectService, unchanged
from gochat_py.discovery import Node, Registration, ServiceWatcher, advertised_address, make_etcd_client
from gochat_py.health import PEER_SHARE, Health
from gochat_py.logs import kv
from gochat_py.protocol.frames import OP_SINGLE_SEND, history_gap_body
from gochat_py.protocol.message_id import format_id, parse_id, with_id
from gochat_py.protocol.v2 import encode as encode_v2
from gochat_py.protocol.v2 import encode_welcome
from gochat_py.protocol.v2_events import message_event
from gochat_py.protocol.v2_messages import Gap, Limits
from gochat_py.rpc import connect_pb2_grpc
from gochat_py.rpc import logic_pb2 as logic_pb
from gochat_py.rpc.client import SERVER_OPTIONS, LogicClient, RpcError
from gochat_py.rpc.credentials import add_port, load_rpc_tls
from gochat_py.rpc.health import add_health_service
from gochat_py.rpc.push_batcher import PushBatcher
from gochat_py.token_buckets import TokenBuckets

log = logging.getLogger("gochat.connect")
# server type -> its settings section, named when its advertised address is refused
SECTIONS = {"ws": "connect_websocket", "tcp": "connect_tcp"}


@dataclass(frozen=True, slots=True)
class Refusal:
    """A join that failed: ``retry`` is True when the fault is ours (logic unreachable)."""

    reason: str
    retry: bool


class ConnectNode:
    def __init__(
        self,
        settings: Settings,
        node_settings: ConnectNodeSettings,
        server_type: str,
        encode: Callable[[bytes], bytes] = unchanged,
        probe: Probe | None = None,
    ) -> None:
        """``probe`` pings a channel (websocket); a node without one is not paced."""
        self.settings = settings
        self.node_settings = node_settings
        self.server_type = server_type
        self.server_id = node_settings.server_id or f"{server_type}-{uuid.uuid4()}"
        self.hub = Hub(settings.connect.buckets)
        self.tls = load_rpc_tls(settings.rpc)
        etcd_settings = settings.etcd
        self._etcd = make_etcd_client(etcd_settings)
        self._logic_nodes = ServiceWatcher(self._etcd, etcd_settings, etcd_settings.logic_service)
        self.logic = LogicClient(self._logic_nodes, settings.rpc, self.tls)
        self._server = grpc.aio.server(options=SERVER_OPTIONS)
        self.encode = encode
        self.service = service = ConnectService(self.hub, RecentIds(settings.connect.dedup_window), encode)
        cs = settings.connect
        self.pacer: Pacer | None = None
        if probe is not None and cs.pace_lag > 0:
            self.pacer = Pacer(cs.pace_lag, cs.pace_max_hold, cs.pace_sample, probe, service.last_channels)
            service.pacer = self.pacer
        connect_pb2_grpc.add_ConnectServicer_to_server(service, self._server)
        self._registration: Registration | None = None
        self._grpc_health: grpc_health_aio.HealthServicer | None = None
        # Joins and leaves come in bursts (a node restart, a network blip): a bounded number in
        # flight keeps logic and Redis answering, the rest wait their turn here.
        self._logic_slots = asyncio.Semaphore(settings.connect.logic_concurrency)
        # protocol v2: sends from every socket of the node gathered into PushBatch calls, limited
        # per user as the api limits /push/* per session
        self.batcher = PushBatcher(self.logic)
        self.push_limits = TokenBuckets(settings.api.push_user_rate, settings.api.push_user_burst)
        self.v2_channels: set[Channel] = set()
        self._tags = itertools.count(1)  # a v2 socket's number here (Channel.tag)
        self._session_checks: asyncio.Task[None] | None = None

    def limits(self, frame_size: int) -> Limits:
        """What a v2 socket of this node may do (its welcome says so)."""
        cs, api = self.settings.connect, self.settings.api
        return Limits(
            rooms=cs.max_rooms,
            message_length=api.max_message_length,
            frame_size=frame_size,
            publish_rate=api.push_user_rate,
            publish_burst=api.push_user_burst,
        )

    async def start(self) -> None:
        """Serves task's RPCs and registers in etcd; the front end opens its sockets after this."""
        port = add_port(self._server, self.node_settings.rpc_bind, self.tls)
        # before anything starts: an address nobody can dial refuses start-up (a ConfigError)
        address = advertised_address(
            self.node_settings.rpc_bind, self.node_settings.rpc_advertise, port, SECTIONS[self.server_type]
        )
        await self._logic_nodes.start()
        self._grpc_health = await add_health_service(self._server)
        await self._server.start()
        if self.pacer is not None:
            self.pacer.start()
        etcd_settings = self.settings.etcd
        self._registration = Registration(
            self._etcd,
            etcd_settings,
            etcd_settings.connect_service,
            Node(address, self.server_id, self.server_type, self.node_settings.public_url),
        )
        try:
            await self._registration.start()
        except Exception:
            await self._server.stop(None)
            raise
        self._session_checks = asyncio.create_task(self._check_sessions(), name="session-checks")

    def health(self, module: str) -> Health:
        """Readiness of a connect node: registered in etcd (task routes to it), and a logic node
        reachable (joins are checked there)."""

        async def registered() -> str:
            if self._registration is None:
                raise RuntimeError("not registered in etcd (starting or stopping)")
            return await self._registration.check()

        async def logic_reachable() -> str:
            return f"reachable at {await self.logic.reachable(self.settings.metrics.probe_timeout * PEER_SHARE)}"

        return Health(module, {"etcd": registered, "logic": logic_reachable})

    async def deregister(self) -> None:
        """First step of shutdown: task stops routing here while the sockets are closed."""
        if self._grpc_health is not None:
            await self._grpc_health.enter_graceful_shutdown()
        if self._registration:
            await self._registration.stop()
            self._registration = None

    async def stop(self) -> None:
        if self._session_checks is not None:
            self._session_checks.cancel()
        await self.deregister()
        if self.pacer is not None:
            await self.pacer.stop()
        await self._server.stop(grace=2)
        await self._logic_nodes.stop()
        await self.logic.close()
        await self._etcd.close()

    async def join(
        self, auth_token: str, room_id: int, make: Callable[[int, str], Channel], since: str | None = None
    ) -> Channel | Refusal:
        """Authenticates through logic and puts a new channel in the hub.

        The channel is in the hub before logic records the join, because recording it broadcasts
        the room's member list, and the newcomer must receive that frame too.  Until logic's reply
        is here its frames are held: the backlog in the reply (what the socket missed, see
        ``since``; private messages that waited while the user had no socket open) goes first.
        """
        auth = await self._ask("CheckAuth", logic_pb.CheckAuthRequest(auth_token=auth_token))
        if isinstance(auth, Refusal):
            metrics.JOINS_REFUSED.inc()
            return auth
        channel = make(auth.user_id, auth.user_name)
        channel.ids = since is not None
        self.hub.put(channel)
        self.hub.hold(channel)
        request = logic_pb.ConnectRequest(
            auth_token=auth_token,
            room_id=room_id,
            server_id=self.server_id,
            resume=since is not None,
            since=since or "",
        )
        reply = await self._ask("Connect", request)
        if isinstance(reply, Refusal) or reply.user_id != channel.user_id:
            self.hub.remove(channel)  # logic unreachable, or the session ended in between
            metrics.JOINS_REFUSED.inc()
            return reply if isinstance(reply, Refusal) else Refusal("authentication failed", retry=False)
        self._catch_up(channel, reply)
        metrics.JOINS.inc()
        metrics.CONNECTIONS.inc()
        return channel

    def _catch_up(self, channel: Channel, reply: logic_pb.ConnectReply) -> None:
        """Writes the gap notice and the backlog, then the frames held meanwhile, less the kept
        messages the backlog has.

        A socket that resumed drops every kept message up to ``backlog_end`` (it has them from
        the backlog, or from before ``since``), now and when task delivers one late.  A v1 socket
        drops only the backlog's own messages: it sees live frames as it always did.
        """
        held = self.hub.release(channel)
        out: list[bytes] = []
        if channel.ids and reply.gap:
            out.append(self.encode(history_gap_body(reply.gap)))
        sent: set[Key] = set()
        for message in reply.backlog:
            try:
                out.append(self.encode(with_id(message.body, message.id) if channel.ids else message.body))
            except ValueError:
                continue  # too large for this transport (a TCP frame)
            if message.op == OP_SINGLE_SEND:
                self.service.note_private(channel.user_id, message.id)
            if (key := parse_id(message.id)) is not None:
                sent.add(key)
        metrics.BACKLOG_SENT.inc(len(reply.backlog))
        end = parse_id(reply.backlog_end) if channel.ids and reply.backlog_end else None
        if end is not None:
            end = self.hub.interned(end)
        for entry in held:
            if isinstance(entry, bytes):
                out.append(entry)
            elif end is not None:
                out.append(entry.after(end, WITH_ID))
            elif sent:
                out.append(entry.without(sent))
            else:
                out.append(entry.with_ids if channel.ids else entry.data)
        channel.floor = end  # task may still deliver some of the backlog late
        if out:
            channel.push(b"".join(out))

    async def _ask(self, method: str, request: object) -> Any:
        """A logic reply with code 0 and a user, or the Refusal to close the socket with."""
        try:
            async with self._logic_slots:
                reply = await self.logic.call(method, request)
        except RpcError as exc:
            return Refusal(f"logic unavailable: {exc}", retry=True)
        if reply.code != 0 or reply.user_id <= 0:
            return Refusal(reply.message or "authentication failed", retry=False)
        return reply

    async def leave(self, channel: Channel) -> None:
        self.hub.remove(channel)
        self.v2_channels.discard(channel)
        metrics.CONNECTIONS.dec()
        delivered = self.service.last_private
        last = delivered.get(channel.user_id)
        if last is not None and not self.hub.channels_of_user(channel.user_id):
            del delivered[channel.user_id]
        rooms = sorted(channel.rooms) if channel.version == 2 else []
        await asyncio.gather(*(self._disconnect(channel, room_id) for room_id in rooms))
        await self._disconnect(channel, channel.room_id, format_id(last) if last else "")

    async def _disconnect(self, channel: Channel, room_id: int, last_private_id: str = "") -> None:
        request = logic_pb.DisconnectRequest(
            room_id=room_id,
            user_id=channel.user_id,
            server_id=self.server_id,
            last_private_id=last_private_id,
        )
        try:
            async with self._logic_slots:
                await self.logic.call("Disconnect", request)
        except RpcError as exc:
            # Logic's reaper corrects the room state if this node dies before it can tell.
            log.warning("disconnect not recorded", extra=kv(user_id=channel.user_id, error=str(exc)))

    # -- protocol v2 ------------------------------------------------------------------------------

    async def hello(
        self, auth_token: str, since: str | None, make: Callable[[int, str], Channel], limits: Limits
    ) -> Channel | Refusal:
        """A v2 socket's start: as :meth:`join` in no room, and the welcome goes first."""
        auth = await self._ask("CheckAuth", logic_pb.CheckAuthRequest(auth_token=auth_token))
        if isinstance(auth, Refusal):
            metrics.JOINS_REFUSED.inc()
            return auth
        channel = make(auth.user_id, auth.user_name)
        channel.auth_token = auth_token
        channel.tag = next(self._tags)
        self.hub.put(channel)
        self.hub.hold(channel)
        request = logic_pb.ConnectRequest(
            auth_token=auth_token, room_id=0, server_id=self.server_id, resume=True, since=since or ""
        )
        reply = await self._ask("Connect", request)
        if isinstance(reply, Refusal) or reply.user_id != channel.user_id:
            self.hub.remove(channel)
            metrics.JOINS_REFUSED.inc()
            return reply if isinstance(reply, Refusal) else Refusal("authentication failed", retry=False)
        welcome = encode_welcome(channel.user_id, channel.user_name, int(time.time() * 1000), limits)
        self._catch_up_v2(channel, reply, 0, welcome)
        self.v2_channels.add(channel)
        metrics.JOINS.inc()
        metrics.CONNECTIONS.inc()
        return channel

    async def subscribe(self, channel: Channel, room_id: int, since: str | None, result: Callable[..., bytes]) -> str:
        """Puts a v2 channel in a room; "" when done (``result(members)`` went out first, then the
        room's backlog), else why not: "unavailable" or "session ended"."""
        self.hub.subscribe(channel, room_id)
        self.hub.hold(channel)
        request = logic_pb.ConnectRequest(
            auth_token=channel.auth_token,
            room_id=room_id,
            server_id=self.server_id,
            resume=True,
            since=since or "",
            subscribe=True,
        )
        reply = await self._ask("Connect", request)
        if isinstance(reply, Refusal) or reply.user_id != channel.user_id:
            self.hub.unsubscribe(channel, room_id)
            for entry in self.hub.release(channel):  # what came meanwhile for its other rooms
                channel.push(entry if isinstance(entry, bytes) else channel.render(entry))
            if isinstance(reply, Refusal) and reply.retry:
                # logic may have recorded it and lost the reply: undo, or the room counts us for ever
                await self._disconnect(channel, room_id)
                return "unavailable"
            return "session ended"
        self._catch_up_v2(channel, reply, room_id, result(dict(reply.members)))
        return ""

    async def unsubscribe(self, channel: Channel, room_id: int) -> None:
        if room_id in channel.rooms:
            self.hub.unsubscribe(channel, room_id)
            await self._disconnect(channel, room_id)

    def _catch_up_v2(self, channel: Channel, reply: logic_pb.ConnectReply, room_id: int, first: bytes) -> None:
        """:meth:`_catch_up` for a v2 socket, for one target: the room subscribed to, or (0) its
        private messages at the hello.  ``first`` (the welcome, a subscribe's result) goes first."""
        held = self.hub.release(channel)
        out = [self.encode(first)]
        if reply.gap:
            out.append(self.encode(encode_v2(Gap(room=room_id or None, reason=reply.gap))))  # type: ignore[arg-type]
        for message in reply.backlog:
            event = message_event(message.body, message.id, channel.user_id)
            if event is None:
                continue
            try:
                out.append(self.encode(event))
            except ValueError:
                continue  # too large for this transport (a TCP frame)
            if message.op == OP_SINGLE_SEND:
                self.service.note_private(channel.user_id, message.id)
        metrics.BACKLOG_SENT.inc(len(reply.backlog))
        end = parse_id(reply.backlog_end)
        if end is not None:
            end = self.hub.interned(end)
        # before the held runs: they are rendered with it
        if room_id == 0:
            channel.floor = end
        elif isinstance(channel.rooms, dict) and room_id in channel.rooms:
            channel.rooms[room_id] = end
        out.extend(entry if isinstance(entry, bytes) else channel.render(entry) for entry in held)
        channel.push(b"".join(out))

    async def _check_sessions(self) -> None:
        """Ends v2 sockets whose session ended without a logout (the user logged in elsewhere, the
        session was deleted): a logout closes them at once, this finds the rest.  Checking a
        session renews it, as any use of its token does: an open socket keeps its session alive."""
        interval, chunk = self.settings.connect.session_check, 1000
        while True:
            await asyncio.sleep(interval)
            channels = [c for c in self.v2_channels if not c.closed]
            for start in range(0, len(channels), chunk):
                batch = channels[start : start + chunk]
                request = logic_pb.CheckSessionsRequest(auth_tokens=[c.auth_token for c in batch])
                try:
                    reply = await self.logic.call("CheckSessions", request)
                except RpcError as exc:
                    log.warning("sessions not checked", extra=kv(sockets=len(batch), error=str(exc)))
                    break
                ended = [c for c, live in zip(batch, reply.live, strict=False) if not live]
                for channel in ended:
                    channel.close("session ended")
                if ended:
                    log.info("closed sockets of ended sessions", extra=kv(sockets=len(ended)))
