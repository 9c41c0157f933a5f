"""An asyncio client of protocol v2 that survives dropped connections.

:class:`ChatClient` holds one socket at a time (websocket or TCP, see
:mod:`gochat_py.client.transport`) and gives the application:

- awaitable commands: :meth:`~ChatClient.subscribe`, :meth:`~ChatClient.publish`,
  :meth:`~ChatClient.send`, :meth:`~ChatClient.history`, :meth:`~ChatClient.presence`,
  :meth:`~ChatClient.typing`, :meth:`~ChatClient.ping`;
- one stream of events, :meth:`~ChatClient.events`: the server's (messages, join, leave, typing,
  gap, session_ended) and the connection's own (:class:`Connected`, :class:`Disconnected`,
  :class:`Closed`).

When the socket drops, the client connects again after a backoff with jitter, says hello with the
``since`` of the private messages, subscribes again to every room with the room's ``since``, and
drops what it has delivered already (:class:`gochat_py.client.resume.ResumeState` keeps that
account), so the application sees every message once, in order within each conversation.  A
command waiting for its reply when the socket dropped is sent again on the next socket; publish
and send carry a client message id (``mid``) so the server stores such a retry once.  Publish and
send keep to the welcome's ``publish_rate``/``publish_burst`` on their own, and wait and retry
when the server answers ``rate_limited`` or ``unavailable`` all the same (without end: wrap them
in ``asyncio.timeout`` for a deadline).  A command whose frame would exceed the welcome's
``frame_size`` is refused here (``too_long``) rather than sent, since the server closes a socket
for such a frame and the retry on the next socket would meet the same fate.

Only a refusal of the token ends the client for good (websocket close 1008 before the welcome, or
a ``session_ended`` instead of the welcome): it emits :class:`Closed` and every waiting command
raises :class:`ClientClosed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gochat_py.client.backoff import Backoff
from gochat_py.client.resume import FROM_START, Outgoing, ResumeState
from gochat_py.client.transport import Connection, Connector, TransportClosed
from gochat_py.logs import kv
from gochat_py.protocol.tcp_frame import HEADER_SIZE
from gochat_py.protocol.v2_client import ClientCodec, Reply, ServerMessageError, UnknownEvent
from gochat_py.protocol.v2_codes import CLOSE_POLICY, ErrorCode
from gochat_py.protocol.v2_messages import (
    Command,
    ErrorReply,
    Gap,
    History,
    HistoryResult,
    Limits,
    MemberJoined,
    MemberLeft,
    Ping,
    PingResult,
    Presence,
    PresenceResult,
    PrivateMessage,
    Publish,
    PublishResult,
    RoomMessage,
    Send,
    SendResult,
    SessionEnded,
    Subscribe,
    SubscribeResult,
    Typing,
    TypingEvent,
    Unsubscribe,
    User,
    Welcome,
    WireModel,
)
from gochat_py.token_buckets import TokenBuckets

log = logging.getLogger("gochat.client")

R = TypeVar("R", bound=WireModel)
WELCOME_TIMEOUT = 15.0  # the server closes a socket without a hello in 10 s; it answers one at once
PING_TIMEOUT = 15.0
RETRY_CODES = frozenset({ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE})


@dataclass(frozen=True, slots=True)
class Connected:
    """A socket was welcomed; ``resumed``: not the first one (rooms are being subscribed again)."""

    user: User
    limits: Limits
    resumed: bool


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The socket ended; the client connects again in ``retry_in`` seconds."""

    reason: str
    retry_in: float


@dataclass(frozen=True, slots=True)
class Closed:
    """The client stopped for good (closed by the application, or the token was refused); the last
    event."""

    reason: str


@dataclass(frozen=True, slots=True)
class SubscriptionLost:
    """Subscribing again to ``room`` after a reconnect was refused; the room is not followed any more."""

    room: int
    reason: str


ClientEvent = (
    RoomMessage
    | PrivateMessage
    | MemberJoined
    | MemberLeft
    | TypingEvent
    | Gap
    | SessionEnded
    | UnknownEvent
    | Connected
    | Disconnected
    | Closed
    | SubscriptionLost
)


