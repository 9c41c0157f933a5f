"""What a bench client process counts: ``Counter.on_frames`` takes every frame of one received
chunk at once, and must still check each frame on its own exactly as the frame-by-frame count
did (run id, seq range, private target, duplicates per socket, op 5 readiness, other frames);
the TCP and websocket clients hand it whole chunks, also when a frame is cut across chunks."""

from __future__ import annotations

import array
import time
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gochat_py.bench import clients
from gochat_py.bench.clients import ClientPlan, Counter, SocketSpec
from gochat_py.bench.framing import TCP_PING, WS_PING, encode_stick, ws_accept, ws_server_frame
from gochat_py.bench.sockets import TcpClient
from gochat_py.bench.stamp import OP_ROOM_COUNT, frame_stamp, make_stamp, room_frame
from gochat_py.bench.ws_client import LeanWsClient
from gochat_py.protocol.frames import Send, room_count_body, room_info_body

NOW = 5_000_000_000
RUN = "r1"


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every receive happens at NOW, so latencies are exact and both count paths comparable."""
    monkeypatch.setattr(clients, "time", SimpleNamespace(monotonic_ns=lambda: NOW, monotonic=time.monotonic))


def plan(messages: int = 10, sockets: int = 2, targets: list[int] | None = None, ready_count: int = 1) -> ClientPlan:
    return ClientPlan(
        index=0,
        run_id=RUN,
        ws_urls=["ws://127.0.0.1:7000/ws"],
        tcp=("127.0.0.1", 0),
        sockets=[SocketSpec(token="t", room_id=9, user_id=100 + i, ready_count=ready_count) for i in range(sockets)],
        messages=messages,
        targets=targets,
    )


def room(seq: int, run: str = RUN, sent_ns: int | None = None) -> bytes:
    """An op 3 body as the server encodes it, stamped ``sent_ns`` (default: seq µs before NOW)."""
    sent = NOW - (seq + 1) * 1000 if sent_ns is None else sent_ns
    return Send(make_stamp(run, seq, sent), 1, "bench_r1_0", 9, 3, create_time="2024-01-02 03:04:05").encode()


def private(seq: int, to_user: int) -> bytes:
    stamp = make_stamp(RUN, seq, NOW - 7000)
    return Send(stamp, 1, "bench_r1_0", 0, 2, to_user_id=to_user, to_user_name=f"u{to_user}").encode()


def totals(counter: Counter) -> dict[str, Any]:
    return {
        "unique": counter.unique,
        "duplicated": counter.duplicated,
        "foreign": counter.foreign,
        "misdelivered": counter.misdelivered,
        "other_frames": counter.other_frames,
        "ready_count": counter.ready_count,
        "ready": bytes(counter.ready),
        "seen": [bytes(seen) for seen in counter.seen],
        "latencies_us": counter.latencies_us.tolist(),
        "first_ns": counter.first_ns,
        "last_ns": counter.last_ns,
        "first_frame_ns": list(counter.first_frame_ns),
        "all_ready": counter.all_ready.is_set(),
    }


# ------------------------------------------------------------------ one chunk, each check


def test_duplicates_within_one_chunk_and_per_socket() -> None:
    counter = Counter(plan())
    counter.on_frames(0, [room(0), room(1), room(0), room(1), room(0)])
    assert (counter.unique, counter.duplicated) == (2, 3)
    assert counter.latencies_us.tolist() == [1, 2]  # receive time − stamp time, in µs
    counter.on_frames(1, [room(0)])  # another socket's first copy is no duplicate
    counter.on_frames(0, [room(1)])  # the same socket's, in a later chunk, is
    assert (counter.unique, counter.duplicated) == (3, 4)
    assert bytes(counter.seen[0][:3]) == b"\x01\x01\x00" and bytes(counter.seen[1][:3]) == b"\x01\x00\x00"
    assert counter.first_ns == counter.last_ns == NOW


def test_foreign_run_id_and_seq_out_of_range() -> None:
    counter = Counter(plan(messages=10))
    counter.on_frames(0, [room(3, run="r2"), room(3, run="r12"), room(10), room(99), room(9)])
    assert (counter.foreign, counter.unique) == (4, 1)
    assert counter.seen[0][9] == 1 and counter.latencies_us.tolist() == [10]


def test_misdelivered_private_frame() -> None:
    targets = [101, 100, 101]  # seq -> the user it is for
    counter = Counter(plan(messages=3, targets=targets))
    counter.on_frames(0, [private(0, 101), private(1, 100), private(2, 101), private(0, 101)])
    assert (counter.misdelivered, counter.unique, counter.duplicated) == (3, 1, 0)
    counter.on_frames(1, [private(0, 101), private(2, 101), private(2, 101)])
    assert (counter.misdelivered, counter.unique, counter.duplicated) == (3, 3, 1)
    assert counter.latencies_us.tolist() == [7, 7, 7]


def test_op5_readiness_and_other_frames() -> None:
    counter = Counter(plan(sockets=2, ready_count=3))
    two = room_info_body(9, {"1": "a", "2": "b"})
    three = room_info_body(9, {"1": "a", "2": "b", "3": "c"})
    counter.on_frames(0, [two, b"not json", room(0)])  # an incomplete list does not make it ready
    assert (counter.ready_count, counter.other_frames, counter.unique) == (0, 2, 1)
    counter.on_frames(0, [three, three])  # a second full list on a ready socket is an other frame
    assert (counter.ready_count, counter.other_frames) == (1, 3)
    assert not counter.all_ready.is_set()
    counter.on_frames(1, [room(0), three])
    assert counter.ready_count == 2 and counter.all_ready.is_set()
    assert counter.first_frame_ns == [NOW, NOW]


def test_op4_readiness_whatever_the_count() -> None:
    """A server that sends no member list, or an incomplete one: the op 4 frame of a /push/count
    reaching the socket is the proof that it is in its room."""
    counter = Counter(plan(sockets=3, ready_count=500))
    counter.on_frames(0, [room_info_body(9, {"1": "a"}), room(0)])
    assert (counter.ready_count, counter.other_frames) == (0, 1)
    counter.on_frames(0, [room_count_body(2)])
    counter.on_frames(1, [b'{"op":4,"count":1}', room_count_body(2)])  # the second one: an other frame
    assert (counter.ready_count, counter.other_frames) == (2, 2)
    assert not counter.all_ready.is_set()
    counter.on_frames(2, [room_count_body(0)])
    assert counter.ready_count == 3 and counter.all_ready.is_set()
    assert list(counter.ready) == [1, 1, 1]


def test_no_messages_counts_every_stamp_as_foreign() -> None:
    counter = Counter(plan(messages=0))
    counter.on_frames(0, [room(0), room_info_body(9, {"1": "a"})])
    assert (counter.foreign, counter.unique, counter.ready_count) == (1, 0, 1)


def test_frames_in_another_shape_are_still_read() -> None:
    # not what the gochat server sends (the fast path turns it down), but still a stamp of the run
    counter = Counter(plan())
    counter.on_frames(0, [b'{"msg":"r1|4|' + str(NOW - 3000).encode() + b'","op":3}', b'{"code":0,"msg":"r1|x|1"}'])
    assert (counter.unique, counter.other_frames) == (1, 1)
    assert counter.latencies_us.tolist() == [3]


# ------------------------------------------------------------------ the batch path is the per-frame count


def reference_count(counter: Counter, index: int, body: bytes) -> None:
    """The frame-by-frame count the bench had before chunks were counted at once (same checks,
    same order), kept here to compare against."""
    now = clients.time.monotonic_ns()
    if not counter.first_frame_ns[index]:
        counter.first_frame_ns[index] = now
    stamp = frame_stamp(body)
    if stamp is None:
        frame = room_frame(body)
        if (
            frame is not None
            and not counter.ready[index]
            and (frame[0] == OP_ROOM_COUNT or frame[1] >= counter.specs[index].ready_count)
        ):
            counter.ready[index] = 1
            counter.ready_count += 1
            if counter.ready_count == len(counter.ready):
                counter.all_ready.set()
        else:
            counter.other_frames += 1
        return
    seq = stamp.seq
    if stamp.run_id != counter.run_id or seq >= counter.messages:
        counter.foreign += 1
        return
    if counter.targets is not None and counter.targets[seq] != counter.specs[index].user_id:
        counter.misdelivered += 1
        return
    seen = counter.seen[index]
    if seen[seq]:
        counter.duplicated += 1
        return
    seen[seq] = 1
    counter.unique += 1
    counter.latencies_us.append((now - stamp.sent_ns) // 1000)
    if not counter.first_ns:
        counter.first_ns = now
    counter.last_ns = now


MESSAGES = 6
TARGETS = [100, 101, 100, 100, 101, 101]
FRAME = st.one_of(
    st.builds(room, st.integers(0, MESSAGES + 2)),
    st.builds(room, st.integers(0, MESSAGES), st.sampled_from(["r2", "r12", "r"])),
    st.builds(private, st.integers(0, MESSAGES - 1), st.sampled_from([100, 101])),
    st.builds(lambda n: room_info_body(9, {str(i): "u" for i in range(n)}), st.integers(0, 4)),
    st.sampled_from([room_count_body(3), b"", b"{}", b'{"code":0,"msg":"r1|007|5"}', b'{"code":0,"msg":"r1|1"}']),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])  # the clock fixture holds no state
@given(
    st.lists(st.tuples(st.integers(0, 2), st.lists(FRAME, max_size=6)), max_size=12),
    st.booleans(),
)
def test_batch_count_equals_frame_by_frame_count(chunks: list[tuple[int, list[bytes]]], private_run: bool) -> None:
    targets = TARGETS if private_run else None
    batch, single, reference = (Counter(plan(MESSAGES, 3, targets, ready_count=3)) for _ in range(3))
    for index, bodies in chunks:
        batch.on_frames(index, bodies)
        for body in bodies:
            single.on_frames(index, [body])
            reference_count(reference, index, body)
    assert totals(batch) == totals(reference)
    assert totals(single) == totals(reference)


# ------------------------------------------------------------------ whole clients: chunks and cut frames


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
STREAM_BODIES = [room_info_body(9, {"1": "a"}), room(0), room(1), room(1), room(2, run="r2"), room(3)]


def expected_totals() -> dict[str, Any]:
    counter = Counter(plan(sockets=1))
    for body in STREAM_BODIES:
        reference_count(counter, 0, body)
    return totals(counter)


async def test_tcp_client_counts_chunks_and_frames_cut_across_them() -> None:
    stream = b"".join(encode_stick(body) for body in STREAM_BODIES[:3]) + encode_stick(TCP_PING)
    stream += b"".join(encode_stick(body) for body in STREAM_BODIES[3:])
    for cut in range(len(stream) + 1):
        counter = Counter(plan(sockets=1))
        client = TcpClient(0, counter.on_frames, lambda index, reason: pytest.fail(reason))
        client.connection_made(FakeTransport())  # type: ignore[arg-type]
        client.data_received(stream[:cut])
        client.data_received(stream[cut:])
        assert totals(counter) == expected_totals(), cut


async def test_lean_ws_client_counts_chunks_and_frames_cut_across_them() -> None:
    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {ws_accept(KEY)}\r\n\r\n"
    ).encode()
    stream = b"".join(ws_server_frame(body) for body in STREAM_BODIES[:2]) + ws_server_frame(b"hb", WS_PING)
    stream += b"".join(ws_server_frame(body) for body in STREAM_BODIES[2:])
    for cut in range(len(stream) + 1):
        counter = Counter(plan(sockets=1))
        client = LeanWsClient(0, counter.on_frames, lambda index, reason: pytest.fail(reason), "h", "/ws", key=KEY)
        transport = FakeTransport()
        client.connection_made(transport)  # type: ignore[arg-type]
        client.data_received(head + stream[:cut])
        client.data_received(stream[cut:])
        assert totals(counter) == expected_totals(), cut
        assert len(transport.written) == 2  # the handshake, and the pong


def test_a_lone_frame_and_a_long_chunk_give_the_same_latencies() -> None:
    one, many = Counter(plan(messages=300)), Counter(plan(messages=300))
    bodies = [room(seq) for seq in range(300)]
    for body in bodies:
        one.on_frames(0, [body])
    many.on_frames(0, bodies)
    assert one.latencies_us == many.latencies_us == array.array("q", range(1, 301))
