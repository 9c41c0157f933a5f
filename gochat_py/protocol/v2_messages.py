"""The messages of protocol v2 as pydantic models: the one description both the codec and the
published JSON Schema (:mod:`gochat_py.protocol.v2_schema`) come from.

Validation is strict (no ``"1"`` for 1, no ``true`` for 1) and keys are exact (case-sensitive),
unlike v1's Go-style leniency.  Unknown keys are ignored, so that a later version can add fields
without breaking older peers; the schema still says ``additionalProperties: false`` because it
describes exactly what this version sends.  An optional field is left out rather than sent as
``null``; the codec refuses an explicit ``null`` (see :func:`wire_context`).

Python code builds models by field name (``RoomMessage(sender=...)``); the wire uses the aliases
(``"from"``, ``"authToken"``), and only the aliases are read from the wire.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from gochat_py.protocol.message_id import MAX_ID_LENGTH, parse_id
from gochat_py.protocol.v2_codes import (
    GAP_TOO_OLD,
    GAP_UNKNOWN,
    HISTORY_LIMIT_MAX,
    MAX_CID,
    MAX_ID,
    MAX_MID_LENGTH,
    VERSION,
)

WIRE = "wire"  # validation context key: the input came from a peer, not from Python code


def wire_context() -> dict[str, bool]:
    return {WIRE: True}


def _tighten_schema(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """The JSON Schema of a model as this version sends it: no extra keys, optional fields absent
    rather than null, the ``cmd``/``type`` constants required, and "exactly one of" spelled out."""
    schema["additionalProperties"] = False
    required: list[str] = schema.setdefault("required", [])
    for name, prop in schema.get("properties", {}).items():
        prop.pop("title", None)
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches and prop.get("default", ...) is None:
            del prop["anyOf"], prop["default"]
            (inner,) = [b for b in branches if b != {"type": "null"}]
            prop.update(inner)
        if "const" in prop:
            prop.pop("default", None)
            if name not in required:
                required.append(name)
    order = list(schema.get("properties", {}))
    required.sort(key=order.index)
    if not required:
        del schema["required"]
    pair = getattr(cls, "exactly_one", None)
    if pair:
        schema["oneOf"] = [{"required": [key]} for key in pair]


class WireModel(BaseModel):
    """Base of every v2 message."""

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        json_schema_extra=_tighten_schema,
    )
    exactly_one: ClassVar[tuple[str, str] | None] = None  # two optional keys, one of which is required

    @model_validator(mode="before")
    @classmethod
    def _no_null_on_the_wire(cls, data: Any, info: ValidationInfo) -> Any:
        if isinstance(data, dict) and info.context and info.context.get(WIRE):
            for name, field in cls.model_fields.items():
                key = field.alias or name
                if key in data and data[key] is None:
                    raise ValueError(f"{key} must not be null (leave it out)")
        return data

    @model_validator(mode="after")
    def _exactly_one_of(self) -> WireModel:
        if self.exactly_one:
            given = [key for key in self.exactly_one if getattr(self, key) is not None]
            if len(given) != 1:
                first, second = self.exactly_one
                raise ValueError(f"give exactly one of {first} and {second}")
        return self


Id = Annotated[int, Field(gt=0, le=MAX_ID, description="a room or user id, a positive integer")]
Cid = Annotated[int, Field(ge=1, le=MAX_CID, description="chosen by the client; the reply carries it back")]
Millis = Annotated[int, Field(ge=0, description="milliseconds since the Unix epoch")]
Count = Annotated[int, Field(ge=0)]
Text = Annotated[str, Field(min_length=1)]
ClientMessageId = Annotated[str, Field(min_length=1, max_length=MAX_MID_LENGTH)] | None
MessageId = Annotated[
    str,
    Field(
        pattern=r"^[0-9]+-[0-9]+$",
        max_length=MAX_ID_LENGTH,
        description="a message id, opaque to clients; ids of one conversation increase",
    ),
]
Members = Annotated[
    dict[str, str],
    Field(
        description="user id (as a string) to user name",
        json_schema_extra={"propertyNames": {"pattern": "^[1-9][0-9]*$"}},
    ),
]


# ---- client to server ----------------------------------------------------------------------


class Hello(WireModel):
    """The first message of a v2 socket, instead of v1's join."""

    v: int = Field(ge=VERSION, description="the highest protocol version the client speaks")
    auth_token: Text = Field(alias="authToken", description="the token from /user/login")
    since: str | None = Field(
        None, description="id of the last private message received: resume private messages after it"
    )


class Command(WireModel):
    cid: Cid


class Subscribe(Command):
    cmd: Literal["subscribe"] = "subscribe"
    room: Id
    since: str | None = Field(None, description="id of the last message of this room received: resume after it")


class Unsubscribe(Command):
    cmd: Literal["unsubscribe"] = "unsubscribe"
    room: Id


class Publish(Command):
    cmd: Literal["publish"] = "publish"
    room: Id
    msg: Text
    mid: ClientMessageId = Field(None, description="client message id: a retry with the same mid is stored once")


class Send(Command):
    cmd: Literal["send"] = "send"
    to: Id
    msg: Text
    mid: ClientMessageId = Field(None, description="client message id: a retry with the same mid is stored once")


