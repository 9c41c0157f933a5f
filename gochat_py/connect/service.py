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
from gochat_py.connect.hub import Channel, Hub
from gochat_py.connect.pacing import Pacer
from gochat_py.logs import kv
from gochat_py.metrics import FRAMES_OUT, QUEUE_TO_SOCKET
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

    def _push(self, kind: str, target: int, frames: list[bytes], ops: list[int]) -> int:
        """Writes the frames, joined, to the target's sockets; counts them by op."""
        data = b"".join(frames)
        sockets = self.hub.push_user(target, data) if kind == "user_id" else self.hub.push_room(target, data)
        if sockets:
            for op in ops:
                FRAMES_OUT.labels(op).inc(sockets)
            if self.pacer is not None:
                self.pacer.written += sockets
                self.last_target = (kind, target)
        return sockets

    def last_channels(self) -> Iterator[Channel]:
        """The sockets of the latest target, from a random bucket on (the pacer looks at a few)."""
        kind, target = self.last_target
        if kind == "user_id":
            return iter(self.hub.channels_of_user(target))
        return self.hub.iter_room(target, start=random.randrange(len(self.hub.buckets)))

    async def PushSingleMsg(self, request: pb.PushMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        sent = self._push("user_id", request.user_id, [frame], [request.msg.op]) if frame is not None else 0
        return pb.PushReply(sockets=sent)

    async def PushRoomMsg(self, request: pb.PushRoomMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        sent = self._push("room_id", request.room_id, [frame], [request.msg.op]) if frame is not None else 0
        return pb.PushReply(sockets=sent)

    PushRoomCount = PushRoomMsg
    PushRoomInfo = PushRoomMsg

    async def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.PushReply:
        """Consecutive items for the same target become one write per socket: a burst of room
        messages costs each socket one system call, not one per message.  The reply waits while
        the node's clients fall behind (see connect.pacing): that is what slows task down."""
        sockets = 0
        run: tuple[str, int] | None = None
        frames: list[bytes] = []
        ops: list[int] = []
        for item in request.items:
            if item.disconnect:
                if frames and run is not None:
                    sockets += self._push(*run, frames, ops)
                    frames, ops, run = [], [], None
                if self.recent.first_time(item.msg.seq_id):
                    sockets += self.hub.close_user(item.user_id, item.msg.body.decode(errors="replace"))
                continue
            frame = self._frame(item.msg)
            if frame is None:
                continue
            kind = item.WhichOneof("target") or "room_id"
            target = (kind, item.user_id if kind == "user_id" else item.room_id)
            if target != run and frames and run is not None:
                sockets += self._push(*run, frames, ops)
                frames, ops = [], []
            run = target
            frames.append(frame)
            ops.append(item.msg.op)
        if frames and run is not None:
            sockets += self._push(*run, frames, ops)
        if self.pacer is not None:
            await self.pacer.hold()
        return pb.PushReply(sockets=sockets)
