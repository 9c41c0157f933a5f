"""The Connect gRPC service: task's pushes, written to the sockets this node holds.

Each frame body is turned into the bytes of the node's transport once (``encode``: the TCP
framing adds its header, websocket needs nothing), and those same bytes go to every socket.

A private message's copy to its sender (a Delivery with ``echo``) goes to the sender's v2 sockets
only, less the one it was sent from, as the event the recipient gets with the recipient as the
other party.  It shares the message's id, so repeats are told apart by ``ECHO_KEY`` + id: a node
holding both the recipient and the sender drops neither as a repeat of the other.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from gochat_py.connect.dedup import RecentIds
from gochat_py.connect.hub import Channel, Hub, Item, Run
from gochat_py.connect.pacing import Pacer
from gochat_py.logs import kv
from gochat_py.metrics import FRAMES_OUT, QUEUE_TO_SOCKET
from gochat_py.protocol.frames import OP_ROOM_SEND, OP_SINGLE_SEND
from gochat_py.protocol.message_id import ZERO, parse_id, with_id
from gochat_py.protocol.queue_message import OP_V2_EVENT
from gochat_py.protocol.v2_events import message_event
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.rpc import connect_pb2_grpc

log = logging.getLogger("gochat.connect")
ECHO_KEY = "echo:"  # the prefix of an echo's id among the recent ones (RecentIds)


def unchanged(body: bytes) -> bytes:
    return body


def observe_queue_time(seq_id: str) -> None:
    """How long the server took from queue to socket: a stream entry id starts with the Redis
    clock's milliseconds.  Tells the server's share of an end-to-end latency from the client's."""
    millis, dash, _ = seq_id.partition("-")
    if dash and millis.isdigit():
        QUEUE_TO_SOCKET.observe(max(0.0, time.time() - int(millis) / 1000))


