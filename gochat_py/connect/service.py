"""The Connect gRPC service: task's pushes, written to the sockets this node holds."""

from __future__ import annotations

from typing import Any

from gochat_py.connect.dedup import RecentIds
from gochat_py.connect.hub import Hub
from gochat_py.rpc import connect_pb2 as pb
from gochat_py.rpc import connect_pb2_grpc


class ConnectService(connect_pb2_grpc.ConnectServicer):
    def __init__(self, hub: Hub, recent: RecentIds) -> None:
        self.hub = hub
        self.recent = recent

    def _to_user(self, user_id: int, msg: pb.Msg) -> int:
        return self.hub.push_user(user_id, msg.body) if self.recent.first_time(msg.seq_id) else 0

    def _to_room(self, room_id: int, msg: pb.Msg) -> int:
        return self.hub.push_room(room_id, msg.body) if self.recent.first_time(msg.seq_id) else 0

    async def PushSingleMsg(self, request: pb.PushMsgRequest, context: Any) -> pb.PushReply:
        return pb.PushReply(sockets=self._to_user(request.user_id, request.msg))

    async def PushRoomMsg(self, request: pb.PushRoomMsgRequest, context: Any) -> pb.PushReply:
        return pb.PushReply(sockets=self._to_room(request.room_id, request.msg))

    PushRoomCount = PushRoomMsg
    PushRoomInfo = PushRoomMsg

    async def Deliver(self, request: pb.DeliverRequest, context: Any) -> pb.PushReply:
        sockets = 0
        for item in request.items:
            if item.WhichOneof("target") == "user_id":
                sockets += self._to_user(item.user_id, item.msg)
            else:
                sockets += self._to_room(item.room_id, item.msg)
        return pb.PushReply(sockets=sockets)
