"""A bench socket's protocol-v2 side without sockets: what it writes (hello, subscribes, publish and
send with their cids) and what each server message means for it, with the server's own encoders
making the bytes; and how the counter finds the stamps of v2 message events."""

from __future__ import annotations

import orjson

from gochat_py.bench.clients import ClientPlan, Counter, SocketSpec
from gochat_py.bench.stamp import make_stamp, stamp_matcher
from gochat_py.bench.v2_session import OTHER, READY, WELCOMED, Ack, Problem, Retry, V2Session
from gochat_py.protocol.frames import Send
from gochat_py.protocol.v2 import encode, encode_error, encode_result, encode_welcome
from gochat_py.protocol.v2_codes import ErrorCode
from gochat_py.protocol.v2_events import message_event
from gochat_py.protocol.v2_messages import (
    Limits,
    MemberJoined,
    PublishResult,
    SendResult,
    SessionEnded,
    SubscribeResult,
    User,
)

LIMITS = Limits(rooms=100, message_length=4096, frame_size=32767, publish_rate=10.0, publish_burst=50)
WELCOME = encode_welcome(7, "bench_r1_0", 1765054800000, LIMITS)


def subscribed(cid: int, room: int) -> bytes:
    return encode_result(cid, SubscribeResult(room=room, members={"7": "bench_r1_0"}, count=1))


def test_hello_then_subscribes_after_the_welcome_then_ready() -> None:
    session = V2Session((11, 12))
    assert orjson.loads(session.hello("tok")) == {"v": 2, "authToken": "tok"}
    assert session.receive(WELCOME) == WELCOMED
    assert session.user_id == 7 and session.limits == LIMITS
    frames = [orjson.loads(f) for f in session.subscribes()]
    assert frames == [{"cid": 1, "cmd": "subscribe", "room": 11}, {"cid": 2, "cmd": "subscribe", "room": 12}]
    assert session.receive(subscribed(2, 12)) == OTHER  # one room still missing
    assert session.receive(subscribed(1, 11)) == READY


def test_ready_waits_until_every_user_of_the_room_is_seen() -> None:
    """The snapshot names who was in first; the others' join events complete the room."""
    session = V2Session((11,), expect=3)
    session.receive(WELCOME)
    session.subscribes()
    assert session.receive(subscribed(1, 11)) == OTHER  # 1 of 3 users
    carol = encode(MemberJoined(room=11, user=User(id=3, name="carol")))
    assert session.receive(carol) == OTHER
    assert session.receive(carol) == OTHER  # the same user twice (two sockets) counts once
    assert session.receive(encode(MemberJoined(room=12, user=User(id=4, name="dan")))) == OTHER  # not its room
    assert session.receive(encode(MemberJoined(room=11, user=User(id=4, name="dan")))) == READY
    assert session.receive(encode(MemberJoined(room=11, user=User(id=5, name="eve")))) == OTHER  # once


def test_a_join_before_the_subscribe_answer_counts() -> None:
    session = V2Session((11,), expect=2)
    session.receive(WELCOME)
    session.subscribes()
    assert session.receive(encode(MemberJoined(room=11, user=User(id=3, name="carol")))) == OTHER
    assert session.receive(subscribed(1, 11)) == READY


def test_no_rooms_means_ready_at_the_welcome() -> None:
    assert V2Session(()).receive(WELCOME) == READY


def test_a_refused_subscribe_keeps_the_socket_out() -> None:
    session = V2Session((11, 12))
    session.receive(WELCOME)
    session.subscribes()
    problem = session.receive(encode_error(1, ErrorCode.TOO_MANY_ROOMS, "subscribed to 1 rooms already"))
    assert problem == Problem("subscribe room 11: error 4 subscribed to 1 rooms already")
    assert session.receive(subscribed(2, 12)) == OTHER  # the last answer, but not every room


def test_an_unavailable_subscribe_is_tried_again() -> None:
    session = V2Session((11, 12))
    session.receive(WELCOME)
    session.subscribes()
    assert session.receive(subscribed(1, 11)) == OTHER
    assert session.receive(encode_error(2, ErrorCode.UNAVAILABLE, "try again")) == Retry(12)
    assert orjson.loads(session.subscribe(12)) == {"cid": 3, "cmd": "subscribe", "room": 12}
    assert session.receive(subscribed(3, 12)) == READY  # the retry's answer completes the rooms


def test_publish_and_send_are_answered_by_their_cid() -> None:
    session = V2Session((11,))
    session.receive(WELCOME)
    session.subscribes()
    session.receive(subscribed(1, 11))
    room = orjson.loads(session.message(0, 1000, "r1|0|1000", room=11))
    private = orjson.loads(session.message(1, 2000, "r1|1|2000", to=9))
    assert room == {"cid": 2, "cmd": "publish", "room": 11, "msg": "r1|0|1000"}
    assert private == {"cid": 3, "cmd": "send", "to": 9, "msg": "r1|1|2000"}
    assert session.unanswered() == [(0, 1000), (1, 2000)]
    # replies may come in any order; an error answers the message with its code
    assert session.receive(encode_error(3, ErrorCode.RATE_LIMITED, "wait")) == Ack(1, 2000, 5, "wait")
    assert session.receive(encode_result(2, PublishResult(id="1765054800002-0"))) == Ack(0, 1000, 0, "")
    assert session.unanswered() == []
    session.message(2, 3000, "r1|2|3000", to=9)
    assert session.receive(encode_result(4, SendResult(id="1765054800003-0"))) == Ack(2, 3000, 0, "")


