"""The soak's counting rules: stamps, expected windows, lost / misdelivered, duplicates, reorders,
join confirmation and the settle rule, and its options (loopback only)."""

from __future__ import annotations

import argparse
import array
import asyncio

import pytest

from gochat_py.bench.options import TargetError
from gochat_py.bench.procstats import Sample
from gochat_py.bench.soak import (
    SoakOptions,
    add_soak_arguments,
    check_soak_options,
    process_rows,
    resume_figures,
    soak_options_from_args,
)
from gochat_py.bench.soak_analysis import (
    ConnectionRecord,
    ReceiverState,
    SentMessage,
    count_deliveries,
    expected_window,
    frame_id,
    frame_soak_stamp,
    gap_reason,
    make_soak_stamp,
    message_key,
    parse_soak_stamp,
    resume_spans,
    split_key,
)
from gochat_py.bench.soak_clients import LiveConnection, SoakPlan, SoakUser, SoakWorker
from gochat_py.bench.stamp import parse_stamp
from gochat_py.protocol.frames import OP_ROOM_SEND, Send, history_gap_body, room_info_body
from gochat_py.protocol.message_id import with_id

S = 1_000_000_000
GRACE = 2 * S


def test_stamp_round_trip() -> None:
    text = make_soak_stamp("ab12", 7, 3, 123456789)
    assert text == "ab12|7|3|123456789"
    stamp = parse_soak_stamp(text.encode())
    assert stamp is not None and (stamp.run_id, stamp.sender, stamp.seq, stamp.sent_ns) == (b"ab12", 7, 3, 123456789)
    assert parse_stamp(text.encode()) is None  # the benchmark's counters never take it for theirs


@pytest.mark.parametrize("text", [b"", b"hi", b"a|1|2", b"a|1|2|3|4", b"a|-1|2|3", b"a|1|x|3"])
def test_not_a_soak_stamp(text: bytes) -> None:
    assert parse_soak_stamp(text) is None


def test_stamp_found_in_a_room_frame() -> None:
    body = Send(msg=make_soak_stamp("r1", 4, 9, 55), from_user_id=3, from_user_name="x", room_id=8, op=OP_ROOM_SEND)
    stamp = frame_soak_stamp(body.encode())
    assert stamp is not None and (stamp.sender, stamp.seq, stamp.sent_ns) == (4, 9, 55)
    assert frame_soak_stamp(room_info_body(8, {"3": "x"})) is None


def test_keys() -> None:
    assert split_key(message_key(123, 456)) == (123, 456)
    assert message_key(1, 0) > message_key(0, 2**32 - 1)


