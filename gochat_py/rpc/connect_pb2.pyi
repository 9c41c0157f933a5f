from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Msg(_message.Message):
    __slots__ = ("ver", "op", "seq_id", "body")
    VER_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    SEQ_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    ver: int
    op: int
    seq_id: str
    body: bytes
    def __init__(self, ver: _Optional[int] = ..., op: _Optional[int] = ..., seq_id: _Optional[str] = ..., body: _Optional[bytes] = ...) -> None: ...

class PushMsgRequest(_message.Message):
    __slots__ = ("user_id", "msg")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    msg: Msg
    def __init__(self, user_id: _Optional[int] = ..., msg: _Optional[_Union[Msg, _Mapping]] = ...) -> None: ...

class PushRoomMsgRequest(_message.Message):
    __slots__ = ("room_id", "msg")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    msg: Msg
    def __init__(self, room_id: _Optional[int] = ..., msg: _Optional[_Union[Msg, _Mapping]] = ...) -> None: ...

class Delivery(_message.Message):
    __slots__ = ("user_id", "room_id", "msg", "disconnect", "echo", "origin")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    DISCONNECT_FIELD_NUMBER: _ClassVar[int]
    ECHO_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    room_id: int
    msg: Msg
    disconnect: bool
    echo: bool
    origin: int
    def __init__(self, user_id: _Optional[int] = ..., room_id: _Optional[int] = ..., msg: _Optional[_Union[Msg, _Mapping]] = ..., disconnect: _Optional[bool] = ..., echo: _Optional[bool] = ..., origin: _Optional[int] = ...) -> None: ...

class DeliverRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[Delivery]
    def __init__(self, items: _Optional[_Iterable[_Union[Delivery, _Mapping]]] = ...) -> None: ...

class PushReply(_message.Message):
    __slots__ = ("code", "message", "sockets")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SOCKETS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    sockets: int
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., sockets: _Optional[int] = ...) -> None: ...
