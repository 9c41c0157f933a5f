"""The Connect gRPC service: task's pushes, written to the sockets this node holds.

Each frame body is turned into the bytes of the node's transport once (``encode``: the TCP
framing adds its header, websocket needs nothing), and those same bytes go to every socket.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gochat_py.connect.dedup import RecentIds
from gochat_py.connect.hub import Hub
from gochat_py.logs import kv
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.rpc import connect_pb2_grpc

log = logging.getLogger("gochat.connect")


def unchanged(body: bytes) -> bytes:
    return body


class ConnectService(connect_pb2_grpc.ConnectServicer):
    def __init__(self, hub: Hub, recent: RecentIds, encode: Callable[[bytes], bytes] = unchanged) -> None:
        self.hub = hub
        self.recent = recent
        self.encode = encode
        self.unencodable = 0

    def _frame(self, msg: pb.Msg) -> bytes | None:
        """The bytes to write, or None for a repeat or a body the transport cannot carry."""
        if not self.recent.first_time(msg.seq_id):
            return None
        try:
            return self.encode(msg.body)
        except ValueError as exc:
            self.unencodable += 1
            log.warning("frame not sent: the transport cannot carry it", extra=kv(seq_id=msg.seq_id, error=str(exc)))
            return None

    def _push(self, kind: str, target: int, data: bytes) -> int:
        if kind == "user_id":
            return self.hub.push_user(target, data)
        return self.hub.push_room(target, data)

    async def PushSingleMsg(self, request: pb.PushMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        return pb.PushReply(sockets=self.hub.push_user(request.user_id, frame) if frame is not None else 0)

    async def PushRoomMsg(self, request: pb.PushRoomMsgRequest, context: Any) -> pb.PushReply:
        frame = self._frame(request.msg)
        return pb.PushReply(sockets=self.hub.push_room(request.room_id, frame) if frame is not None else 0)

    PushRoomCount = PushRoomMsg
    PushRoomInfo = PushRoomMsg

    async def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.PushReply:
        """Consecutive items for the same target become one write per socket: a burst of room
        messages costs each socket one system call, not one per message."""
        sockets = 0
        run: tuple[str, int] | None = None
        frames: list[bytes] = []
        for item in request.items:
            if item.disconnect:
                if frames and run is not None:
                    sockets += self._push(*run, b"".join(frames))
                    frames, run = [], None
                if self.recent.first_time(item.msg.seq_id):
                    sockets += self.hub.close_user(item.user_id, item.msg.body.decode(errors="replace"))
                continue
            frame = self._frame(item.msg)
            if frame is None:
                continue
            kind = item.WhichOneof("target") or "room_id"
            target = (kind, item.user_id if kind == "user_id" else item.room_id)
            if target != run and frames:
                sockets += self._push(*run, b"".join(frames))  # type: ignore[misc]
                frames = []
            run = target
            frames.append(frame)
        if frames and run is not None:
            sockets += self._push(*run, b"".join(frames))
        return pb.PushReply(sockets=sockets)
