"""Who is connected where: buckets -> rooms -> channels, as in the original.

Users are spread over buckets by murmur3 of their id, so the per-user maps stay small; a room
lives in every bucket that has a member of it, and a room frame visits every bucket.  Everything
here runs on the event loop thread, so plain dicts and sets need no locks (the original's lock
bugs cannot happen).  A channel is a set member: adding it twice or removing it twice is
harmless, and a user may hold several channels (tabs, devices).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol, TypeAlias, TypeVar

import mmh3

from gochat_py.metrics import SLOW_CONSUMERS


class Transport(Protocol):
    """The part of an asyncio transport a channel writes through."""

    def write(self, data: bytes) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...


Key: TypeAlias = tuple[int, int]  # a parsed message id (protocol.message_id)
# One frame of a run: the id of a kept message (op 2 or 3; None for others), then the frame in each
# form: as v1 sockets get it, with its id in the body (v1 sockets that opted in), as a v2 event.
# A form the frame has no place in is b"" (a v2 event for v1 sockets, a member list for v2 ones).
Item: TypeAlias = tuple[Key | None, bytes, bytes, bytes]
PLAIN, WITH_ID, V2 = 1, 2, 3  # an Item's forms, by index
INTERNED = 1024  # room ids and floors kept for sharing (Hub.interned)
_V = TypeVar("_V", Key, int)


class Run:
    """Consecutive frames for one target (``room``; 0 for a user), as a delivery writes them, in
    every form a socket may need, joined, and one by one for a socket that has some of them
    already (from its backlog).  ``skip``: the tag of a socket that gets none of it (the one a
    private message was sent from, for the copy to its sender; 0 = none)."""

    __slots__ = ("data", "first", "items", "room", "skip", "v2", "with_ids")

    def __init__(self, data: bytes, items: list[Item], room: int = 0, skip: int = 0) -> None:
        self.data = data
        self.items = items
        self.room = room
        self.skip = skip
        self.with_ids = b"".join(item[WITH_ID] for item in items)
        self.v2 = b"".join(item[V2] for item in items)
        keys = [item[0] for item in items if item[0] is not None]
        self.first = min(keys) if keys else None  # the oldest kept message in the run

    def after(self, floor: Key, form: int) -> bytes:
        """The run in ``form`` less the kept messages up to ``floor``."""
        return b"".join(i[form] for i in self.items if i[0] is None or i[0] > floor)

    def without(self, keys: set[Key]) -> bytes:
        """The run (v1, without ids) less the messages in ``keys``."""
        return b"".join(i[PLAIN] for i in self.items if i[0] is None or i[0] not in keys)


class Channel:
    """One client socket's outbound side.

    Frames arrive already encoded for the socket's transport (and already joined when several go
    to the same socket at once), and are written straight to the transport: no task, queue or
    wake-up per socket.  ``push`` never blocks.  The transport's buffer is the bounded send
    queue: past ``limit`` bytes the client is too slow to keep up, and rather than drop frames
    silently (the original), the channel is marked overflowed and closes the socket through
    ``on_close`` (set by the front end), so the client reconnects and knows it missed something.

    A v1 socket is in one room (``room_id``) for its life.  A socket that opted in to ids (``ids``)
    gets the variant of each run whose op-2 and op-3 bodies carry their id.  A v2 socket
    (``version`` 2) is in the ``rooms`` it subscribed to and gets every run as v2 events.  While
    it joins or subscribes, its frames are ``held`` (the node writes the backlog first, then what
    was held, less what the backlog already had); after that, kept messages up to the target's
    floor (the end of its backlog: ``floor``, and for a v2 socket each room's in ``rooms``, a room
    -> floor map) that task delivers late are not written again.  A v2 channel's ``tag`` is its
    number on this node: a private message sent from it names it, and its copy to the sender's
    sockets skips it.
    """

    __slots__ = (
        "auth_token",
        "closed",
        "floor",
        "held",
        "ids",
        "limit",
        "on_close",
        "overflowed",
        "room_id",
        "rooms",
        "tag",
        "transport",
        "user_id",
        "user_name",
        "version",
    )

    def __init__(
        self, user_id: int, user_name: str, room_id: int, transport: Transport, limit: int, version: int = 1
    ) -> None:
        self.user_id = user_id
        self.user_name = user_name
        self.room_id = room_id
        self.transport = transport
        self.limit = limit
        self.version = version
        self.closed = False
        self.overflowed = False
        self.on_close: Callable[[str], None] | None = None
        self.ids = version == 2
        self.floor: Key | None = None
        self.held: list[Run | bytes] | None = None
        # v2: room -> the floor of its subscribe's backlog (None: none); v1: its one room, if any
        self.rooms: dict[int, Key | None] | tuple[int, ...] = {} if version == 2 else (room_id,) if room_id > 0 else ()
        self.auth_token = ""  # v2: the hello's token, which every command acts with
        self.tag = 0  # v2: set by the node at the hello

    def writable(self) -> bool:
        return not self.closed and not self.transport.is_closing()

    def render(self, run: Run) -> bytes:
        """The run as this socket gets it."""
        if isinstance(self.rooms, dict):
            if run.skip and run.skip == self.tag:
                return b""
            floor = self.rooms.get(run.room) if run.room else self.floor
            if floor is None or run.first is None or run.first > floor:
                return run.v2
            return run.after(floor, V2)
        if not self.ids:
            return run.data
        floor = self.floor
        return run.with_ids if floor is None or run.first is None or run.first > floor else run.after(floor, WITH_ID)

    def push(self, data: bytes, run: Run | None = None) -> bool:
        """Writes ``data``; ``run``, when the delivery built one, is the same frames in the forms
        other sockets need.  False when nothing was written."""
        if self.held is not None:
            self.held.append(data if run is None else run)
            return True
        if not self.writable():
            return False
        if self.transport.get_write_buffer_size() > self.limit:
            if not self.overflowed:
                self.overflowed = True
                SLOW_CONSUMERS.inc()
                self.close("too slow: send queue full")
            return False
        if run is not None:
            data = self.render(run)
        if not data:
            return False
        self.transport.write(data)
        return True

    def close(self, reason: str) -> None:
        """Asks the front end to close the socket; the channel leaves the hub when it has."""
        if self.on_close is not None and not self.closed:
            self.on_close(reason)


class Bucket:
    """A share of the node's sockets.  A room's members are a dict used as an ordered set: a set
    costs about twice the memory per member (a v2 socket in many rooms is in many of these)."""

    __slots__ = ("rooms", "users")

    def __init__(self) -> None:
        self.users: dict[int, set[Channel]] = {}
        self.rooms: dict[int, dict[Channel, None]] = {}

    def put(self, channel: Channel) -> None:
        self.users.setdefault(channel.user_id, set()).add(channel)
        for room_id in channel.rooms:
            self.rooms.setdefault(room_id, {})[channel] = None

    def remove(self, channel: Channel) -> None:
        _discard(self.users, channel.user_id, channel)
        for room_id in channel.rooms:
            _discard(self.rooms, room_id, channel)

    def push_user(self, user_id: int, frame: bytes, run: Run | None = None) -> int:
        return sum(channel.push(frame, run) for channel in self.users.get(user_id, ()))

    def push_room(self, room_id: int, frame: bytes, run: Run | None = None) -> int:
        return sum(channel.push(frame, run) for channel in self.rooms.get(room_id, ()))


def _discard(index: dict[int, set[Channel]] | dict[int, dict[Channel, None]], key: int, channel: Channel) -> None:
    members = index.get(key)
    if members is not None:
        if isinstance(members, set):
            members.discard(channel)
        else:
            members.pop(channel, None)
        if not members:
            del index[key]


class Hub:
    def __init__(self, bucket_count: int) -> None:
        self.buckets = [Bucket() for _ in range(bucket_count)]
        # how many sockets want frames with ids, and how many are catching up: while none does,
        # a delivery builds neither variant
        self.id_channels = 0
        self.holding = 0
        self.v2_channels = 0  # counted in id_channels too
        # Room ids and floors as shared objects: sockets subscribed at about the same time hold
        # equal floors (the queue's end then), and every socket of a room holds its id; one object
        # each instead of one per socket is a good part of a v2 socket's memory.  Bounded: only
        # recent values are looked up, older ones stay shared where they already are.
        self._interned: dict[Key | int, Key | int] = {}

    def interned(self, value: _V) -> _V:
        """``value``, or an equal object handed out earlier."""
        known = self._interned.get(value)
        if known is not None:
            return known  # type: ignore[return-value]
        interned = self._interned
        interned[value] = value
        if len(interned) > INTERNED:
            del interned[next(iter(interned))]
        return value

    def bucket(self, user_id: int) -> Bucket:
        return self.buckets[mmh3.hash(str(user_id), signed=False) % len(self.buckets)]

    def put(self, channel: Channel) -> None:
        self.bucket(channel.user_id).put(channel)
        self.id_channels += channel.ids
        self.v2_channels += channel.version == 2

    def remove(self, channel: Channel) -> None:
        if channel.closed:
            return
        channel.closed = True
        self.bucket(channel.user_id).remove(channel)
        self.id_channels -= channel.ids
        self.v2_channels -= channel.version == 2
        self.release(channel)

    def subscribe(self, channel: Channel, room_id: int) -> None:
        """A v2 channel enters a room (``channel.rooms`` is a dict for those)."""
        assert isinstance(channel.rooms, dict)
        if room_id not in channel.rooms and not channel.closed:
            room_id = self.interned(room_id)
            channel.rooms[room_id] = None
            self.bucket(channel.user_id).rooms.setdefault(room_id, {})[channel] = None

    def unsubscribe(self, channel: Channel, room_id: int) -> None:
        assert isinstance(channel.rooms, dict)
        if room_id in channel.rooms:
            del channel.rooms[room_id]
            _discard(self.bucket(channel.user_id).rooms, room_id, channel)

    def hold(self, channel: Channel) -> None:
        """Frames for the channel are kept back until :meth:`release`."""
        if channel.held is None:
            channel.held = []
            self.holding += 1

    def release(self, channel: Channel) -> list[Run | bytes]:
        """Ends holding; returns what was held back, in order."""
        held, channel.held = channel.held, None
        if held is None:
            return []
        self.holding -= 1
        return held

    def push_user(self, user_id: int, frame: bytes, run: Run | None = None) -> int:
        return self.bucket(user_id).push_user(user_id, frame, run)

    def close_user(self, user_id: int, reason: str) -> int:
        channels = self.channels_of_user(user_id)
        for channel in channels:
            channel.close(reason)
        return len(channels)

    def push_room(self, room_id: int, frame: bytes, run: Run | None = None) -> int:
        return sum(bucket.push_room(room_id, frame, run) for bucket in self.buckets)

    def channels_of_user(self, user_id: int) -> list[Channel]:
        return list(self.bucket(user_id).users.get(user_id, ()))

    def iter_room(self, room_id: int, start: int = 0) -> Iterator[Channel]:
        """The room's channels, bucket by bucket from bucket ``start`` on (lazily: a caller that
        wants a few of a huge room reads only those)."""
        count = len(self.buckets)
        for n in range(count):
            yield from self.buckets[(start + n) % count].rooms.get(room_id, ())

    def connection_count(self) -> int:
        return sum(len(chs) for bucket in self.buckets for chs in bucket.users.values())

    def room_count(self, room_id: int) -> int:
        return sum(len(bucket.rooms.get(room_id, ())) for bucket in self.buckets)
