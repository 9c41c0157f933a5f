"""The Connect gRPC service: task's pushes, written to the sockets this node holds.

Each frame body is turned into the bytes of the node's transport once (``encode``: the TCP
framing adds its header, websocket needs nothing), and those same bytes go to every socket.
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

    def _frame(self, msg: pb.Msg) -> bytes | None:
        """The bytes to write, or None for a repeat or a body the transport cannot carry."""
        if not self.recent.first_time(msg.seq_id):
            return None
        observe_queue_time(msg.seq_id)
        try:
            return self.encode(msg.body)
        except ValueError as exc:
            self.unencodable += 1
            log.warning("frame not sent: the transport cannot carry it", extra=kv(seq_id=msg.seq_id, error=str(exc)))
            return None

    def _push(self, kind: str, target: int, run: list[tuple[pb.Msg, bytes]]) -> int:
        """Writes the run's frames, joined, to the target's sockets; counts them by op.  The other
        forms (with ids, v2 events, the frames one by one) are built only while a socket needs them."""
        hub = self.hub
        data = b"".join(frame for msg, frame in run if msg.op != OP_V2_EVENT)
        forms: Run | None = None
        if hub.id_channels or hub.holding:
            reader = target if kind == "user_id" else 0
            items = [self._item(msg, frame, reader, hub.v2_channels > 0) for msg, frame in run]
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

    def _item(self, msg: pb.Msg, frame: bytes, reader: int, v2: bool) -> Item:
        """The frame's id if it is a kept message (op 2 and 3), and its forms (see hub.Item)."""
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
            return key, frame, self.encode(with_id(msg.body, msg.seq_id)), event
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
        target: tuple[str, int] | None = None
        run: list[tuple[pb.Msg, bytes]] = []
        for item in request.items:
            if item.disconnect:
                if run and target is not None:
                    sockets += self._push(*target, run)
                    run, target = [], None
                if self.recent.first_time(item.msg.seq_id):
                    sockets += self.hub.close_user(item.user_id, item.msg.body.decode(errors="replace"))
                continue
            frame = self._frame(item.msg)
            if frame is None:
                continue
            kind = item.WhichOneof("target") or "room_id"
            item_target = (kind, item.user_id if kind == "user_id" else item.room_id)
            if item_target != target and run and target is not None:
                sockets += self._push(*target, run)
                run = []
            target = item_target
            run.append((item.msg, frame))
        if run and target is not None:
            sockets += self._push(*target, run)
        if self.pacer is not None:
            await self.pacer.hold()
        return pb.PushReply(sockets=sockets)
