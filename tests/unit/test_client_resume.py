"""The v2 client's bookkeeping across connections (gochat_py.client.resume), without sockets: what
it subscribes again with, which messages it lets through after a reconnect, and client message ids."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gochat_py.client.resume import CLOCK_SLACK_MS, FROM_START, OWN_IDS_KEPT, ResumeState
from gochat_py.protocol.v2_messages import Gap, MemberJoined, PrivateMessage, RoomMessage, TypingEvent, User

ANN, BOB, CAROL = User(id=1, name="ann"), User(id=2, name="bob"), User(id=3, name="carol")


def room_msg(room: int, message_id: str, text: str = "x", sender: User = BOB) -> RoomMessage:
    return RoomMessage(room=room, id=message_id, sender=sender, msg=text, time=1)


def private_msg(message_id: str, sender: User, to: int, user: int | None = None) -> PrivateMessage:
    other = user if user is not None else (to if sender.id == ANN.id else sender.id)
    return PrivateMessage(user=other, to=to, id=message_id, sender=sender, msg="p", time=1)


def signed_in() -> ResumeState:
    state = ResumeState(mid_prefix="t")
    state.welcome(ANN.id, 0)  # at the epoch: the hello's since starts at 0-0
    return state


def test_a_room_resubscribes_after_the_last_message_delivered_and_repeats_are_dropped() -> None:
    state = signed_in()
    assert state.track(7, None) is None  # live only: nothing delivered yet
    assert [state.accept(room_msg(7, i)) for i in ("5-0", "6-0", "6-1")] == [True, True, True]
    assert state.resubscriptions() == [(7, "6-1")]
    # after the reconnect the server replays from 6-1; an older copy is a repeat
    assert state.accept(room_msg(7, "6-1")) is False
    assert state.accept(room_msg(7, "6-0")) is False
    assert state.accept(room_msg(7, "7-0")) is True
    assert state.room_since(7) == "7-0"


def test_ids_are_compared_as_numbers_not_strings() -> None:
    state = signed_in()
    state.track(1, "9-0")
    assert state.accept(room_msg(1, "10-0")) is True  # "10-0" < "9-0" as strings
    assert state.accept(room_msg(1, "9-5")) is False
    assert state.accept(room_msg(1, "10-0")) is False


def test_rooms_are_independent_and_a_room_not_followed_is_dropped() -> None:
    state = signed_in()
    state.track(1, None)
    state.track(2, "100-0")
    assert state.accept(room_msg(1, "50-0")) is True
    assert state.accept(room_msg(2, "50-0")) is False  # before room 2's since
    assert state.accept(room_msg(3, "200-0")) is False  # not subscribed
    state.untrack(1)
    assert state.accept(room_msg(1, "60-0")) is False  # a late copy after unsubscribe
    assert state.rooms() == [2]


def test_tracking_a_followed_room_again_keeps_its_place() -> None:
    state = signed_in()
    state.track(4, FROM_START)
    state.accept(room_msg(4, "3-0"))
    assert state.track(4, "1-0") == "3-0"
    assert state.track(4, None) == "3-0"
    assert state.resubscriptions() == [(4, "3-0")]


def test_the_hello_since_follows_private_messages_to_us_only() -> None:
    state = signed_in()
    assert state.hello_since() == FROM_START
    assert state.accept(private_msg("10-0", BOB, to=ANN.id)) is True
    assert state.hello_since() == "10-0"
    # a copy of our own message to bob (sent from another socket of ours) is shown once but is not
    # in our inbox, so it must not move the since past messages to us still on their way
    assert state.accept(private_msg("12-0", ANN, to=BOB.id)) is True
    assert state.hello_since() == "10-0"
    assert state.accept(private_msg("11-0", CAROL, to=ANN.id)) is True
    assert state.hello_since() == "11-0"
    assert state.accept(private_msg("11-0", CAROL, to=ANN.id)) is False  # replayed after reconnect
    assert state.accept(private_msg("10-0", BOB, to=ANN.id)) is False


def test_our_own_sent_message_is_dropped_if_it_comes_back_but_older_messages_to_us_still_arrive() -> None:
    state = signed_in()
    item = state.outgoing("send", BOB.id, "psst")
    state.acked(item, "20-0")
    assert state.hello_since() == FROM_START  # our send is not a message to us
    assert state.accept(private_msg("20-0", ANN, to=BOB.id)) is False
    assert state.accept(private_msg("19-0", BOB, to=ANN.id)) is True  # bob wrote first; it was on its way
    assert state.accept(private_msg("21-0", BOB, to=ANN.id)) is True


def test_own_ids_are_remembered_within_a_bound() -> None:
    state = signed_in()
    for n in range(OWN_IDS_KEPT + 10):
        state.acked(state.outgoing("send", BOB.id, "m"), f"{n + 1}-0")
    assert state.accept(private_msg(f"{OWN_IDS_KEPT + 10}-0", ANN, to=BOB.id)) is False
    assert len(state._own) == OWN_IDS_KEPT


def test_a_gap_with_an_unknown_since_forgets_the_watermark_a_gap_too_old_keeps_it() -> None:
    state = signed_in()
    state.track(7, None)
    state.track(8, None)
    state.accept(room_msg(7, "900-0"))
    state.accept(room_msg(8, "900-0"))
    assert state.accept(Gap(room=7, reason="unknown")) is True
    assert state.accept(room_msg(7, "5-0")) is True  # ids of another server: cannot be compared
    assert state.accept(Gap(room=8, reason="too_old")) is True
    assert state.accept(room_msg(8, "5-0")) is False
    state.accept(private_msg("900-0", BOB, to=ANN.id))
    assert state.accept(Gap(reason="unknown")) is True
    assert state.hello_since() is None
    assert state.accept(private_msg("5-0", BOB, to=ANN.id)) is True
    state.welcome(ANN.id, 0)
    assert state.hello_since() == "5-0"


def test_before_any_private_message_the_hello_since_is_a_moment_before_the_first_welcome() -> None:
    state = ResumeState()
    assert state.hello_since() is None  # the first hello: the server sends what waited offline
    state.welcome(ANN.id, 1_765_054_800_000)
    assert state.hello_since() == f"{1_765_054_800_000 - CLOCK_SLACK_MS}-0"
    state.welcome(ANN.id, 1_765_054_900_000)  # a reconnect does not move it
    assert state.hello_since() == f"{1_765_054_800_000 - CLOCK_SLACK_MS}-0"
    assert state.accept(private_msg("1765054700000-0", BOB, to=ANN.id)) is True  # waited while offline
    assert state.hello_since() == f"{1_765_054_800_000 - CLOCK_SLACK_MS}-0"
    assert state.accept(private_msg("1765054850000-0", BOB, to=ANN.id)) is True
    assert state.hello_since() == "1765054850000-0"


def test_other_events_pass_through_but_the_echo_of_our_own_typing() -> None:
    state = signed_in()
    assert state.accept(MemberJoined(room=7, user=BOB)) is True
    assert state.accept(TypingEvent(room=7, sender=BOB)) is True
    assert state.accept(TypingEvent(room=7, sender=ANN)) is False
    assert state.accept(TypingEvent(user=BOB.id, sender=BOB)) is True


def test_outgoing_messages_get_distinct_mids_and_stay_unacked_until_their_result() -> None:
    state = signed_in()
    first = state.outgoing("publish", 7, "one")
    second = state.outgoing("send", BOB.id, "two")
    third = state.outgoing("publish", 7, "three")
    assert len({first.mid, second.mid, third.mid}) == 3
    assert all(0 < len(item.mid) <= 64 for item in (first, second, third))
    assert state.unacked() == [first, second, third]
    state.acked(second, "5-0")
    state.abandoned(first)
    assert state.unacked() == [third]
    assert ResumeState().outgoing("publish", 1, "x").mid != ResumeState().outgoing("publish", 1, "x").mid


@settings(max_examples=200, deadline=None)
@given(
    total=st.integers(1, 40),
    drops=st.lists(st.integers(0, 40), max_size=6),
    rewind=st.lists(st.integers(0, 5), max_size=6),
)
def test_reconnects_at_any_point_deliver_every_message_once_in_order(
    total: int, drops: list[int], rewind: list[int]
) -> None:
    """The server sends a room's messages in order; the socket drops after arbitrary messages, and
    a message that was on its way may come again (the server may also replay a few before the
    since); on every reconnect the room is subscribed again with the state's since."""
    ids = [f"{1000 + n}-{n % 3}" for n in range(total)]
    state = signed_in()
    since = state.track(9, FROM_START)
    seen: list[str] = []
    cuts = [*sorted(set(drops)), total]
    extra = iter(rewind)
    for cut in cuts:
        start = 0 if since in (None, FROM_START) else ids.index(since) + 1
        start = max(0, start - next(extra, 0))  # repeats from before the since
        for message_id in ids[start : max(cut, start)]:
            if state.accept(room_msg(9, message_id)):
                seen.append(message_id)
        (room, since), *_ = state.resubscriptions()
        assert room == 9
    assert seen == ids