class ConnectService(connect_pb2_grpc.ConnectServicer):
    def __init__(self, hub: Hub, recent: RecentIds, encode: Callable[[bytes], bytes] = unchanged) -> None:
        self.hub = hub
        self.recent = recent
        self.encode = encode
        # set by the node when it paces (the pacer samples this service's last targets)
        self.pacer: Pacer | None = None
        self.unencodable = 0
        # user id -> newest private message (parsed id) written to a socket of theirs on this node
        self.last_private: dict[int, tuple[int, int]] = {}
        self.last_target: tuple[str, int] = ("room_id", 0)  # where the pacer's sample comes from

    def _frame(self, msg: pb.Msg, echo: bool = False) -> bytes | None:
        """The bytes to write, or None for a repeat or a body the transport cannot carry."""
        if not self.recent.first_time(ECHO_KEY + msg.seq_id if echo else msg.seq_id):
            return None
        if not echo:  # the message's own delivery tells its time
            observe_queue_time(msg.seq_id)
        try:
            return self.encode(msg.body)
        except ValueError as exc:
            self.unencodable += 1
            log.warning("frame not sent: the transport cannot carry it", extra=kv(seq_id=msg.seq_id, error=str(exc)))
            return None

    def _push(self, kind: str, target: int, run: list[tuple[pb.Msg, bytes]], origin: int = -1) -> int:
        """Writes the run's frames, joined, to the target's sockets; counts them by op.  The other
        forms (with ids, v2 events, the frames one by one) are built only while a socket needs them.
        ``origin`` >= 0: the run is an echo to user ``target``, for its v2 sockets less that one."""
        hub = self.hub
        if origin >= 0:
            return self._push_echo(target, run, origin)
        data = b"".join(frame for msg, frame in run if msg.op != OP_V2_EVENT)
        forms: Run | None = None
        if hub.id_channels or hub.holding:
            reader = target if kind == "user_id" else 0
            # v1 sockets that opted in to ids (or one catching up, which may be one) need the frames
            # with ids; v2 sockets the events
            ids = hub.id_channels > hub.v2_channels or hub.holding > 0
            items = [self._item(msg, frame, reader, ids, hub.v2_channels > 0) for msg, frame in run]
            forms = Run(data, items, 0 if kind == "user_id" else target)
        elif not data:
            return 0  # only v2 events, and no v2 socket here
        if kind == "user_id":
            sockets = hub.push_user(target, data, forms)
            if sockets:
                self._delivered_private(target, run)
        else:
            sockets = hub.push_room(target, data, forms)
        if sockets:
            for msg, _ in run:
                FRAMES_OUT.labels(msg.op).inc(sockets)
            if self.pacer is not None:
                self.pacer.written += sockets
                self.last_target = (kind, target)
        return sockets

    def _push_echo(self, user_id: int, run: list[tuple[pb.Msg, bytes]], origin: int) -> int:
        """An echo run: v2 events only (v1 sockets render it as nothing), skipping ``origin``."""
        if not self.hub.v2_channels:
            return 0
        items = [self._item(msg, frame, user_id, False, True) for msg, frame in run if msg.op == OP_SINGLE_SEND]
        items = [(key, b"", b"", event) for key, _, _, event in items]
        sockets = self.hub.push_user(user_id, b"", Run(b"", items, 0, skip=origin))
        if sockets:
            for msg, _ in run:
                FRAMES_OUT.labels(msg.op).inc(sockets)
            if self.pacer is not None:
                self.pacer.written += sockets
                self.last_target = ("user_id", user_id)
        return sockets

    def _item(self, msg: pb.Msg, frame: bytes, reader: int, ids: bool, v2: bool) -> Item:
        """The frame's id if it is a kept message (op 2 and 3), and its forms (see hub.Item): the
        form with the id only when ``ids``, the v2 event only when ``v2``."""
        if msg.op == OP_V2_EVENT:
            return None, b"", b"", frame
        if msg.op not in (OP_SINGLE_SEND, OP_ROOM_SEND):
            return None, frame, frame, b""  # counts and member lists: v2 has presence events
        key = parse_id(msg.seq_id)
        if key is None:
            return None, frame, frame, b""
        event = b""
        try:
            if v2 and (body := message_event(msg.body, msg.seq_id, reader)) is not None:
                event = self.encode(body)
            return key, frame, self.encode(with_id(msg.body, msg.seq_id)) if ids else frame, event
        except ValueError:  # too large for the transport with the id: the plain frame, then
            return key, frame, frame, event

    def _delivered_private(self, user_id: int, run: list[tuple[pb.Msg, bytes]]) -> None:
        """Remembers the newest private message written to the user here (the inbox cursor)."""
        for msg, _ in run:
            if msg.op == OP_SINGLE_SEND:
                self.note_private(user_id, msg.seq_id)

    def note_private(self, user_id: int, message_id: str) -> None:
        key = parse_id(message_id)
        if key is not None and key > self.last_private.get(user_id, ZERO):
            self.last_private[user_id] = key

    def last_channels(self) -> Iterator[Channel]:
        """The sockets of the latest target, from a random bucket on (the pacer looks at a few)."""
        kind, target = self.last_target
        if kind == "user_id":
            return iter(self.hub.channels_of_user(target))
        return self.hub.iter_room(target, start=random.randrange(len(self.hub.buckets)))

    async def PushSingleMsg(self, request: pb.PushMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        sent = self._push("user_id", request.user_id, [(request.msg, frame)]) if frame is not None else 0
        return pb.PushReply(sockets=sent)

    async def PushRoomMsg(self, request: pb.PushRoomMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        sent = self._push("room_id", request.room_id, [(request.msg, frame)]) if frame is not None else 0
        return pb.PushReply(sockets=sent)

    PushRoomCount = PushRoomMsg
    PushRoomInfo = PushRoomMsg

    async def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.PushReply:
        """Consecutive items for the same target become one write per socket: a burst of room
        messages costs each socket one system call, not one per message.  The reply waits while
        the node's clients fall behind (see connect.pacing): that is what slows task down."""
        sockets = 0
        # (kind, id, origin): origin -1 for a plain delivery, the socket to skip (0 = none) for an echo
        target: tuple[str, int, int] | None = None
        run: list[tuple[pb.Msg, bytes]] = []
        for item in request.items:
            if item.disconnect:
                if run and target is not None:
                    sockets += self._push(target[0], target[1], run, target[2])
                    run, target = [], None
                if self.recent.first_time(item.msg.seq_id):
                    sockets += self.hub.close_user(item.user_id, item.msg.body.decode(errors="replace"))
                continue
            frame = self._frame(item.msg, item.echo)
            if frame is None:
                continue
            kind = item.WhichOneof("target") or "room_id"
            if item.echo and kind != "user_id":
                continue  # an echo goes to a user: task never sends another
            item_target = (
                kind,
                item.user_id if kind == "user_id" else item.room_id,
                max(item.origin, 0) if item.echo else -1,
            )
            if item_target != target and run and target is not None:
                sockets += self._push(target[0], target[1], run, target[2])
                run = []
            target = item_target
            run.append((item.msg, frame))
        if run and target is not None:
            sockets += self._push(target[0], target[1], run, target[2])
        if self.pacer is not None:
            await self.pacer.hold()
        return pb.PushReply(sockets=sockets)
