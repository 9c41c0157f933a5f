"""Kept messages, the pure parts: ids, where a joining socket's backlog starts, how the hot store
and the database share a range, and how a node writes a run to a socket that has a backlog."""

from __future__ import annotations

import pytest

from gochat_py.connect.hub import Channel, Hub, Run
from gochat_py.logic.history import HistoryReader, inbox_start, known_id
from gochat_py.protocol.join import BAD_SINCE, Join, parse_join
from gochat_py.protocol.message_id import format_id, parse_id, with_id
from gochat_py.protocol.tcp_frame import parse_client_message
from gochat_py.storage.history import Conversation, HotRead
from tests.unit.test_hub import StuckTransport


def test_ids_parse_compare_as_numbers_and_refuse_garbage() -> None:
    assert parse_id("1765054800000-0") == (1765054800000, 0)
    assert parse_id("9-0") < parse_id("10-0")  # as strings "9-0" > "10-0"
    assert format_id((12, 3)) == "12-3"
    for bad in ("", "12", "-1", "1-", "a-1", "1-b", "1-2-3", " 1-2", "١-٢", 12, None, ["1-2"], "1" * 40 + "-1"):
        assert parse_id(bad) is None, bad


def test_with_id_appends_the_id_as_the_last_key() -> None:
    assert with_id(b'{"op":3,"msg":"x"}', "5-1") == b'{"op":3,"msg":"x","id":"5-1"}'
    assert with_id(b"{}", "5-1") == b'{"id":"5-1"}'
    assert with_id(b"not json", "5-1") == b"not json"


def test_join_since_is_opt_in_and_bad_values_are_kept_as_unknown() -> None:
    assert parse_join(b'{"authToken":"t","roomId":1}') == Join("t", 1, None)
    assert parse_join(b'{"authToken":"t","roomId":1,"since":""}').since == ""
    assert parse_join(b'{"authToken":"t","roomId":1,"Since":"5-0"}').since == "5-0"
    for raw in (b"42", b"null", b"[]", b"{}", b"true"):
        assert parse_join(b'{"authToken":"t","roomId":1,"since":' + raw + b"}").since == BAD_SINCE
    assert parse_id(BAD_SINCE) is None
    assert parse_client_message(b'{"op":6,"authToken":"t","roomId":1,"since":"7-0"}').since == "7-0"
    assert parse_client_message(b'{"op":6,"authToken":"t","roomId":1}').since is None


@pytest.mark.parametrize(
    ("since", "was_offline", "cursor", "start"),
    [
        (None, False, "5-0", None),  # a v1 socket beside another one: nothing
        (None, True, "5-0", "5-0"),  # a v1 socket, user was away: what was not delivered
        (None, True, "0-0", "0-0"),  # ...never delivered anything: all that is kept
        (None, True, "", None),  # ...never sent a private message: nothing to read
        ("", False, "5-0", None),  # ids from now on
        ("", True, "5-0", "5-0"),  # ids from now on, and what waited while away
        ("9-0", False, "5-0", "9-0"),  # resume
        ("9-0", True, "5-0", "9-0"),  # resume: the socket had every private message up to since
        ("3-0", True, "5-0", "3-0"),
        ("9-0", True, "", "9-0"),
        ("", True, "", None),
        ("garbage", False, "5-0", ""),  # unknown: what is kept
        (BAD_SINCE, True, "5-0", ""),
    ],
)
def test_where_a_joining_sockets_private_backlog_starts(
    since: str | None, was_offline: bool, cursor: str, start: str | None
) -> None:
    assert inbox_start(since, was_offline, cursor) == start


class FakeHot:
    def __init__(self, entries: list[str], floor: tuple[int, int] | None) -> None:
        self.entries = sorted(entries, key=parse_id, reverse=True)
        self.floor = floor

    async def newest(self, conversation, below, above, count):  # type: ignore[no-untyped-def]
        chosen = [
            (i, b"h" + i.encode())
            for i in self.entries
            if (below is None or parse_id(i) < below) and (above is None or parse_id(i) > above)
        ]
        return HotRead(chosen[:count], self.floor)


class FakeArchive:
    def __init__(self, ids: list[str]) -> None:
        self.ids = sorted(ids, key=parse_id, reverse=True)
        self.asked: list[tuple] = []

    async def newest(self, conversation, below, above, limit):  # type: ignore[no-untyped-def]
        self.asked.append((below, above, limit))
        chosen = [
            (i, b"d" + i.encode())
            for i in self.ids
            if (below is None or parse_id(i) < below) and (above is None or parse_id(i) > above)
        ]
        return chosen[:limit]


ROOM = Conversation.room(1)


async def test_a_range_the_hot_store_covers_never_asks_the_database() -> None:
    archive = FakeArchive(["1-0", "2-0"])
    reader = HistoryReader(FakeHot(["3-0", "4-0"], floor=(0, 0)), archive, size=10)  # type: ignore[arg-type]
    assert [i for i, _ in await reader.newest(ROOM, None, None, 10)] == ["4-0", "3-0"]
    assert archive.asked == []


