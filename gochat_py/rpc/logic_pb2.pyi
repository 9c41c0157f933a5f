from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReplyCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OK: _ClassVar[ReplyCode]
    FAIL: _ClassVar[ReplyCode]
    SESSION_ERROR: _ClassVar[ReplyCode]
OK: ReplyCode
FAIL: ReplyCode
SESSION_ERROR: ReplyCode

class Reply(_message.Message):
    __slots__ = ("code", "message", "id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    id: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., id: _Optional[str] = ...) -> None: ...

class AuthRequest(_message.Message):
    __slots__ = ("name", "password")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    name: str
    password: str
    def __init__(self, name: _Optional[str] = ..., password: _Optional[str] = ...) -> None: ...

class AuthReply(_message.Message):
    __slots__ = ("code", "message", "auth_token")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    auth_token: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., auth_token: _Optional[str] = ...) -> None: ...

class CheckAuthRequest(_message.Message):
    __slots__ = ("auth_token",)
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auth_token: str
    def __init__(self, auth_token: _Optional[str] = ...) -> None: ...

class CheckAuthReply(_message.Message):
    __slots__ = ("code", "message", "user_id", "user_name")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    user_id: int
    user_name: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., user_id: _Optional[int] = ..., user_name: _Optional[str] = ...) -> None: ...

class LogoutRequest(_message.Message):
    __slots__ = ("auth_token",)
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    auth_token: str
    def __init__(self, auth_token: _Optional[str] = ...) -> None: ...

class GetUserInfoRequest(_message.Message):
    __slots__ = ("user_id",)
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    user_id: int
    def __init__(self, user_id: _Optional[int] = ...) -> None: ...

class GetUserInfoReply(_message.Message):
    __slots__ = ("code", "message", "user_id", "user_name")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    user_id: int
    user_name: str
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., user_id: _Optional[int] = ..., user_name: _Optional[str] = ...) -> None: ...

class PushRequest(_message.Message):
    __slots__ = ("from_user_id", "from_user_name", "to_user_id", "room_id", "msg", "auth_token", "mid", "origin")
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_NAME_FIELD_NUMBER: _ClassVar[int]
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    from_user_id: int
    from_user_name: str
    to_user_id: int
    room_id: int
    msg: str
    auth_token: str
    mid: str
    origin: str
    def __init__(self, from_user_id: _Optional[int] = ..., from_user_name: _Optional[str] = ..., to_user_id: _Optional[int] = ..., room_id: _Optional[int] = ..., msg: _Optional[str] = ..., auth_token: _Optional[str] = ..., mid: _Optional[str] = ..., origin: _Optional[str] = ...) -> None: ...

class PushRoomRequest(_message.Message):
    __slots__ = ("from_user_id", "from_user_name", "room_id", "msg", "auth_token", "mid")
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_NAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    MSG_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    MID_FIELD_NUMBER: _ClassVar[int]
    from_user_id: int
    from_user_name: str
    room_id: int
    msg: str
    auth_token: str
    mid: str
    def __init__(self, from_user_id: _Optional[int] = ..., from_user_name: _Optional[str] = ..., room_id: _Optional[int] = ..., msg: _Optional[str] = ..., auth_token: _Optional[str] = ..., mid: _Optional[str] = ...) -> None: ...

class PushItem(_message.Message):
    __slots__ = ("push", "push_room")
    PUSH_FIELD_NUMBER: _ClassVar[int]
    PUSH_ROOM_FIELD_NUMBER: _ClassVar[int]
    push: PushRequest
    push_room: PushRoomRequest
    def __init__(self, push: _Optional[_Union[PushRequest, _Mapping]] = ..., push_room: _Optional[_Union[PushRoomRequest, _Mapping]] = ...) -> None: ...

class PushBatchRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PushItem]
    def __init__(self, items: _Optional[_Iterable[_Union[PushItem, _Mapping]]] = ...) -> None: ...

