"""Hub / Bucket / Channel: who is connected where, and pushing frames without ever blocking."""

from __future__ import annotations

from types import SimpleNamespace

import mmh3

from gochat_py.connect.hub import INTERNED, Bucket, Channel, Hub, Run
from gochat_py.connect.node import ConnectNode
from gochat_py.rpc import logic_pb2


class StuckTransport:
    """A transport whose peer reads nothing: every byte written stays in its buffer."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return sum(map(len, self.written))

    def is_closing(self) -> bool:
        return self.closing


def chan(user_id: int, user_name: str, room_id: int, limit: int = 1024) -> Channel:
    """A channel that refuses a push once more than ``limit`` bytes are waiting."""
    return Channel(user_id, user_name, room_id, StuckTransport(), limit)


def drain(channel: Channel) -> list[bytes]:
    return channel.transport.written  # type: ignore[attr-defined]


async def test_channel_push_queues_the_frame() -> None:
    channel = chan(1, "lock", 1, limit=4)
    assert channel.push(b"a") is True
    assert channel.push(b"b") is True
    assert drain(channel) == [b"a", b"b"]
    assert channel.overflowed is False


async def test_channel_push_after_close_is_refused() -> None:
    channel = chan(1, "lock", 1, limit=4)
    channel.closed = True
    assert channel.push(b"a") is False
    assert drain(channel) == []


async def test_channel_push_to_a_closing_transport_is_refused() -> None:
    channel = chan(1, "lock", 1, limit=4)
    channel.transport.closing = True  # type: ignore[attr-defined]
    assert channel.push(b"a") is False
    assert drain(channel) == []


async def test_overflow_closes_the_socket_once_and_never_blocks() -> None:
    calls: list[str] = []
    channel = chan(1, "lock", 1, limit=1)  # two bytes waiting is over the limit
    channel.on_close = calls.append
    assert [channel.push(b"1"), channel.push(b"2")] == [True, True]
    assert channel.push(b"3") is False
    assert channel.push(b"4") is False
    assert calls == ["too slow: send queue full"]
    assert channel.overflowed is True
    assert drain(channel) == [b"1", b"2"]


async def test_overflow_without_callback_is_harmless() -> None:
    channel = chan(1, "lock", 1, limit=0)
    assert channel.push(b"1") is True
    assert channel.push(b"2") is False
    assert channel.overflowed is True


async def test_bucket_choice_is_murmur3_of_the_user_id() -> None:
    hub = Hub(4)
    for user_id in (1, 2, 3, 42, 10_000):
        index = mmh3.hash(str(user_id), signed=False) % 4
        assert hub.bucket(user_id) is hub.buckets[index]
        assert hub.bucket(user_id) is hub.bucket(user_id)


async def test_users_spread_over_buckets() -> None:
    hub = Hub(4)
    used = {id(hub.bucket(user_id)) for user_id in range(1, 101)}
    assert len(used) == 4


async def test_put_files_the_channel_in_its_users_bucket() -> None:
    hub = Hub(8)
    channel = chan(7, "u7", 3, limit=4)
    hub.put(channel)
    bucket = hub.bucket(7)
    assert bucket.users == {7: {channel}}
    assert bucket.rooms == {3: {channel: None}}
    assert all(not other.users for other in hub.buckets if other is not bucket)


async def test_push_user_reaches_every_channel_of_the_user() -> None:
    hub = Hub(4)
    tabs = [chan(1, "lock", 1, limit=4) for _ in range(3)]
    other = chan(2, "test", 1, limit=4)
    for channel in [*tabs, other]:
        hub.put(channel)
    assert hub.push_user(1, b"hello") == 3
    assert [drain(channel) for channel in tabs] == [[b"hello"]] * 3
    assert drain(other) == []
    assert hub.push_user(99, b"nobody") == 0


async def test_push_room_reaches_members_in_every_bucket_only() -> None:
    hub = Hub(4)
    members = [chan(user_id, f"u{user_id}", 1, limit=4) for user_id in range(1, 21)]
    outsiders = [chan(100, "x", 2, limit=4), chan(101, "y", 0, limit=4), chan(102, "z", -1, limit=4)]
    for channel in members + outsiders:
        hub.put(channel)
    assert len({id(hub.bucket(c.user_id)) for c in members}) > 1
    assert hub.push_room(1, b"room") == 20
    assert all(drain(channel) == [b"room"] for channel in members)
    assert all(drain(channel) == [] for channel in outsiders)
    assert hub.room_count(1) == 20
    assert hub.room_count(2) == 1


async def test_channels_without_a_room_get_private_frames_only() -> None:
    hub = Hub(2)
    for room in (0, -1):
        channel = chan(5, "u", room, limit=4)
        hub.put(channel)
        assert room not in hub.bucket(5).rooms
        assert hub.push_room(room, b"r") == 0
        assert hub.push_user(5, b"p") == 1
        assert drain(channel) == [b"p"]
        hub.remove(channel)


async def test_push_room_counts_only_accepted_frames() -> None:
    hub = Hub(2)
    full = chan(1, "a", 1, limit=0)
    free = chan(2, "b", 1, limit=4)
    hub.put(full)
    hub.put(free)
    assert hub.push_room(1, b"x") == 2
    assert hub.push_room(1, b"y") == 1
    assert full.overflowed is True
    assert drain(free) == [b"x", b"y"]


async def test_remove_stops_delivery_and_forgets_empty_sets() -> None:
    hub = Hub(4)
    channel = chan(3, "c", 9, limit=4)
    hub.put(channel)
    assert hub.connection_count() == 1
    hub.remove(channel)
    assert channel.closed is True
    assert hub.connection_count() == 0
    assert hub.room_count(9) == 0
    assert hub.bucket(3).users == {}
    assert hub.bucket(3).rooms == {}
    assert hub.push_user(3, b"x") == 0
    assert hub.push_room(9, b"x") == 0
    assert channel.push(b"late") is False


async def test_removing_twice_is_harmless() -> None:
    hub = Hub(4)
    keep = chan(3, "c", 9, limit=4)
    gone = chan(3, "c", 9, limit=4)
    hub.put(keep)
    hub.put(gone)
    hub.remove(gone)
    hub.remove(gone)
    assert hub.connection_count() == 1
    assert hub.room_count(9) == 1
    assert hub.push_user(3, b"x") == 1
    assert drain(keep) == [b"x"]


async def test_removing_a_channel_never_added_is_harmless() -> None:
    hub = Hub(4)
    hub.remove(chan(1, "a", 1, limit=1))
    assert hub.connection_count() == 0


async def test_adding_twice_counts_once() -> None:
    hub = Hub(4)
    channel = chan(4, "d", 1, limit=4)
    hub.put(channel)
    hub.put(channel)
    assert hub.connection_count() == 1
    assert hub.push_room(1, b"x") == 1
    assert drain(channel) == [b"x"]


async def test_user_with_tabs_in_different_rooms() -> None:
    hub = Hub(4)
    in_one = chan(1, "lock", 1, limit=4)
    in_two = chan(1, "lock", 2, limit=4)
    hub.put(in_one)
    hub.put(in_two)
    assert hub.connection_count() == 2
    assert hub.push_room(2, b"two") == 1
    assert drain(in_one) == []
    assert drain(in_two) == [b"two"]
    hub.remove(in_two)
    assert hub.room_count(2) == 0
    assert hub.room_count(1) == 1


async def test_bucket_alone() -> None:
    bucket = Bucket()
    channel = chan(1, "a", 2, limit=2)
    bucket.put(channel)
    assert bucket.push_user(1, b"u") == 1
    assert bucket.push_room(2, b"r") == 1
    assert bucket.push_room(3, b"r") == 0
    bucket.remove(channel)
    bucket.remove(channel)
    assert (bucket.users, bucket.rooms) == ({}, {})
    assert drain(channel) == [b"u", b"r"]


async def test_close_user_asks_every_socket_of_the_user_to_close() -> None:
    hub = Hub(4)
    closed: list[tuple[int, str]] = []
    tabs = [chan(1, "lock", room, limit=64) for room in (1, 2, 0)]
    other = chan(2, "test", 1, limit=64)
    for n, channel in enumerate([*tabs, other]):
        channel.on_close = lambda reason, n=n: closed.append((n, reason))
        hub.put(channel)
    assert hub.close_user(1, "logged out") == 3
    assert sorted(closed) == [(0, "logged out"), (1, "logged out"), (2, "logged out")]
    assert hub.close_user(99, "logged out") == 0


async def test_a_room_s_channels_can_be_read_from_any_bucket_on_and_lazily() -> None:
    hub = Hub(4)
    members = [chan(user_id, f"u{user_id}", 7) for user_id in range(1, 41)]
    for channel in members:
        hub.put(channel)
    hub.put(chan(99, "elsewhere", 8))
    for start in range(4):
        got = list(hub.iter_room(7, start=start))
        assert sorted(c.user_id for c in got) == list(range(1, 41))  # each member once, from any start
        assert got[0] in hub.buckets[start].rooms[7]
    assert list(hub.iter_room(12345)) == []


def test_frames_held_while_a_resuming_socket_joined_keep_their_ids() -> None:
    """A socket that resumed (``since``) drops the held kept messages up to the backlog's end and
    gets the others with their ids, as every live frame after them: a frame without its id would
    leave the client resuming from an older id, and it would see that message twice."""
    hub = Hub(1)
    channel = chan(2, "bob", 7, limit=1 << 20)
    channel.ids = True
    hub.put(channel)
    hub.hold(channel)
    items = [((1, 0), b"p1", b"i1", b""), ((3, 0), b"p3", b"i3", b"")]
    assert channel.push(b"p1p3", Run(b"p1p3", items, room=7))
    node = SimpleNamespace(hub=hub, encode=lambda body: body, service=SimpleNamespace(note_private=lambda *a: None))
    ConnectNode._catch_up(node, channel, logic_pb2.ConnectReply(user_id=2, backlog_end="2-0"))  # type: ignore[arg-type]
    assert drain(channel) == [b"i3"]


def test_sockets_of_a_room_share_its_id_and_equal_floors() -> None:
    hub = Hub(4)
    first = Channel(1, "a", 0, StuckTransport(), 1024, version=2)
    second = Channel(2, "b", 0, StuckTransport(), 1024, version=2)
    hub.put(first)
    hub.put(second)
    hub.subscribe(first, int("70000"))  # equal ints, different objects
    hub.subscribe(second, int("70000"))
    assert isinstance(first.rooms, dict) and isinstance(second.rooms, dict)
    assert next(iter(first.rooms)) is next(iter(second.rooms))
    floor = hub.interned((1796612583000, 4))
    assert hub.interned((int("1796612583000"), 4)) is floor
    assert hub.room_count(70000) == 2
    hub.unsubscribe(first, 70000)
    assert hub.room_count(70000) == 1 and first.rooms == {}


def test_interning_keeps_only_recent_values() -> None:
    def key(ms: int, seq: int) -> tuple[int, int]:
        return (int(str(ms)), seq)  # a new object each time, as parse_id makes them

    hub = Hub(1)
    old = hub.interned(key(10**12, 1))
    assert hub.interned(key(10**12, 1)) is old
    for n in range(INTERNED):
        hub.interned(key(10**12 + 1, n))
    again = hub.interned(key(10**12, 1))
    assert again is not old and again == old  # forgotten: the new equal object is handed out
