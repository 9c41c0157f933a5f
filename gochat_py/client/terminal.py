"""A terminal chat over protocol v2, on top of :class:`gochat_py.client.chat.ChatClient`.

    gochat-py client chat --user ann --password pw --room 1
    gochat-py client chat --user ann --password pw --tcp 127.0.0.1:7001 --room 1 --room 2

Lines typed go to the current room; ``/help`` lists the commands (join, leave, switch rooms,
private messages, who is here, history, quit).  What arrives is printed one line each:
``[room 1] ann: text``, ``[ann -> you] text``, ``* bob joined room 1``.

The screen is plain lines on stdout, so the chat works in any terminal, in tmux and through a pipe.
User names for ``/msg`` are learnt from what the rooms show (members, senders, joins): the
protocol has no lookup of a user by name, so a user never seen is named by id.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import ssl
import sys
import threading
from collections.abc import Callable

from gochat_py.client.api import ApiError, login
from gochat_py.client.chat import (
    ChatClient,
    ClientClosed,
    ClientEvent,
    Closed,
    CommandError,
    Connected,
    Disconnected,
    SubscriptionLost,
)
from gochat_py.client.transport import Connector, tcp_connector, websocket_connector
from gochat_py.protocol.v2_codes import MAX_ID
from gochat_py.protocol.v2_messages import (
    Gap,
    MemberJoined,
    MemberLeft,
    PrivateMessage,
    RoomMessage,
    SessionEnded,
    User,
)

HELP = """commands:
  text            send to the current room
  /join N         subscribe to room N and make it current
  /leave [N]      unsubscribe from room N (default: the current room)
  /room N         make room N current (joins it if needed)
  /msg USER text  private message; USER is a name seen in your rooms, or a user id
  /who            who is in the current room
  /history [N]    the last N messages of the current room (default 10)
  /quit           leave"""


class Screen:
    """What the chat shows and how typed lines become commands; printing goes through ``say``."""

    def __init__(self, client: ChatClient, say: Callable[[str], None]) -> None:
        self.client = client
        self.say = say
        self.room: int | None = None  # the current room
        self.joined: list[int] = []
        self.names: dict[int, str] = {}  # user id -> name, from everything seen
        self.me: User | None = None

    # ---- names -------------------------------------------------------------------------------

    def learn(self, user_id: int, name: str) -> None:
        if name:
            self.names[user_id] = name

    def learn_members(self, members: dict[str, str]) -> None:
        for user_id, name in members.items():
            self.learn(int(user_id), name)

    def name_of(self, user_id: int) -> str:
        return self.names.get(user_id, f"user {user_id}")

    def resolve(self, who: str) -> int | None:
        """A user id from a name seen in the rooms, or from the id itself."""
        matches = [user_id for user_id, name in self.names.items() if name == who]
        if len(matches) == 1:
            return matches[0]
        if who.isdigit() and 0 < int(who) <= MAX_ID:
            return int(who)
        return None

    # ---- what arrives ------------------------------------------------------------------------

    def render(self, event: ClientEvent) -> str | None:
        """The line to print for ``event`` (None: nothing, e.g. typing notices)."""
        if isinstance(event, RoomMessage):
            self.learn(event.sender.id, event.sender.name)
            return f"[room {event.room}] {event.sender.name}: {event.msg}"
        if isinstance(event, PrivateMessage):
            self.learn(event.sender.id, event.sender.name)
            if self.me is not None and event.sender.id == self.me.id:
                return f"[you -> {self.name_of(event.to)}] {event.msg}"
            return f"[{event.sender.name} -> you] {event.msg}"
        if isinstance(event, MemberJoined | MemberLeft):
            self.learn(event.user.id, event.user.name)
            if self.me is not None and event.user.id == self.me.id:
                return None  # said already by /join and /leave
            return f"* {event.user.name} {'joined' if isinstance(event, MemberJoined) else 'left'} room {event.room}"
        if isinstance(event, Gap):
            where = f"room {event.room}" if event.room is not None else "your private messages"
            return f"* older messages of {where} were not all kept ({event.reason}); /history shows what is"
        if isinstance(event, SessionEnded):
            return f"* session ended: {event.reason}"
        if isinstance(event, Connected):
            first = self.me is None
            self.me = event.user
            self.learn(event.user.id, event.user.name)
            return f"* connected as {event.user.name} (user {event.user.id})" if first else "* reconnected"
        if isinstance(event, Disconnected):
            return f"* disconnected ({event.reason}); connecting again in {event.retry_in:.1f} s"
        if isinstance(event, SubscriptionLost):
            self._forget(event.room)
            return f"* left room {event.room}: {event.reason}"
        if isinstance(event, Closed):
            return f"* closed: {event.reason}"
        return None

    # ---- what is typed -----------------------------------------------------------------------

    async def handle(self, line: str) -> bool:
        """Acts on one typed line; False once the user wants to quit."""
        line = line.strip()
        if not line:
            return True
        try:
            return await self._handle(line)
        except CommandError as exc:
            self.say(f"* refused: {exc}")
        except ValueError as exc:  # a bad room number, a message the protocol cannot carry
            self.say(f"* {exc}")
        return True

    async def _handle(self, line: str) -> bool:
        if not line.startswith("/"):
            if self.room is None:
                self.say("* join a room first: /join N")
            else:
                await self.client.publish(self.room, line)
            return True
        command, _, rest = line.partition(" ")
        rest = rest.strip()
        if command == "/quit":
            return False
        if command == "/help":
            self.say(HELP)
        elif command == "/join":
            await self.join(_room(rest))
        elif command == "/leave":
            await self.leave(_room(rest) if rest else self.room)
        elif command == "/room":
            room = _room(rest)
            if room not in self.joined:
                await self.join(room)
            else:
                self.room = room
                self.say(f"* current room {room}")
        elif command == "/msg":
            await self.private(rest)
        elif command == "/who":
            await self.who()
        elif command == "/history":
            await self.history(int(rest) if rest.isdigit() else 10)
        else:
            self.say(f"* unknown command {command}; /help lists them")
        return True

    async def join(self, room: int) -> None:
        result = await self.client.subscribe(room)
        self.learn_members(result.members)
        if room not in self.joined:
            self.joined.append(room)
        self.room = room
        names = ", ".join(sorted(result.members.values()))
        self.say(f"* joined room {room} ({result.count} here: {names})")

    async def leave(self, room: int | None) -> None:
        if room is None or room not in self.joined:
            self.say("* not in that room")
            return
        await self.client.unsubscribe(room)
        self._forget(room)
        self.say(f"* left room {room}" + (f"; current room {self.room}" if self.room else ""))

    def _forget(self, room: int) -> None:
        if room in self.joined:
            self.joined.remove(room)
        if self.room == room:
            self.room = self.joined[-1] if self.joined else None

    async def private(self, rest: str) -> None:
        who, _, text = rest.partition(" ")
        text = text.strip()
        if not who or not text:
            self.say("* usage: /msg USER text")
            return
        to = self.resolve(who)
        if to is None:
            self.say(f"* unknown user {who!r}: give the user id, or a name seen in your rooms")
            return
        await self.client.send(to, text)
        self.say(f"[you -> {self.names.get(to, who)}] {text}")

    async def who(self) -> None:
        if self.room is None:
            self.say("* join a room first: /join N")
            return
        result = await self.client.presence(self.room)
        self.learn_members(result.members)
        self.say(f"* room {self.room}: {result.count} here: {', '.join(sorted(result.members.values()))}")

    async def history(self, limit: int) -> None:
        if self.room is None:
            self.say("* join a room first: /join N")
            return
        page = await self.client.history(room=self.room, limit=max(1, min(limit, 100)))
        self.say(f"* the last {len(page.messages)} messages of room {self.room}:")
        for message in reversed(page.messages):
            self.learn(message.sender.id, message.sender.name)
            self.say(f"  {message.sender.name}: {message.msg}")


def _room(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= MAX_ID:
        raise ValueError(f"not a room number: {text!r}")
    return int(text)


def _stdin_lines(loop: asyncio.AbstractEventLoop) -> asyncio.Queue[str | None]:
    """Lines typed, read by a daemon thread (None at end of input): a blocked read never keeps the
    program from exiting, whatever stdin is (a terminal, a pipe, a file)."""
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def read() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return lines


def _connector(args: argparse.Namespace) -> Connector:
    tls = ssl.create_default_context(cafile=args.ca or None) if args.ca or args.tls else None
    if args.tcp:
        return tcp_connector(args.tcp, tls)
    return websocket_connector(args.ws, tls)


async def _run(args: argparse.Namespace) -> int:
    def say(text: str) -> None:
        print(text, flush=True)

    try:
        token = args.token or await login(args.api, args.user, args.password, register=args.register)
    except ApiError as exc:
        say(f"cannot log in: {exc}")
        return 1
    client = ChatClient(_connector(args), token)
    screen = Screen(client, say)

    async def show() -> None:
        async for event in client.events():
            if (text := screen.render(event)) is not None:
                say(text)

    shower = asyncio.create_task(show())
    try:
        await client.start()
    except ClientClosed as exc:
        await shower
        say(f"cannot connect: {exc}")
        return 1
    for room in args.room or []:
        await screen.handle(f"/join {room}")
    say("type a line to send it to the current room; /help lists the commands")
    lines = _stdin_lines(asyncio.get_running_loop())
    status = 0
    try:
        while True:
            typed = asyncio.ensure_future(lines.get())
            await asyncio.wait({typed, shower}, return_when=asyncio.FIRST_COMPLETED)
            if not typed.done():  # the client closed (the session ended elsewhere): nothing to type to
                typed.cancel()
                status = 1
                break
            line = typed.result()
            if line is None or not await screen.handle(line):
                break
    except ClientClosed:
        status = 1
    finally:
        await client.close()
        await shower
    return status


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("chat", help="chat from a terminal over protocol v2 (rooms, private messages)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="log in through the api with this user name")
    who.add_argument("--token", help="auth token from /user/login")
    parser.add_argument("--password", default="", help="password for --user")
    parser.add_argument("--register", action="store_true", help="create the account --user first")
    parser.add_argument("--api", default="http://127.0.0.1:7070", help="api base URL (default %(default)s)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--ws", default="ws://127.0.0.1:7000/ws", help="websocket URL (default %(default)s)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="connect_tcp address, instead of the websocket")
    parser.add_argument("--room", type=int, action="append", help="room to join at start (repeatable)")
    parser.add_argument("--tls", action="store_true", help="TLS on the TCP connection (wss:// for websockets)")
    parser.add_argument("--ca", default="", help="CA or self-signed certificate to trust (implies TLS)")


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(message)s")  # the screen is for the chat
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 130