class History(Command):
    exactly_one = ("room", "user")
    cmd: Literal["history"] = "history"
    room: Id | None = None
    user: Id | None = Field(None, description="the other party of a private conversation")
    before: MessageId | None = Field(None, description="page back: only messages older than this id")
    limit: Annotated[int, Field(ge=1, le=HISTORY_LIMIT_MAX)] | None = Field(None, description="default 50")

    @field_validator("before")
    @classmethod
    def _an_id(cls, value: str | None) -> str | None:
        if value is not None and parse_id(value) is None:
            raise ValueError("before is not a message id")
        return value


class Presence(Command):
    cmd: Literal["presence"] = "presence"
    room: Id


class Typing(Command):
    exactly_one = ("room", "to")
    cmd: Literal["typing"] = "typing"
    room: Id | None = None
    to: Id | None = None


class Ping(Command):
    cmd: Literal["ping"] = "ping"


COMMANDS: dict[str, type[Command]] = {
    model.model_fields["cmd"].default: model
    for model in (Subscribe, Unsubscribe, Publish, Send, History, Presence, Typing, Ping)
}
AnyCommand = Annotated[
    Subscribe | Unsubscribe | Publish | Send | History | Presence | Typing | Ping, Field(discriminator="cmd")
]


# ---- server to client: parts -----------------------------------------------------------------


class User(WireModel):
    id: Id
    name: str


class Limits(WireModel):
    """What applies to this socket; a client that stays within them is never refused for load."""

    rooms: Count = Field(description="rooms one socket may be subscribed to at once")
    message_length: Count = Field(description="characters in msg at most")
    frame_size: Count = Field(description="bytes in one frame from the client at most")
    publish_rate: float = Field(ge=0, description="publish and send commands per second, sustained")
    publish_burst: Count = Field(description="publish and send commands at once")


# ---- server to client: events ----------------------------------------------------------------


class RoomMessage(WireModel):
    type: Literal["message"] = "message"
    room: Id
    id: MessageId
    sender: User = Field(alias="from")
    msg: str
    time: Millis


class PrivateMessage(WireModel):
    type: Literal["message"] = "message"
    user: Id = Field(description="the other party of the conversation: the sender, or for your own, the recipient")
    to: Id = Field(description="the recipient")
    id: MessageId
    sender: User = Field(alias="from")
    msg: str
    time: Millis


class MemberJoined(WireModel):
    type: Literal["join"] = "join"
    room: Id
    user: User


class MemberLeft(WireModel):
    type: Literal["leave"] = "leave"
    room: Id
    user: User


class TypingEvent(WireModel):
    exactly_one = ("room", "user")
    type: Literal["typing"] = "typing"
    room: Id | None = None
    user: Id | None = Field(None, description="typing to you in the private conversation with this user")
    sender: User = Field(alias="from")


class Gap(WireModel):
    type: Literal["gap"] = "gap"
    room: Id | None = Field(None, description="absent: about private messages (the hello's since)")
    reason: Literal["unknown", "too_old"] = Field(
        description=f"{GAP_UNKNOWN}: since is not an id of ours; {GAP_TOO_OLD}: more was missed than is kept"
    )


class SessionEnded(WireModel):
    type: Literal["session_ended"] = "session_ended"
    reason: str = Field(description="for people and logs; the socket closes right after")


Event = RoomMessage | PrivateMessage | MemberJoined | MemberLeft | TypingEvent | Gap | SessionEnded


class Welcome(WireModel):
    type: Literal["welcome"] = "welcome"
    v: Literal[2] = 2
    user: User
    time: Millis
    limits: Limits


# ---- server to client: results and errors ----------------------------------------------------


class SubscribeResult(WireModel):
    room: Id
    members: Members
    count: Count


class UnsubscribeResult(WireModel):
    pass


class PublishResult(WireModel):
    id: MessageId


class SendResult(WireModel):
    id: MessageId


class HistoryResult(WireModel):
    messages: list[RoomMessage | PrivateMessage] = Field(description="newest first")
    more: bool = Field(description="older messages exist: ask again with before = the last id")


class PresenceResult(WireModel):
    room: Id
    members: Members
    count: Count


class TypingResult(WireModel):
    pass


class PingResult(WireModel):
    time: Millis


RESULTS: dict[str, type[WireModel]] = {
    "subscribe": SubscribeResult,
    "unsubscribe": UnsubscribeResult,
    "publish": PublishResult,
    "send": SendResult,
    "history": HistoryResult,
    "presence": PresenceResult,
    "typing": TypingResult,
    "ping": PingResult,
}
AnyResult = (
    SubscribeResult
    | UnsubscribeResult
    | PublishResult
    | SendResult
    | HistoryResult
    | PresenceResult
    | TypingResult
    | PingResult
)


class ResultReply(WireModel):
    """The answer to a command that succeeded."""

    cid: Cid
    result: AnyResult


class ErrorBody(WireModel):
    code: int = Field(ge=1, description="see ErrorCode; treat unknown codes as a failure of this command")
    message: str


class ErrorReply(WireModel):
    """The answer to a command that failed; cid is 0 when the command's cid could not be read."""

    cid: Annotated[int, Field(ge=0, le=MAX_CID)]
    error: ErrorBody


ClientMessage = Hello | AnyCommand
ServerMessage = Welcome | ResultReply | ErrorReply | Event
