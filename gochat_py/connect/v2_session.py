"""One protocol-v2 socket's commands, whatever carries them (websocket or TCP).

The front end reads a message, hands it to :meth:`V2Session.handle` and reads the next one when
the answer is written: a socket's commands are answered in order, one at a time, and a client
that sends faster than the server answers is held back by its own socket's buffers.  The sender
of everything is the socket's session (its hello's token), never a field of a command.

A client's mistake is an error reply and the socket stays open.  Only abuse closes it: more
commands than ``[connect] command_rate`` / ``command_burst`` allow (flooding); a frame over the
size limit is refused by the front end.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from gochat_py import metrics
from gochat_py.connect.hub import Channel
from gochat_py.connect.node import ConnectNode
from gochat_py.protocol.v2 import CommandError, encode, encode_error, encode_result, parse_command
from gochat_py.protocol.v2_codes import HISTORY_LIMIT_DEFAULT, ErrorCode
from gochat_py.protocol.v2_events import message_event
from gochat_py.protocol.v2_messages import (
    AnyResult,
    Command,
    History,
    HistoryResult,
    Ping,
    PingResult,
    Presence,
    PresenceResult,
    Publish,
    Send,
    SessionEnded,
    Subscribe,
    SubscribeResult,
    Typing,
    TypingResult,
    Unsubscribe,
    UnsubscribeResult,
)
from gochat_py.rpc import logic_pb2 as logic_pb
from gochat_py.rpc.client import RpcError

log = logging.getLogger("gochat.connect.v2")
SESSION_ENDED_REASON = "session ended"


class Bucket:
    """A token bucket for one socket (TokenBuckets keys many; a socket needs two numbers)."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, float(burst), float(burst), now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Refused(Exception):
    """A command answered with an error."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class V2Session:
    __slots__ = ("channel", "clock", "commands", "exempt", "message_length", "node", "typing")

    def __init__(self, node: ConnectNode, channel: Channel, exempt: bool, clock: Callable[[], float] = time.monotonic):
        """``exempt``: the client is on loopback and the api does not limit those (its
        ``rate_limit_loopback``): neither are its sends here."""
        self.node = node
        self.channel = channel
        self.exempt = exempt
        self.clock = clock
        cs = node.settings.connect
        now = clock()
        self.commands = Bucket(cs.command_rate, cs.command_burst, now)
        self.typing: Bucket | None = None  # made at the first typing notice: most sockets send none
        self.message_length = node.settings.api.max_message_length

    def _write(self, data: bytes) -> None:
        self.channel.push(self.node.encode(data))

    async def handle(self, data: bytes | str) -> str | None:
        """Answers one client message; returns why the socket must close (abuse, a session that
        ended), or None."""
        if not self.commands.take(self.clock()):
            _counted("any", "flooding")
            return "flooding: too many commands"
        try:
            command = parse_command(data, self.message_length)
        except CommandError as exc:
            _counted("invalid", "error")
            self._write(exc.reply())
            return None
        name = command.cmd  # type: ignore[attr-defined]
        try:
            result = await self._run(command)
        except Refused as exc:
            _counted(name, "error")
            self._write(encode_error(command.cid, exc.code, exc.message))
            return SESSION_ENDED_REASON if exc.code == ErrorCode.SESSION_ENDED else None
        _counted(name, "ok")
        if isinstance(result, bytes):
            self._write(b'{"cid":%d,"result":%s}' % (command.cid, result))
        elif result is not None:
            self._write(encode_result(command.cid, result))
        return None

    async def _run(self, command: Command) -> AnyResult | bytes | None:
        """The command's result: a model, or for the hot ones the result's JSON already."""
        if isinstance(command, Publish | Send):
            return await self._send(command)
        if isinstance(command, Subscribe):
            return await self._subscribe(command)
        if isinstance(command, Unsubscribe):
            await self.node.unsubscribe(self.channel, command.room)
            return UnsubscribeResult()
        if isinstance(command, History):
            return await self._history(command)
        if isinstance(command, Presence):
            reply = await self._call("Presence", logic_pb.RoomRequest(room_id=command.room, auth_token=self._token))
            members = dict(reply.members)
            return PresenceResult(room=command.room, members=members, count=len(members))
        if isinstance(command, Typing):
            return await self._typing(command)
        if isinstance(command, Ping):
            return PingResult(time=int(time.time() * 1000))
        raise Refused(ErrorCode.UNKNOWN_COMMAND, "unknown command")  # parse_command knows them all

    @property
    def origin(self) -> str:
        """This socket as a private message's origin: its copy to the sender's sockets skips it."""
        return f"{self.channel.tag}@{self.node.server_id}"

    @property
    def _token(self) -> str:
        return self.channel.auth_token

    async def _call(self, method: str, request: Any) -> Any:
        """Logic's reply with code 0; a dead session or an outage as the matching error."""
        try:
            reply = await self.node.logic.call(method, request)
        except RpcError as exc:
            raise Refused(ErrorCode.UNAVAILABLE, f"the server cannot do that now, try again: {exc}") from None
        return self._checked(reply)

    @staticmethod
    def _checked(reply: Any) -> Any:
        if reply.code == logic_pb.SESSION_ERROR:
            raise Refused(ErrorCode.SESSION_ENDED, "your session has ended: log in again")
        if reply.code != logic_pb.OK:
            raise Refused(ErrorCode.BAD_REQUEST, reply.message or "refused")
        return reply

    async def _subscribe(self, command: Subscribe) -> None:
        channel = self.channel
        if command.room in channel.rooms:
            snapshot = await self._run(Presence(cid=command.cid, room=command.room))
            self._write(encode_result(command.cid, snapshot))  # type: ignore[arg-type]
            return None
        limit = self.node.settings.connect.max_rooms
        if len(channel.rooms) >= limit:
            raise Refused(ErrorCode.TOO_MANY_ROOMS, f"subscribed to {limit} rooms already, the most a socket may")

        def result(members: dict[str, str]) -> bytes:
            return encode_result(command.cid, SubscribeResult(room=command.room, members=members, count=len(members)))

        failure = await self.node.subscribe(channel, command.room, command.since, result)
        if failure == SESSION_ENDED_REASON:
            raise Refused(ErrorCode.SESSION_ENDED, "your session has ended: log in again")
        if failure:
            raise Refused(ErrorCode.UNAVAILABLE, "the server cannot subscribe you now, try again")
        return None  # the result went out with the room's backlog

    async def _send(self, command: Publish | Send) -> bytes:
        channel = self.channel
        if isinstance(command, Publish) and command.room not in channel.rooms:
            raise Refused(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to room {command.room}")
        if not self.exempt:
            wait = self.node.push_limits.take(str(channel.user_id), self.clock())
            if wait > 0:
                raise Refused(ErrorCode.RATE_LIMITED, f"too many messages: wait {wait:.1f} s, then send again")
        mid = command.mid or ""
        if isinstance(command, Publish):
            item = logic_pb.PushItem(
                push_room=logic_pb.PushRoomRequest(
                    auth_token=self._token, room_id=command.room, msg=command.msg, mid=mid
                )
            )
        else:
            item = logic_pb.PushItem(
                push=logic_pb.PushRequest(
                    auth_token=self._token, to_user_id=command.to, msg=command.msg, mid=mid, origin=self.origin
                )
            )
        try:
            reply = await self.node.batcher.submit(item)
        except RpcError as exc:
            raise Refused(ErrorCode.UNAVAILABLE, f"not sent, try again: {exc}") from None
        self._checked(reply)
        # PublishResult and SendResult, written by hand: every message sent over a socket has one
        return b'{"id":"%s"}' % reply.id.encode()

    async def _history(self, command: History) -> HistoryResult:
        request = logic_pb.HistoryRequest(
            auth_token=self._token,
            room_id=command.room or 0,
            user_id=command.user or 0,
            before=command.before or "",
            limit=command.limit or HISTORY_LIMIT_DEFAULT,
        )
        reply = await self._call("History", request)
        events = [e for body in reply.messages if (e := _event_of_stored(body, self.channel.user_id)) is not None]
        return HistoryResult.model_validate_json(
            b'{"messages":[%s],"more":%s}' % (b",".join(events), b"true" if reply.more else b"false")
        )

    async def _typing(self, command: Typing) -> TypingResult:
        if command.room is not None and command.room not in self.channel.rooms:
            raise Refused(ErrorCode.NOT_SUBSCRIBED, f"not subscribed to room {command.room}")
        now = self.clock()
        if self.typing is None:
            rate = self.node.settings.connect.typing_rate
            self.typing = Bucket(rate, max(1, int(rate * 3)), now)
        if not self.typing.take(now):
            raise Refused(ErrorCode.RATE_LIMITED, "typing notices too often: one every few seconds is enough")
        request = logic_pb.TypingRequest(auth_token=self._token, room_id=command.room or 0, to_user_id=command.to or 0)
        await self._call("Typing", request)
        return TypingResult()


_COUNTERS: dict[tuple[str, str], Any] = {}


def _counted(cmd: str, outcome: str) -> None:
    """metrics.V2_COMMANDS, its children kept (a labels() lookup per message is measurable)."""
    counter = _COUNTERS.get((cmd, outcome))
    if counter is None:
        counter = _COUNTERS[(cmd, outcome)] = metrics.V2_COMMANDS.labels(cmd, outcome)
    counter.inc()


def session_ended_frame(reason: str) -> bytes:
    """The last message before the server closes a v2 socket."""
    return encode(SessionEnded(reason=reason))


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == ""  # a Unix socket


def _event_of_stored(body: bytes, reader: int) -> bytes | None:
    """A stored body with its id (as History returns it) as a v2 message event."""
    try:
        message_id = orjson.loads(body).get("id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return message_event(body, message_id, reader) if isinstance(message_id, str) else None