def test_events_and_bad_messages() -> None:
    session = V2Session(())
    session.receive(WELCOME)
    joined = encode(MemberJoined(room=11, user=User(id=3, name="carol")))
    assert session.receive(joined) == OTHER
    assert session.receive(b'{"type":"from_a_later_version"}') == OTHER
    assert session.receive(encode(SessionEnded(reason="logged out"))) == Problem("session ended: logged out")
    problem = session.receive(b"not json")
    assert isinstance(problem, Problem) and "unreadable" in problem.text
    unexpected = session.receive(encode_result(99, PublishResult(id="1765054800002-0")))
    assert isinstance(unexpected, Problem) and "cid 99" in unexpected.text


def v2_room_event(seq: int, run: str = "r1", reader: int = 5) -> bytes:
    body = Send(make_stamp(run, seq, 4000 + seq), 1, "bench_r1_0", 11, 3, create_time="").encode()
    event = message_event(body, f"1765054800000-{seq}", reader)
    assert event is not None
    return event


def test_stamps_of_v2_message_events() -> None:
    search = stamp_matcher(b"r1", "v2")
    found = search(v2_room_event(3))
    assert found is not None and (found[1], found[2]) == (b"3", b"4003")
    assert search(v2_room_event(3, run="r12")) is None
    private = message_event(
        Send(make_stamp("r1", 4, 9), 1, "a", 0, 2, to_user_id=5, to_user_name="b").encode(), "1-0", 5
    )
    assert private is not None and search(private)[1] == b"4"  # type: ignore[index]
    assert stamp_matcher(b"r1")(v2_room_event(3)) is None  # v1's matcher wants the v1 body


def test_counter_of_v2_sockets_hands_every_other_frame_to_the_session() -> None:
    plan = ClientPlan(0, "r1", ["ws://127.0.0.1:7000/ws"], ("127.0.0.1", 0), [SocketSpec("t", 11)], 5, protocol="v2")
    controls: list[tuple[int, bytes]] = []
    counter = Counter(plan, lambda index, body: controls.append((index, body)))
    ack = encode_result(2, PublishResult(id="1765054800002-0"))
    counter.on_frames(0, [v2_room_event(0), ack, v2_room_event(1), v2_room_event(0), v2_room_event(9, run="r2")])
    assert (counter.unique, counter.duplicated) == (2, 1)
    assert controls == [(0, ack), (0, v2_room_event(9, run="r2"))]  # another run's message too
    assert counter.other_frames == 0 and counter.ready_count == 0
    counter.mark_ready(0)
    assert counter.all_ready.is_set()


def test_v2_rooms_and_the_senders_of_socket_messages() -> None:
    from gochat_py.bench.cli import build_parser
    from gochat_py.bench.options import options_from_args
    from gochat_py.bench.scenarios import Coordinator

    def coordinator(*argv: str) -> Coordinator:
        return Coordinator(options_from_args(build_parser().parse_args([*argv, "--room-id", "100"])))

    idle = coordinator("idle", "--users", "4", "--sockets-per-user", "2", "--rooms-per-socket", "3")
    specs = idle.socket_specs(["t"] * 4, [])
    assert [s.rooms for s in specs[::2]] == [(100, 101, 102), (101, 102, 103), (102, 103, 100), (103, 100, 101)]
    assert specs[1].rooms == specs[0].rooms  # both sockets of a user in the same rooms
    assert all(s.rooms == () for s in coordinator("idle", "--users", "2").socket_specs(["t"] * 2, []))  # v1

    room = coordinator("room", "--users", "3", "--sockets-per-user", "2", "--messages", "4", "--send", "socket")
    specs = room.socket_specs(["t"] * 3, [])
    assert {s.rooms for s in specs} == {(100,)}
    # message n from user n mod 3's first socket, as HTTP would push it as that user
    assert room.planned_sends(specs, None) == [(0, 0, 100, 0), (1, 2, 100, 0), (2, 4, 100, 0), (3, 0, 100, 0)]

    private = coordinator("private", "--users", "3", "--messages", "3", "--send", "socket")
    specs = private.socket_specs(["t"] * 3, [7, 8, 9])
    assert {s.rooms for s in specs} == {()}  # a v2 socket gets private messages in no room
    private.target_index = [0, 2, 1]
    assert private.planned_sends(specs, [7, 9, 8]) == [(0, 1, 0, 7), (1, 0, 0, 9), (2, 2, 0, 8)]