class PushBatchReply(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[Reply]
    def __init__(self, replies: _Optional[_Iterable[_Union[Reply, _Mapping]]] = ...) -> None: ...

class RoomRequest(_message.Message):
    __slots__ = ("room_id", "auth_token")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    auth_token: str
    def __init__(self, room_id: _Optional[int] = ..., auth_token: _Optional[str] = ...) -> None: ...

class StoredMessage(_message.Message):
    __slots__ = ("id", "op", "body")
    ID_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    id: str
    op: int
    body: bytes
    def __init__(self, id: _Optional[str] = ..., op: _Optional[int] = ..., body: _Optional[bytes] = ...) -> None: ...

class ConnectRequest(_message.Message):
    __slots__ = ("auth_token", "room_id", "server_id", "resume", "since", "subscribe")
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    auth_token: str
    room_id: int
    server_id: str
    resume: bool
    since: str
    subscribe: bool
    def __init__(self, auth_token: _Optional[str] = ..., room_id: _Optional[int] = ..., server_id: _Optional[str] = ..., resume: _Optional[bool] = ..., since: _Optional[str] = ..., subscribe: _Optional[bool] = ...) -> None: ...

class ConnectReply(_message.Message):
    __slots__ = ("code", "message", "user_id", "user_name", "backlog", "backlog_end", "gap", "members")
    class MembersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    USER_NAME_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_END_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    user_id: int
    user_name: str
    backlog: _containers.RepeatedCompositeFieldContainer[StoredMessage]
    backlog_end: str
    gap: str
    members: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., user_id: _Optional[int] = ..., user_name: _Optional[str] = ..., backlog: _Optional[_Iterable[_Union[StoredMessage, _Mapping]]] = ..., backlog_end: _Optional[str] = ..., gap: _Optional[str] = ..., members: _Optional[_Mapping[str, str]] = ...) -> None: ...

class DisconnectRequest(_message.Message):
    __slots__ = ("room_id", "user_id", "server_id", "last_private_id")
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_PRIVATE_ID_FIELD_NUMBER: _ClassVar[int]
    room_id: int
    user_id: int
    server_id: str
    last_private_id: str
    def __init__(self, room_id: _Optional[int] = ..., user_id: _Optional[int] = ..., server_id: _Optional[str] = ..., last_private_id: _Optional[str] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("auth_token", "room_id", "user_id", "before", "limit")
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    auth_token: str
    room_id: int
    user_id: int
    before: str
    limit: int
    def __init__(self, auth_token: _Optional[str] = ..., room_id: _Optional[int] = ..., user_id: _Optional[int] = ..., before: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class HistoryReply(_message.Message):
    __slots__ = ("code", "message", "messages", "more")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    messages: _containers.RepeatedScalarFieldContainer[bytes]
    more: bool
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., messages: _Optional[_Iterable[bytes]] = ..., more: _Optional[bool] = ...) -> None: ...

class PresenceReply(_message.Message):
    __slots__ = ("code", "message", "members")
    class MembersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    members: _containers.ScalarMap[str, str]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., members: _Optional[_Mapping[str, str]] = ...) -> None: ...

class TypingRequest(_message.Message):
    __slots__ = ("auth_token", "room_id", "to_user_id")
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    auth_token: str
    room_id: int
    to_user_id: int
    def __init__(self, auth_token: _Optional[str] = ..., room_id: _Optional[int] = ..., to_user_id: _Optional[int] = ...) -> None: ...

class CheckSessionsRequest(_message.Message):
    __slots__ = ("auth_tokens",)
    AUTH_TOKENS_FIELD_NUMBER: _ClassVar[int]
    auth_tokens: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, auth_tokens: _Optional[_Iterable[str]] = ...) -> None: ...

class CheckSessionsReply(_message.Message):
    __slots__ = ("live",)
    LIVE_FIELD_NUMBER: _ClassVar[int]
    live: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, live: _Optional[_Iterable[bool]] = ...) -> None: ...