class CommandError(Exception):
    """The server answered a command with an error; the socket is fine."""

    def __init__(self, code: int, message: str) -> None:
        try:
            name = ErrorCode(code).name.lower()
        except ValueError:
            name = f"error_{code}"
        super().__init__(f"{name}: {message}")
        self.code, self.name, self.message = code, name, message


class ClientClosed(Exception):
    """The client is closed: no command can be sent any more."""


class _Refused(Exception):
    """The server refused the token: connecting again would be refused again."""


class _Lost(Exception):
    """The socket a command was sent on ended before its reply."""


@dataclass(slots=True)
class _Link:
    """One welcomed socket, with its cid numbering and the commands waiting for their reply."""

    conn: Connection
    frame_size: int
    codec: ClientCodec = field(default_factory=ClientCodec)
    waiters: dict[int, asyncio.Future[WireModel]] = field(default_factory=dict)

    def lose(self) -> None:
        for waiter in self.waiters.values():
            if not waiter.done():
                waiter.set_exception(_Lost())
                waiter.exception()  # retrieved: nobody may be awaiting it any more
        self.waiters.clear()


class ChatClient:
    """One user's v2 client; use as ``async with ChatClient(connector, token) as client:``."""

    def __init__(
        self,
        connect: Connector,
        token: str,
        *,
        backoff: Backoff | None = None,
        keepalive: float = 20.0,
        state: ResumeState | None = None,
    ) -> None:
        self._connect = connect
        self._token = token
        self._backoff = backoff or Backoff()
        self._keepalive = keepalive
        self.state = state or ResumeState()
        self.welcome: Welcome | None = None
        self._events: asyncio.Queue[ClientEvent] = asyncio.Queue()
        self._link: _Link | None = None
        self._ready = asyncio.Event()  # set while a link is usable, and once closed (waiters check)
        self._closed: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._conn: Connection | None = None
        self._pace = TokenBuckets(0, 1)  # publish and send, at the rate the welcome allows

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> Welcome:
        """Connects (retrying while the server cannot be reached); raises ClientClosed if the
        token is refused."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gochat-client")
        await self._usable_link()
        assert self.welcome is not None
        return self.welcome

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._finish("closed by the application")

    async def __aenter__(self) -> ChatClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._link is not None and self._ready.is_set()

    async def events(self) -> AsyncIterator[ClientEvent]:
        """Every event, in the order it arrived, until :class:`Closed` (which is yielded last).
        Events wait in memory until read, so a client that subscribes to rooms should read them."""
        while True:
            event = await self._events.get()
            yield event
            if isinstance(event, Closed):
                return

    # ---- commands ----------------------------------------------------------------------------

    async def subscribe(self, room: int, since: str | None = None) -> SubscribeResult:
        """Follow ``room`` from now on (or from after ``since``), across reconnects.

        To know where "now" is after a reconnect, a room followed for the first time is anchored
        at its newest kept message (one ``history`` call), so messages published while the socket
        is down are caught up even when none arrived before.
        """
        fresh = room not in self.state.rooms()
        if fresh and since is None:
            since = await self._anchor(room)
        since = self.state.track(room, since)
        try:
            return await self._call(SubscribeResult, Subscribe, room=room, since=since)
        except BaseException:
            if fresh:
                self.state.untrack(room)
            raise

    async def unsubscribe(self, room: int) -> None:
        self.state.untrack(room)
        await self._call(WireModel, Unsubscribe, room=room)

    async def publish(self, room: int, msg: str) -> str:
        """Publishes to a subscribed room; the stored message's id.  The message also arrives as a
        ``message`` event."""
        item = self.state.outgoing("publish", room, msg)
        return await self._deliver(item, PublishResult, Publish, room=room, msg=msg, mid=item.mid)

    async def send(self, to: int, msg: str) -> str:
        """A private message to user ``to``; the stored message's id (no event comes back)."""
        item = self.state.outgoing("send", to, msg)
        return await self._deliver(item, SendResult, Send, to=to, msg=msg, mid=item.mid)

    async def history(
        self, *, room: int | None = None, user: int | None = None, before: str | None = None, limit: int | None = None
    ) -> HistoryResult:
        """A page of a room's (``room``) or a private conversation's (``user``) kept messages,
        newest first."""
        return await self._call(HistoryResult, History, room=room, user=user, before=before, limit=limit)

    async def presence(self, room: int) -> PresenceResult:
        return await self._call(PresenceResult, Presence, room=room)

    async def typing(self, *, room: int | None = None, to: int | None = None) -> None:
        await self._call(WireModel, Typing, room=room, to=to)

    async def ping(self) -> int:
        """The server's clock, in milliseconds since the epoch."""
        return (await self._call(PingResult, Ping)).time

    # ---- command plumbing --------------------------------------------------------------------

    async def _anchor(self, room: int) -> str | None:
        try:
            page = await self._call(HistoryResult, History, room=room, limit=1)
        except CommandError:
            return None  # no history here: live messages only
        return page.messages[0].id if page.messages else FROM_START

    async def _deliver(
        self, item: Outgoing, result: type[PublishResult | SendResult], kind: type[Command], **fields: Any
    ) -> str:
        delay = Backoff(0.1, 5.0)
        loop = asyncio.get_running_loop()
        try:
            while True:
                while (wait := self._pace.take("", loop.time())) > 0:
                    await asyncio.sleep(wait)
                try:
                    reply = await self._call(result, kind, **fields)
                except CommandError as exc:
                    if exc.code not in RETRY_CODES:
                        raise
                    await asyncio.sleep(delay.next_delay())
                    continue
                self.state.acked(item, reply.id)
                return reply.id
        finally:
            self.state.abandoned(item)  # a no-op once acked

    async def _call(self, result: type[R], kind: type[Command], **fields: Any) -> R:
        """Sends the command on the current socket, again on the next one if the socket drops."""
        while True:
            link = await self._usable_link()
            try:
                reply = await self._command_on(link, kind, **fields)
            except _Lost:
                continue
            assert isinstance(reply, result), (kind, reply)
            return reply

    async def _command_on(self, link: _Link, kind: type[Command], **fields: Any) -> WireModel:
        cid, data = link.codec.command(kind, **{k: v for k, v in fields.items() if v is not None})
        if len(data) + HEADER_SIZE > link.frame_size:
            link.codec.pending.pop(cid, None)
            raise CommandError(ErrorCode.TOO_LONG, f"a frame of {len(data)} bytes is over limits.frame_size")
        waiter: asyncio.Future[WireModel] = asyncio.get_running_loop().create_future()
        link.waiters[cid] = waiter
        try:
            await link.conn.send(data)
        except TransportClosed:
            link.waiters.pop(cid, None)
            raise _Lost from None
        return await waiter

    async def _usable_link(self) -> _Link:
        while True:
            if self._closed is not None:
                raise ClientClosed(self._closed)
            if self._link is not None and self._ready.is_set():
                return self._link
            await self._ready.wait()
            if self._link is None and self._closed is None:
                self._ready.clear()  # woken by a stale set: wait for the next link

    # ---- the connection loop -----------------------------------------------------------------

    async def _run(self) -> None:
        reason = "closed"
        try:
            while True:
                try:
                    conn = await self._connect()
                except TransportClosed as exc:
                    reason = exc.reason
                else:
                    self._conn = conn
                    try:
                        await self._session(conn)
                        reason = "connection ended"
                    except TransportClosed as exc:
                        reason = exc.reason
                    except (ServerMessageError, TimeoutError) as exc:
                        reason = f"{type(exc).__name__}: {exc}"
                    finally:
                        self._drop_link()
                        self._conn = None
                        await conn.close()
                delay = self._backoff.next_delay()
                log.info("disconnected", extra=kv(reason=reason, retry_in=round(delay, 2)))
                self._events.put_nowait(Disconnected(reason, delay))
                await asyncio.sleep(delay)
        except _Refused as exc:
            log.warning("token refused", extra=kv(reason=str(exc)))
            self._finish(f"refused: {exc}")

    async def _session(self, conn: Connection) -> None:
        codec = ClientCodec()
        await conn.send(codec.hello(self._token, self.state.hello_since()))
        try:
            first = codec.receive(await asyncio.wait_for(conn.recv(), WELCOME_TIMEOUT))
        except TransportClosed as exc:
            if exc.code == CLOSE_POLICY:
                raise _Refused(exc.reason) from None
            raise
        if isinstance(first, SessionEnded):
            raise _Refused(first.reason)
        if not isinstance(first, Welcome):
            raise ServerMessageError(f"expected the welcome, got {type(first).__name__}")
        resumed = self.welcome is not None
        self.welcome = first
        self.state.welcome(first.user.id, first.time)
        self._backoff.reset()
        link = _Link(conn, first.limits.frame_size, codec)
        if first.limits.publish_rate != self._pace.rate or first.limits.publish_burst != self._pace.burst:
            self._pace = TokenBuckets(first.limits.publish_rate, first.limits.publish_burst)
        self._link = link
        log.info("connected", extra=kv(user=first.user.id, resumed=resumed))
        self._events.put_nowait(Connected(first.user, first.limits, resumed))
        reader = asyncio.create_task(self._read(link), name="gochat-client-reader")
        try:
            await self._resubscribe(link, reader)
            self._ready.set()
            await self._watch(link, reader)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, TransportClosed, ServerMessageError):
                await reader

    async def _resubscribe(self, link: _Link, reader: asyncio.Task[None]) -> None:
        """Every followed room again, each with its since, before any other command may go out
        (the server answers a socket's commands in order, so a retried publish comes after)."""
        rooms = self.state.resubscriptions()
        if not rooms:
            return
        pending = [
            asyncio.ensure_future(self._command_on(link, Subscribe, room=room, since=since)) for room, since in rooms
        ]
        done, _ = await asyncio.wait(
            {reader, asyncio.gather(*pending, return_exceptions=True)}, return_when=asyncio.FIRST_COMPLETED
        )
        if reader in done:
            reader.result()  # raises why the socket ended
            raise TransportClosed("connection ended")
        for (room, _), task in zip(rooms, pending, strict=True):
            exc = task.exception()
            if isinstance(exc, _Lost):
                raise TransportClosed("connection lost while subscribing again")
            if isinstance(exc, CommandError):
                if exc.code == ErrorCode.UNAVAILABLE:
                    raise TransportClosed(f"cannot subscribe again to room {room}: {exc}")
                self.state.untrack(room)
                self._events.put_nowait(SubscriptionLost(room, str(exc)))
            elif exc is not None:
                raise exc

    async def _watch(self, link: _Link, reader: asyncio.Task[None]) -> None:
        """Until the reader stops; a ping when the socket was quiet for ``keepalive`` seconds, so a
        connection that died without a word (a cut cable) is noticed."""
        while True:
            await asyncio.wait({reader}, timeout=self._keepalive)
            if reader.done():
                reader.result()
                return
            try:
                await asyncio.wait_for(self._command_on(link, Ping), PING_TIMEOUT)
            except TimeoutError:
                raise TransportClosed(f"no answer to a ping within {PING_TIMEOUT:g} s") from None
            except _Lost:
                continue  # the reader has stopped; the next round returns its reason

    async def _read(self, link: _Link) -> None:
        while True:
            data = await link.conn.recv()
            try:
                item = link.codec.receive(data)
            except ServerMessageError as exc:
                log.warning("unreadable message from the server", extra=kv(error=str(exc)))
                continue
            if isinstance(item, Reply):
                self._resolve(link, item.cid, result=item.result)
            elif isinstance(item, ErrorReply):
                if item.cid == 0:
                    log.warning("server could not read a command", extra=kv(error=item.error.message))
                self._resolve(link, item.cid, error=CommandError(item.error.code, item.error.message))
            elif isinstance(item, Welcome):
                continue  # only the first message may be one
            elif isinstance(item, UnknownEvent) or self.state.accept(item):
                self._events.put_nowait(item)

    @staticmethod
    def _resolve(link: _Link, cid: int, result: WireModel | None = None, error: Exception | None = None) -> None:
        waiter = link.waiters.pop(cid, None)
        if waiter is None or waiter.done():
            return
        if error is not None:
            waiter.set_exception(error)
        else:
            waiter.set_result(result)  # type: ignore[arg-type]

    def _drop_link(self) -> None:
        self._ready.clear()
        if self._link is not None:
            self._link.lose()
            self._link = None

    def _finish(self, reason: str) -> None:
        if self._closed is not None:
            return
        self._closed = reason
        self._drop_link()
        self._ready.set()  # wakes every waiting command, which then raises ClientClosed
        self._events.put_nowait(Closed(reason))