async def test_below_the_floor_the_database_fills_in_without_overlap() -> None:
    # the hot store was trimmed (or Redis lost its data) at 3-0: 1-0 and 2-0 are only in the database,
    # which also has 3-0 (written by then): it must not come twice
    archive = FakeArchive(["1-0", "2-0", "3-0"])
    reader = HistoryReader(FakeHot(["3-0", "4-0"], floor=(3, 0)), archive, size=10)  # type: ignore[arg-type]
    got = await reader.newest(ROOM, None, None, 10)
    assert got == [("4-0", b"h4-0"), ("3-0", b"h3-0"), ("2-0", b"d2-0"), ("1-0", b"d1-0")]
    page, more = await reader.page(ROOM, None, 3)
    assert [i for i, _ in page] == ["4-0", "3-0", "2-0"] and more is True
    page, more = await reader.page(ROOM, (2, 0), 3)
    assert [i for i, _ in page] == ["1-0"] and more is False


async def test_without_a_hot_store_everything_comes_from_the_database() -> None:
    archive = FakeArchive(["1-0", "2-0"])
    reader = HistoryReader(FakeHot([], floor=None), archive, size=10)  # type: ignore[arg-type]
    assert [i for i, _ in await reader.newest(ROOM, (9, 0), (1, 0), 10)] == ["2-0"]


async def test_backlog_merges_room_and_inbox_in_id_order_up_to_the_queue_end() -> None:
    hot = FakeHot(["2-0", "4-0", "6-0", "8-0"], floor=(0, 0))
    reader = HistoryReader(hot, FakeArchive([]), size=10)  # type: ignore[arg-type]
    backlog = await reader.backlog("3-0", "6-0", room_id=1, inbox_user=7, inbox_after="1-0")
    # the fake serves one store for both conversations: room after 3-0, inbox after 1-0, both <= 6-0
    assert [i for i, _, _ in backlog.messages] == ["2-0", "4-0", "4-0", "6-0", "6-0"]
    assert backlog.gap == ""


async def test_backlog_says_too_old_or_unknown_and_keeps_the_newest() -> None:
    hot = FakeHot([f"{n}-0" for n in range(1, 8)], floor=(0, 0))
    reader = HistoryReader(hot, FakeArchive([]), size=3)  # type: ignore[arg-type]
    too_old = await reader.backlog("1-0", "7-0", room_id=1, inbox_user=7, inbox_after=None)
    assert too_old.gap == "too_old" and [i for i, _, _ in too_old.messages] == ["5-0", "6-0", "7-0"]
    unknown = await reader.backlog("nonsense", "7-0", room_id=1, inbox_user=7, inbox_after=None)
    assert unknown.gap == "unknown" and [i for i, _, _ in unknown.messages] == ["5-0", "6-0", "7-0"]
    future = await reader.backlog(f"{7 + 10**9}-0", "7-0", room_id=1, inbox_user=7, inbox_after=None)
    assert future.gap == "unknown"


def run_of(*ids: str | None) -> Run:
    """A run of frames ``f<id>`` (``p`` for frames that are not kept messages, e.g. op 5)."""

    def item(i: str | None) -> tuple[tuple[int, int] | None, bytes, bytes, bytes]:
        if i is None:
            return None, b"[p]", b"[p]", b""
        return parse_id(i), f"[f{i}]".encode(), f"[f{i}+id]".encode(), f"[v{i}]".encode()

    items = [item(i) for i in ids]
    return Run(b"".join(item[1] for item in items), items)


def test_a_socket_that_opted_in_gets_ids_and_skips_what_its_backlog_had() -> None:
    hub = Hub(2)
    plain = Channel(1, "a", 5, StuckTransport(), 1 << 20)
    resumed = Channel(2, "b", 5, StuckTransport(), 1 << 20)
    resumed.ids, resumed.floor = True, (2, 0)
    hub.put(plain)
    hub.put(resumed)
    assert hub.id_channels == 1
    run = run_of("1-0", None, "2-0", "3-0")
    assert hub.push_room(5, run.data, run) == 2
    assert plain.transport.written == [b"[f1-0][p][f2-0][f3-0]"]  # type: ignore[attr-defined]
    assert resumed.transport.written == [b"[p][f3-0+id]"]  # type: ignore[attr-defined]
    later = run_of("4-0")
    hub.push_room(5, later.data, later)
    assert resumed.transport.written[-1] == b"[f4-0+id]"  # type: ignore[attr-defined]
    hub.remove(resumed)
    assert hub.id_channels == 0


def test_a_held_channel_keeps_everything_back_until_released() -> None:
    hub = Hub(1)
    channel = Channel(1, "a", 5, StuckTransport(), 1 << 20)
    hub.put(channel)
    hub.hold(channel)
    run = run_of("1-0")
    assert hub.push_room(5, run.data, run) == 1
    assert hub.push_user(1, b"raw") == 1
    assert channel.transport.written == []  # type: ignore[attr-defined]
    assert hub.holding == 1
    assert hub.release(channel) == [run, b"raw"]
    assert hub.holding == 0
    hub.hold(channel)
    hub.remove(channel)  # a join refused while held: nothing stays counted
    assert hub.holding == 0


def test_ids_past_what_redis_takes_are_not_ids() -> None:
    assert parse_id("18446744073709551615-18446744073709551615") == (2**64 - 1, 2**64 - 1)
    assert parse_id("18446744073709551616-0") is None
    assert parse_id("0-18446744073709551616") is None
    assert known_id("5-0", "5-0") == (5, 0)
    assert known_id("18446744073709551615-0", "5-0") is None  # from the future
    assert known_id("garbage", "5-0") is None


def test_a_v1_socket_loses_only_the_backlogs_own_messages_from_what_was_held() -> None:
    run = run_of("1-0", None, "2-0", "3-0")
    assert run.without({(2, 0)}) == b"[f1-0][p][f3-0]"
    assert run.without(set()) == run.data