def room_msg(sender: int, seq: int, room: int, send_s: float, accepted: bool = True) -> SentMessage:
    send = int(send_s * S)
    return SentMessage(sender, seq, "room", room, -1, send, send + S // 100, accepted)


def private_msg(sender: int, seq: int, target: int, send_s: float) -> SentMessage:
    send = int(send_s * S)
    return SentMessage(sender, seq, "private", 1, target, send, send + S // 100, True)


def conn(conn_id: int, user: int, room: int, confirmed_s: float, closed_s: float = 0, *keys: int) -> ConnectionRecord:
    record = ConnectionRecord(conn_id, user, "ws", room, int((confirmed_s - 0.1) * S), int(confirmed_s * S))
    record.closed_ns = int(closed_s * S)
    record.received = array.array("Q", keys)
    return record


def test_window() -> None:
    c = conn(1, 0, 1, confirmed_s=10, closed_s=20)
    assert not expected_window(c, room_msg(5, 0, 1, 9.9), GRACE)  # sent before the join was confirmed
    assert expected_window(c, room_msg(5, 0, 1, 10.5), GRACE)
    assert expected_window(c, room_msg(5, 0, 1, 17.9), GRACE)  # answered 17.91, + 2 s < 20
    assert not expected_window(c, room_msg(5, 0, 1, 18.5), GRACE)  # closed within the grace period
    assert not expected_window(c, room_msg(5, 0, 1, 12, accepted=False), GRACE)
    still_open = conn(2, 0, 1, confirmed_s=10)
    assert expected_window(still_open, room_msg(5, 0, 1, 99), GRACE)
    never = conn(3, 0, 1, confirmed_s=0)
    assert not expected_window(never, room_msg(5, 0, 1, 99), GRACE)


def test_lost_delivered_and_outside() -> None:
    messages = [
        room_msg(5, 0, 1, 11),  # room 1: expected at both connections of room 1
        room_msg(5, 1, 2, 12),  # room 2: nobody is there
        private_msg(6, 0, 0, 13),  # to user 0: expected at connection 1
        room_msg(6, 1, 1, 19),  # room 1, within the grace of connection 1's close
    ]
    k = [m.key for m in messages]
    c1 = conn(1, 0, 1, 10, 20, k[0], k[2], k[3])  # all it should get, plus one outside its window
    c2 = conn(2, 1, 1, 10, 0)  # open to the end, got nothing: two room messages lost
    tally = count_deliveries(messages, [c1, c2], GRACE, t0_ns=0)
    assert tally["expected"] == 4  # c1: k0, k2; c2: k0, k3
    assert tally["delivered"] == 3 and tally["delivered_expected"] == 2
    assert tally["lost"] == 2
    assert tally["lost_by_kind_and_transport"] == {"room_to_ws": 2}
    assert tally["delivered_outside_window"] == 1 and tally["misdelivered"] == 0
    lost = tally["lost_samples"]
    assert [(s["sender"], s["seq"]) for s in lost] == [(5, 0), (6, 1)]
    assert lost[0]["connection"]["id"] == 2 and lost[0]["received_by_connections"] == 1
    assert lost[1]["received_by_connections"] == 1  # k3 reached c1 (outside its window)


def test_misdelivered_and_unaccepted() -> None:
    messages = [room_msg(5, 0, 2, 11), private_msg(5, 1, 3, 12), room_msg(5, 2, 1, 13, accepted=False)]
    c1 = conn(1, 0, 1, 10, 0, *(m.key for m in messages))
    tally = count_deliveries(messages, [c1], GRACE)
    assert tally["misdelivered"] == 2 and tally["delivered_unaccepted"] == 1
    assert tally["expected"] == 0 and tally["lost"] == 0
    assert {s["kind"] for s in tally["misdelivered_samples"]} == {"room", "private"}


def test_connection_record_wire_round_trip() -> None:
    record = conn(7, 3, 9, 1.5, 4.0, 11, 12)
    record.planned, record.reason = False, "closed by server"
    again = ConnectionRecord.from_wire(record.to_wire())
    assert again == record


def test_receiver_state_duplicates_and_reorders() -> None:
    state = ReceiverState()
    assert state.receive(1, 0) == (True, True)
    assert state.receive(1, 2) == (True, True)
    assert state.receive(1, 1) == (True, False)  # 1 after 2: reordered
    assert state.receive(1, 2) == (False, True)  # duplicate
    assert state.receive(2, 0) == (True, True)  # another sender has its own order


# ---------------------------------------------------------------------- resume (--resume)


def resumed(record: ConnectionRecord) -> ConnectionRecord:
    record.resumed = True
    return record


def test_resume_counts_what_was_sent_while_away() -> None:
    """User 0 is away for m3..m5 and gets them when it rejoins with since: nothing lost."""
    m = [room_msg(5, seq, 1, 10.5 + seq) for seq in range(8)]  # m0..m7 at 10.5 .. 17.5
    k = [msg.key for msg in m]
    first = conn(1, 0, 1, 10, 13.2, k[0], k[1], k[2])  # closed at 13.2: m3 (13.5) onwards missed
    again = resumed(conn(2, 0, 1, 16.3, 0, k[3], k[4], k[5], k[6], k[7]))  # backlog m3..m5, then live
    tally = count_deliveries(m, [first, again], GRACE, resume=True)
    assert tally["expected"] == 8 and tally["delivered_expected"] == 8
    assert tally["lost"] == 0 and tally["delivered_outside_window"] == 0
    # counted connection by connection (no resume), m3..m5 were not expected anywhere, and m1, m2
    # were answered within the grace of the first connection's close
    plain = count_deliveries(m, [first, again], GRACE)
    assert plain["lost"] == 0 and plain["expected"] == 1 + 2  # first: m0; again: m6, m7
    assert plain["delivered_outside_window"] == 5


def test_resume_a_message_missing_after_the_rejoin_is_lost() -> None:
    m = [room_msg(5, seq, 1, 10.5 + seq) for seq in range(6)]
    k = [msg.key for msg in m]
    first = conn(1, 0, 1, 10, 13.2, k[0], k[1], k[2])
    again = resumed(conn(2, 0, 1, 16.3, 0, k[3], k[5]))  # m4 never came
    tally = count_deliveries(m, [first, again], GRACE, resume=True)
    assert tally["lost"] == 1
    assert [(s["sender"], s["seq"]) for s in tally["lost_samples"]] == [(5, 4)]


def test_resume_spans_cut_at_a_join_without_since() -> None:
    a = conn(1, 0, 1, 10, 12)
    b = resumed(conn(2, 0, 1, 13, 15))
    c = conn(3, 0, 1, 16, 18)  # no id to resume from: a new span
    d = resumed(conn(4, 0, 2, 19, 0))  # another room: a new span too
    other = conn(5, 1, 1, 10, 0)
    spans = resume_spans([d, other, c, b, a])
    assert sorted([x.conn_id for x in span] for span in spans) == [[1, 2], [3], [4], [5]]
    # sent while away within span [1, 2] (12.5): expected; between the spans (15.5): not
    m = [room_msg(5, 0, 1, 12.5), room_msg(5, 1, 1, 11), room_msg(5, 2, 1, 15.5)]
    tally = count_deliveries(m, [a, b, c], GRACE, resume=True)
    assert tally["expected"] == 2 and tally["lost"] == 2  # both in span [1, 2]: 11 and 12.5
    tally = count_deliveries(m, [c], GRACE, resume=True)
    assert tally["expected"] == 0


def test_frame_id_and_gap_reason() -> None:
    body = room_frame(5, 0)
    assert frame_id(body) is None
    tagged = with_id(body, "1700000000000-3")
    assert frame_id(tagged) == "1700000000000-3"
    assert frame_soak_stamp(tagged) == frame_soak_stamp(body)
    assert gap_reason(history_gap_body("too_old")) == "too_old"
    assert gap_reason(body) is None and gap_reason(room_info_body(10, {"1": "a"})) is None


async def test_resume_worker_dedups_per_user_and_times_the_catch_up() -> None:
    worker = make_worker()
    worker.plan.resume = True
    first = add_live(worker, 1, 0, 10)
    first.state = worker.user_states.setdefault(0, ReceiverState())
    worker.on_frame(1, with_id(room_frame(5, 0), "100-0"))
    worker.on_frame(1, with_id(room_frame(5, 1), "101-0"))
    assert worker.last_id[0] == "101-0"
    worker._retire(first)
    again = add_live(worker, 2, 0, 10)  # the rejoin, opened after the stamps' send time (1 ns)
    again.record.opened_ns = 2
    again.record.resumed = True
    again.state = worker.user_states[0]
    worker.on_frame(2, history_gap_body("too_old"))
    worker.on_frame(2, with_id(room_frame(5, 1), "101-0"))  # already had it: a duplicate
    worker.on_frame(2, with_id(room_frame(5, 2), "102-0"))  # missed while away
    assert worker.counts["duplicated"] == 1 and worker.counts["unique"] == 3
    assert worker.counts["gap_too_old"] == 1 and again.record.gap == "too_old"
    assert again.record.missed == 1 and again.record.caught_up_ns > 0
    assert len(worker.latencies_us) == 2  # the first connection's two; backlog is catch-up time, not latency
    figures = resume_figures([first.record, again.record], {"reconnects": 1, "gap_too_old": 1})
    assert figures["rejoins_with_since"] == 1 and figures["rejoins_without_since"] == 0
    assert figures["gaps"] == {"too_old": 1} and figures["missed_total"] == 1
    assert figures["catch_up_ms"]["count"] == 1


# ---------------------------------------------------------------------- the client's frame handling


def make_worker(users: int = 2) -> SoakWorker:
    plan = SoakPlan(
        index=0,
        run_id="run1",
        ws_url="ws://127.0.0.1:1/ws",
        tcp=[],
        rooms=[10, 20],
        users=[SoakUser(i, 100 + i, f"t{i}", "ws", 10) for i in range(users)],
    )
    return SoakWorker(plan, None)  # type: ignore[arg-type]


def add_live(worker: SoakWorker, conn_id: int, user: int, room: int) -> LiveConnection:
    live = LiveConnection(ConnectionRecord(conn_id, user, "ws", room, 1), 100 + user)
    worker.live[conn_id] = live
    return live


def room_frame(sender: int, seq: int, run_id: str = "run1") -> bytes:
    return Send(
        msg=make_soak_stamp(run_id, sender, seq, 1), from_user_id=1, from_user_name="x", room_id=10, op=OP_ROOM_SEND
    ).encode()


async def test_join_confirmed_by_a_member_list_naming_the_user() -> None:
    worker = make_worker()
    live = add_live(worker, 1, 0, 10)
    worker.on_frame(1, room_info_body(10, {"101": "other"}))
    assert not live.confirmed.is_set()
    worker.on_frame(1, room_info_body(20, {"100": "me"}))  # another room's list: not ours
    assert not live.confirmed.is_set()
    worker.on_frame(1, room_info_body(10, {"100": "me", "101": "other"}))
    assert live.confirmed.is_set() and live.record.confirmed_ns > 0


async def test_frames_counted_per_connection() -> None:
    worker = make_worker()
    add_live(worker, 1, 0, 10)
    add_live(worker, 2, 1, 10)
    for conn_id in (1, 2):
        worker.on_frame(conn_id, room_frame(5, 0))
    worker.on_frame(1, room_frame(5, 2))
    worker.on_frame(1, room_frame(5, 1))  # reordered at connection 1
    worker.on_frame(1, room_frame(5, 1))  # and duplicated
    worker.on_frame(2, room_frame(5, 0, run_id="other"))  # another run's message
    assert worker.counts["unique"] == 4
    assert worker.counts["duplicated"] == 1 and worker.counts["reordered"] == 1
    assert worker.counts["foreign"] == 1
    assert list(worker.live[1].record.received) == [message_key(5, s) for s in (0, 2, 1)]
    assert worker.reorder_samples == [{"connection": 1, "user": 0, "sender": 5, "seq": 1, "after_seq": 2}]
    assert len(worker.latencies_us) == 4


async def test_settle_released_by_a_list_without_the_user() -> None:
    worker = make_worker()
    add_live(worker, 2, 1, 10)  # another user of this process, confirmed, in room 10
    worker.live[2].confirmed.set()
    event = asyncio.Event()
    worker.unsettled[10] = {100: event}  # user 100 just left room 10
    worker.on_frame(2, room_info_body(10, {"100": "me", "101": "other"}))  # still listed: leave not recorded yet
    assert not event.is_set()
    worker.on_frame(2, room_info_body(10, {"101": "other"}))
    assert event.is_set() and 100 not in worker.unsettled[10]


# ---------------------------------------------------------------------- options and process rows


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_soak_arguments(parser)
    return parser.parse_args(list(argv))


def test_options_defaults_and_parsing() -> None:
    opts = soak_options_from_args(parse("--users", "20", "--duration", "12", "--reconnect-delay", "0.1,0.4"))
    assert opts.users == 20 and opts.duration == 12 and opts.reconnect_delay == (0.1, 0.4)
    assert opts.tcp == ["127.0.0.1:7001", "127.0.0.1:7002"] and opts.transport == "mixed"


@pytest.mark.parametrize(
    "argv",
    [
        ("--users", "0"),
        ("--private-share", "1.5"),
        ("--reconnect-delay", "2,1"),
        ("--duration", "-3"),
    ],
)
def test_bad_numbers_refused(argv: tuple[str, ...]) -> None:
    with pytest.raises(SystemExit):
        parse(*argv)


@pytest.mark.parametrize(
    "change",
    [
        {"api": "http://192.0.2.1:7070"},
        {"ws": "ws://example.com/ws"},
        {"tcp": ["10.0.0.1:7001"]},
        {"watch": ["192.0.2.9:6379"]},
        {"run_id": "NOT-OK"},
    ],
)
def test_only_loopback_targets(change: dict) -> None:
    with pytest.raises(TargetError):
        check_soak_options(SoakOptions(**change))


def test_tcp_not_checked_for_ws_only() -> None:
    check_soak_options(SoakOptions(transport="ws", tcp=[]))


def test_process_rows() -> None:
    snap = {
        "before": {1: Sample(1, "logic", 1.0, 100)},
        "start": {1: Sample(1, "logic", 2.0, 150), 2: Sample(2, "api", 0.0, 50)},
        "end": {1: Sample(1, "logic", 12.0, 170)},
    }
    samples = [(0.0, snap["start"]), (50.0, {1: Sample(1, "logic", 5, 160)}), (100.0, snap["end"])]
    rows = process_rows({1: "logic", 2: "api"}, snap, samples, 100.0)
    api, logic = rows
    assert logic["rss_kib_before"] == 100 and logic["rss_kib_start"] == 150 and logic["rss_kib_end"] == 170
    assert logic["rss_growth_kib"] == 20 and logic["rss_growth_second_half_kib"] == 10
    assert logic["cpu_s"] == 10.0 and logic["cpu_pct"] == 10.0 and logic["alive_at_end"]
    assert api["alive_at_end"] is False and api["rss_growth_kib"] is None
