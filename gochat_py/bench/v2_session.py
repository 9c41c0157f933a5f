"""One bench socket speaking protocol v2: its hello, its subscribes, its publishes and sends.

The project's own client side (:class:`gochat_py.protocol.v2_client.ClientCodec`) numbers the
commands and reads every server message but the stamped message events: the welcome, the replies
and the join, leave and typing events.  Those are a few per socket plus one reply per message sent,
where the codec's validation (about 5 µs a message) is cheap enough; the message events, the bench's
hot path, never reach it (the counter finds their stamps with one regex search).  Sans-I/O: the
client process writes the bytes and hands every other frame to :meth:`V2Session.receive`.
"""

from __future__ import annotations

from typing import NamedTuple

from gochat_py.protocol.v2_client import ClientCodec, Reply, ServerMessageError
from gochat_py.protocol.v2_codes import ErrorCode
from gochat_py.protocol.v2_messages import (
    ErrorReply,
    Limits,
    MemberJoined,
    Publish,
    Send,
    SessionEnded,
    Subscribe,
    SubscribeResult,
    Welcome,
)

WELCOMED = "welcomed"  # the hello was accepted: the subscribes may go
READY = "ready"  # welcomed, in every room asked for, and each room seen with all its users
OTHER = "other"  # an event the bench only counts (join, leave, typing, another run's message)


class Ack(NamedTuple):
    """The reply to a publish or send: ``code`` 0 when the message was stored, else the error's."""

    seq: int
    sent_ns: int
    code: int
    message: str


class Retry(NamedTuple):
    """A subscribe the server could not do now (``unavailable``): the protocol says try again."""

    room: int


class Problem(NamedTuple):
    """Something that keeps the socket out of a room or ends it: worth an error line."""

    text: str


Outcome = str | Ack | Retry | Problem


class V2Session:
    """The v2 state of one socket: the rooms it still waits to be in and the messages it sent that
    are still waiting for their reply.

    A socket is ready once every subscribe is answered and it has seen ``expect`` users in each of
    its rooms (the snapshot, then join events), as a v1 socket is once its op-4 count arrives: the
    other sockets' join events have then reached it, so they do not compete with the messages
    being measured (each join goes to every member: as many deliveries as the room's messages)."""

    __slots__ = ("codec", "expect", "limits", "members", "ready", "refused", "rooms", "sends", "subscribing", "user_id")

    def __init__(self, rooms: tuple[int, ...] = (), expect: int = 1) -> None:
        self.codec = ClientCodec()
        self.rooms = rooms
        self.expect = expect
        self.members: dict[int, set[str]] = {room: set() for room in rooms}  # the user ids seen, until ready
        self.ready = False
        self.subscribing: dict[int, int] = {}  # cid -> room, until its reply
        self.sends: dict[int, tuple[int, int]] = {}  # cid -> (seq, send time ns), until its reply
        self.refused = 0  # subscribes answered with an error: the socket never becomes ready
        self.limits: Limits | None = None
        self.user_id = 0

    def hello(self, auth_token: str) -> bytes:
        return self.codec.hello(auth_token)

    def subscribes(self) -> list[bytes]:
        """One subscribe per room, all at once (a few; the server answers each)."""
        return [self.subscribe(room) for room in self.rooms]

    def subscribe(self, room: int) -> bytes:
        cid, data = self.codec.command(Subscribe, room=room)
        self.subscribing[cid] = room
        return data

    def message(self, seq: int, sent_ns: int, msg: str, *, room: int = 0, to: int = 0) -> bytes:
        """A publish into ``room``, or a send to user ``to``, remembered until its reply."""
        cid, data = self.codec.command(Send, to=to, msg=msg) if to else self.codec.command(Publish, room=room, msg=msg)
        self.sends[cid] = (seq, sent_ns)
        return data

    def unanswered(self) -> list[tuple[int, int]]:
        """(seq, send time ns) of every message sent whose reply never came."""
        return list(self.sends.values())

    def receive(self, body: bytes) -> Outcome:
        """What one server message (not a stamped message event) means for the bench."""
        try:
            item = self.codec.receive(body)
        except ServerMessageError as exc:
            return Problem(f"unreadable v2 message ({exc}): {body[:120]!r}")
        if isinstance(item, Reply):
            if item.cid in self.sends:
                seq, sent_ns = self.sends.pop(item.cid)
                return Ack(seq, sent_ns, 0, "")
            if self.subscribing.pop(item.cid, None) is not None and isinstance(item.result, SubscribeResult):
                self.members.get(item.result.room, set()).update(item.result.members)
                return self._readiness()
            return OTHER
        if isinstance(item, ErrorReply):
            if item.cid in self.sends:
                seq, sent_ns = self.sends.pop(item.cid)
                return Ack(seq, sent_ns, item.error.code, item.error.message)
            room = self.subscribing.pop(item.cid, None)
            if room is not None and item.error.code == ErrorCode.UNAVAILABLE:
                return Retry(room)
            self.refused += room is not None
            what = f"subscribe room {room}" if room is not None else f"cid {item.cid}"
            return Problem(f"{what}: error {item.error.code} {item.error.message}")
        if isinstance(item, Welcome):
            self.limits = item.limits
            self.user_id = item.user.id
            self.ready = not self.rooms
            return READY if self.ready else WELCOMED
        if isinstance(item, SessionEnded):
            return Problem(f"session ended: {item.reason}")
        if isinstance(item, MemberJoined) and not self.ready:
            self.members.get(item.room, set()).add(str(item.user.id))
            return self._readiness()
        return OTHER

    def _readiness(self) -> Outcome:
        """READY the first time every room is subscribed and full, else OTHER."""
        if self.ready or self.subscribing or self.refused:
            return OTHER
        if any(len(members) < self.expect for members in self.members.values()):
            return OTHER
        self.ready, self.members = True, {}
        return READY
