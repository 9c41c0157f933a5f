"""What the terminal chat prints for each event, and how it finds a user named in /msg."""

from __future__ import annotations

from gochat_py.client.chat import ChatClient, Closed, Connected, Disconnected, SubscriptionLost
from gochat_py.client.terminal import Screen
from gochat_py.client.transport import Connection
from gochat_py.protocol.v2_messages import (
    Gap,
    Limits,
    MemberJoined,
    MemberLeft,
    PrivateMessage,
    RoomMessage,
    SessionEnded,
    TypingEvent,
    User,
)

ANN, BOB = User(id=1, name="ann"), User(id=2, name="bob")
LIMITS = Limits(rooms=50, message_length=4096, frame_size=32767, publish_rate=10.0, publish_burst=50)


async def _never() -> Connection:
    raise AssertionError("the screen never connects")


def screen() -> tuple[Screen, list[str]]:
    printed: list[str] = []
    view = Screen(ChatClient(_never, "token"), printed.append)
    assert view.render(Connected(ANN, LIMITS, resumed=False)) == "* connected as ann (user 1)"
    return view, printed


def test_messages_print_with_their_room_or_their_direction() -> None:
    view, _ = screen()
    room = RoomMessage(room=7, id="5-0", sender=BOB, msg="hi all", time=1)
    to_me = PrivateMessage(user=2, to=1, id="6-0", sender=BOB, msg="psst", time=1)
    from_me = PrivateMessage(user=2, to=2, id="7-0", sender=ANN, msg="hey bob", time=1)
    assert view.render(room) == "[room 7] bob: hi all"
    assert view.render(to_me) == "[bob -> you] psst"
    assert view.render(from_me) == "[you -> bob] hey bob"


def test_room_and_connection_events_print_as_notices() -> None:
    view, _ = screen()
    assert view.render(MemberJoined(room=7, user=BOB)) == "* bob joined room 7"
    assert view.render(MemberLeft(room=7, user=BOB)) == "* bob left room 7"
    assert view.render(MemberJoined(room=7, user=ANN)) is None  # /join says so already
    assert view.render(TypingEvent(room=7, sender=BOB)) is None
    assert "room 7" in (view.render(Gap(room=7, reason="too_old")) or "")
    assert "private" in (view.render(Gap(reason="unknown")) or "")
    assert view.render(SessionEnded(reason="logged out")) == "* session ended: logged out"
    assert (
        view.render(Disconnected("connection lost", 1.25))
        == "* disconnected (connection lost); connecting again in 1.2 s"
    )
    assert view.render(Connected(ANN, LIMITS, resumed=True)) == "* reconnected"
    assert view.render(Closed("refused: unknown token")) == "* closed: refused: unknown token"


def test_a_lost_subscription_moves_the_current_room() -> None:
    view, _ = screen()
    view.joined, view.room = [3, 7], 7
    assert view.render(SubscriptionLost(7, "too_many_rooms: 50 at most")) == "* left room 7: too_many_rooms: 50 at most"
    assert (view.joined, view.room) == ([3], 3)


def test_users_are_found_by_a_name_seen_or_by_id() -> None:
    view, _ = screen()
    assert view.resolve("bob") is None
    view.learn_members({"2": "bob", "9": "carol"})
    assert view.resolve("bob") == 2
    assert view.resolve("carol") == 9
    assert view.resolve("42") == 42
    assert view.resolve("0") is None
    assert view.resolve("dave") is None


async def test_typed_lines_that_need_no_server_are_answered_at_once() -> None:
    view, printed = screen()
    assert await view.handle("hello") is True
    assert await view.handle("/join zero") is True
    assert await view.handle("/join 99999999999999999999") is True
    assert await view.handle("/frobnicate") is True
    assert await view.handle("/msg bob") is True
    assert await view.handle("/msg dave hi") is True
    assert await view.handle("   ") is True
    assert await view.handle("/quit") is False
    assert printed == [
        "* join a room first: /join N",
        "* not a room number: 'zero'",
        "* not a room number: '99999999999999999999'",
        "* unknown command /frobnicate; /help lists them",
        "* usage: /msg USER text",
        "* unknown user 'dave': give the user id, or a name seen in your rooms",
    ]
