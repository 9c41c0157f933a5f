"""What a v2 client remembers across connections, sans-I/O, so that a dropped socket costs nothing.

A socket can drop at any moment: between a message leaving the server and reaching us, between a
``publish`` and its result.  The protocol gives a client what it needs to hide that from the
application: message ids that increase within a conversation, ``since`` on the hello (private
messages) and on ``subscribe`` (a room's), and ``mid`` on publish and send.  :class:`ResumeState`
is the bookkeeping that uses them:

- per subscribed room, the id of the last message delivered: the room's ``since`` on resubscribe;
- the highest id of a private message delivered to us: the hello's ``since`` (before the first
  one, a point just before the first welcome, so private messages sent while the socket is down
  are caught up even when none arrived before);
- per private conversation, the last id delivered, and the ids of our own sent messages, so that a
  message replayed after a reconnect (or seen twice for any other reason) is dropped;
- the publishes and sends still waiting for their result, each with its client message id, so a
  retry after a reconnect carries the same ``mid`` and the server stores it once.

It also drops the echo of our own typing notices, which a room sends to every subscribed socket.

Ids are compared as pairs of integers (:func:`gochat_py.protocol.message_id.parse_id`), never as
strings.  Nothing here does I/O or looks at a clock; :class:`gochat_py.client.chat.ChatClient`
drives it.
"""

from __future__ import annotations

import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from gochat_py.protocol.message_id import ZERO, format_id, parse_id
from gochat_py.protocol.v2_codes import GAP_UNKNOWN
from gochat_py.protocol.v2_messages import Event, Gap, PrivateMessage, RoomMessage, TypingEvent

Key = tuple[int, int]  # a parsed message id
FROM_START = format_id(ZERO)  # a since before every id: the whole kept backlog of a room
OWN_IDS_KEPT = 1024  # our own private ids remembered to drop their copies; older copies cannot come
CLOCK_SLACK_MS = 5000  # the welcome's clock (a connect node's) against the ids' (Redis's)


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A publish (to a room) or send (to a user) that has no result yet."""

    mid: str
    kind: Literal["publish", "send"]
    target: int  # the room, or the user
    msg: str


class ResumeState:
    """Subscriptions, watermarks and unacknowledged messages of one client, across its sockets."""

    def __init__(self, mid_prefix: str | None = None) -> None:
        self.user_id: int | None = None
        self._rooms: dict[int, Key | None] = {}  # subscribed room -> last id delivered (None: none yet)
        self._private: Key | None = None  # highest id of a private message to us delivered
        self._peers: dict[int, Key] = {}  # other party of a private conversation -> last id delivered
        self._own: OrderedDict[str, None] = OrderedDict()  # ids of private messages we sent
        self._mid_prefix = mid_prefix or secrets.token_hex(6)
        self._mid_counter = 0
        self._unacked: dict[str, Outgoing] = {}

    # ---- the hello and the subscriptions ----------------------------------------------------

    def welcome(self, user_id: int, server_time_ms: int) -> None:
        """The socket's user (private messages to this id advance the hello's ``since``) and the
        server's clock.  Without a private message yet, the next hello's ``since`` is a moment
        before this welcome: message ids begin with the time they were stored, and what is replayed
        from before that moment is dropped here by id if it was delivered already."""
        self.user_id = user_id
        if self._private is None:
            self._private = (max(0, server_time_ms - CLOCK_SLACK_MS), 0)

    def hello_since(self) -> str | None:
        return format_id(self._private) if self._private is not None else None

    def track(self, room: int, since: str | None) -> str | None:
        """Start following ``room``; the ``since`` to subscribe with.  A room followed already keeps
        its own place (subscribing again must not replay or skip anything)."""
        if room not in self._rooms:
            self._rooms[room] = parse_id(since) if since else None
        return self.room_since(room)

    def untrack(self, room: int) -> None:
        self._rooms.pop(room, None)

    def rooms(self) -> list[int]:
        return list(self._rooms)

    def room_since(self, room: int) -> str | None:
        key = self._rooms.get(room)
        return format_id(key) if key is not None else None

    def resubscriptions(self) -> list[tuple[int, str | None]]:
        """``(room, since)`` for every followed room, to send after a new welcome."""
        return [(room, self.room_since(room)) for room in self._rooms]

    # ---- what arrives ------------------------------------------------------------------------

    def accept(self, event: Event) -> bool:
        """Whether the application should see ``event``; a message it saw already is dropped.  A
        message moves its conversation's watermark; a ``gap`` whose ``since`` was not an id of this
        server forgets the watermark, since ids of that server cannot be compared with ours."""
        if isinstance(event, RoomMessage):
            if event.room not in self._rooms:
                return False  # unsubscribed meanwhile: a late copy
            key = parse_id(event.id)
            last = self._rooms[event.room]
            if key is None or (last is not None and key <= last):
                return False
            self._rooms[event.room] = key
            return True
        if isinstance(event, PrivateMessage):
            key = parse_id(event.id)
            if key is None or event.id in self._own:
                return False
            last = self._peers.get(event.user)
            if last is not None and key <= last:
                return False
            self._peers[event.user] = key
            if event.to == self.user_id and (self._private is None or key > self._private):
                self._private = key
            return True
        if isinstance(event, TypingEvent):
            return event.sender.id != self.user_id  # a room's typing reaches the typist's socket too
        if isinstance(event, Gap) and event.reason == GAP_UNKNOWN:
            if event.room is None:
                self._private = None
                self._peers.clear()
            elif event.room in self._rooms:
                self._rooms[event.room] = None
        return True

    # ---- what goes out -----------------------------------------------------------------------

    def outgoing(self, kind: Literal["publish", "send"], target: int, msg: str) -> Outgoing:
        """A new message to publish or send, with a client message id of its own."""
        self._mid_counter += 1
        item = Outgoing(f"{self._mid_prefix}-{self._mid_counter}", kind, target, msg)
        self._unacked[item.mid] = item
        return item

    def acked(self, item: Outgoing, message_id: str) -> None:
        """The server stored ``item`` as ``message_id``.  A private message of ours is not a
        message to us: it never moves the hello's ``since``, but a copy of it is dropped."""
        self._unacked.pop(item.mid, None)
        if item.kind == "send":
            self._own[message_id] = None
            while len(self._own) > OWN_IDS_KEPT:
                self._own.popitem(last=False)

    def abandoned(self, item: Outgoing) -> None:
        """The server refused ``item`` (too long, not subscribed, ...): it is not retried."""
        self._unacked.pop(item.mid, None)

    def unacked(self) -> list[Outgoing]:
        """Messages sent without a result yet, oldest first."""
        return list(self._unacked.values())
