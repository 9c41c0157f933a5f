"""The websocket front end: ``ws://host:7000/ws``, as the original serves it.

A socket must send its join message (``{"authToken": T, "roomId": R}``) within
``auth_timeout``; the original waited for ever.  Later messages are ignored (the original re-ran
the join for each and corrupted its room lists).  A first message that is a protocol-v2 hello
(``{"v": 2, "authToken": T}``) makes a v2 socket instead (connect.v2_session), whose frames may be
up to ``v2_frame_size`` bytes.  Frames go out as text frames holding exactly
the body bytes.  Refusals close with a code and a reason instead of the original's bare TCP
close: 1008 for a bad or unknown token, 1013 when logic is unreachable, 1009 for an inbound
message over 512 bytes, 1001 when the node shuts down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from functools import partial
from http import HTTPStatus

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Origin

from gochat_py.config import Settings, split_host_port
from gochat_py.connect.hub import Channel
from gochat_py.connect.node import ConnectNode, Refusal
from gochat_py.connect.v2_session import V2Session, is_loopback, session_ended_frame
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.protocol.join import JoinError, parse_join
from gochat_py.protocol.v2 import HelloError, parse_hello
from gochat_py.protocol.ws_frame import text_frame
from gochat_py.runtime import wait_for_stop_signal
from gochat_py.tls import server_context

log = logging.getLogger("gochat.connect.ws")

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013


def _reason(text: str) -> str:
    """Close reasons are limited to 123 bytes."""
    return text.encode()[:120].decode(errors="ignore")


class WebsocketFrontEnd:
    def __init__(self, node: ConnectNode, settings: Settings) -> None:
        self.node = node
        self.settings = settings
        self.path = settings.connect_websocket.path
        self.server: Server | None = None
        self._closing: set[asyncio.Future[None]] = set()

    async def start(self) -> int:
        ws_settings = self.settings.connect_websocket
        host, port = split_host_port(ws_settings.bind)
        cs = self.settings.connect
        origins: list[Origin | None] | None = None
        if ws_settings.allowed_origins:
            origins = [Origin(o) for o in ws_settings.allowed_origins] + [None]
        self.server = await serve(
            self.handle,
            host,
            port,
            process_request=self._check_path,
            compression=None,
            max_size=cs.max_message_size,
            ping_interval=cs.ping_interval,
            ping_timeout=cs.pong_timeout,
            close_timeout=5,
            open_timeout=cs.auth_timeout,
            origins=origins,
            ssl=server_context(ws_settings.tls_cert, ws_settings.tls_key),
        )
        return self.server.sockets[0].getsockname()[1]

    def _check_path(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path.partition("?")[0] != self.path:
            return connection.respond(HTTPStatus.NOT_FOUND, "Not Found\n")
        return None

    async def handle(self, ws: ServerConnection) -> None:
        _forget_handshake(ws)
        try:
            raw = await asyncio.wait_for(ws.recv(), self.settings.connect.auth_timeout)
        except TimeoutError:
            log.info("join refused", extra=kv(peer=_peer(ws), reason="authentication timeout"))
            await ws.close(CLOSE_POLICY, "authentication timeout")
            return
        except ConnectionClosed as closed:
            # e.g. 1009 (message over 512 bytes) or 1007 (invalid UTF-8), decided by the library
            code = closed.sent.code if closed.sent else None
            log.info("websocket closed before joining", extra=kv(peer=_peer(ws), code=code))
            return
        try:
            hello = parse_hello(raw)
            join = parse_join(raw) if hello is None else None
        except (HelloError, JoinError) as exc:
            what = "hello" if isinstance(exc, HelloError) else "join"
            log.info(f"{what} refused", extra=kv(peer=_peer(ws), reason=str(exc)))
            await ws.close(CLOSE_POLICY, _reason(str(exc)))
            return
        if hello is not None:
            token, since = hello.auth_token, hello.since
            del raw, hello  # this frame lasts as long as the socket: keep only what is used
            await self._serve_v2(ws, token, since)
            return
        assert join is not None
        token, room_id, since = join.auth_token, join.room_id, join.since
        del raw, join
        limit = self.settings.connect.send_buffer
        result = await self.node.join(
            token,
            room_id,
            lambda user_id, user_name: WsChannel(user_id, user_name, room_id, ws, limit),
            since,
        )
        if isinstance(result, Refusal):
            log.info("join refused", extra=kv(peer=_peer(ws), reason=result.reason))
            await ws.close(CLOSE_TRY_AGAIN if result.retry else CLOSE_POLICY, _reason(result.reason))
            return
        channel = result
        channel.on_close = lambda reason: asyncio.ensure_future(ws.close(CLOSE_POLICY, _reason(reason)))
        try:
            async for _ in ws:
                pass  # chat goes over HTTP; a second join is ignored
        except ConnectionClosed:
            pass
        finally:
            await self._gone(channel)

    async def _serve_v2(self, ws: ServerConnection, auth_token: str, since: str | None) -> None:
        cs = self.settings.connect
        result = await self.node.hello(
            auth_token,
            since,
            lambda user_id, user_name: WsChannel(user_id, user_name, 0, ws, cs.send_buffer, version=2),
            self.node.limits(cs.v2_frame_size),
        )
        if isinstance(result, Refusal):
            log.info("hello refused", extra=kv(peer=_peer(ws), reason=result.reason))
            await ws.close(CLOSE_TRY_AGAIN if result.retry else CLOSE_POLICY, _reason(result.reason))
            return
        channel = result
        ws.protocol.max_message_size = cs.v2_frame_size
        channel.on_close = partial(self._close_v2, channel)  # one small object, not two closures
        exempt = _loopback(ws) and not self.settings.api.rate_limit_loopback
        session = V2Session(self.node, channel, exempt=exempt)
        try:
            async for raw in ws:
                reason = await session.handle(raw)
                del raw  # not kept while the socket idles
                if reason:
                    log.info("closing a v2 socket", extra=kv(user_id=channel.user_id, reason=reason))
                    _say_why(channel, reason)
                    await ws.close(CLOSE_POLICY, _reason(reason))
                    break
        except ConnectionClosed:
            pass
        finally:
            await self._gone(channel)

    def _close_v2(self, channel: WsChannel, reason: str) -> None:
        """A v2 socket's ``on_close``: says why, then closes."""
        _say_why(channel, reason)
        task = asyncio.ensure_future(channel.connection.close(CLOSE_POLICY, _reason(reason)))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _gone(self, channel: Channel) -> None:
        await self.node.leave(channel)
        if channel.overflowed:
            log.warning("closed a slow client", extra=kv(user_id=channel.user_id))

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close(close_connections=True)
            await self.server.wait_closed()


class WsChannel(Channel):
    """A channel over a websocket: takes ready-made text frames (see protocol.ws_frame) and writes
    them beside the library's own control frames, whole frames only, while the connection is
    open (never after a close frame)."""

    __slots__ = ("connection",)

    def __init__(
        self, user_id: int, user_name: str, room_id: int, connection: ServerConnection, limit: int, version: int = 1
    ):
        super().__init__(user_id, user_name, room_id, connection.transport, limit, version)
        self.connection = connection

    def writable(self) -> bool:
        return not self.closed and self.connection.protocol.state is State.OPEN


async def ping(channel: object) -> Awaitable[float]:
    """The pacer's probe: a ping behind the frames already written (see connect.pacing)."""
    if not isinstance(channel, WsChannel) or not channel.writable():
        raise ConnectionError("not an open websocket")
    return await channel.connection.ping()


def _say_why(channel: Channel, reason: str) -> None:
    """A v2 socket's last message before the server closes it."""
    if channel.writable() and not channel.overflowed:
        channel.transport.write(text_frame(session_ended_frame(reason)))


def _loopback(ws: ServerConnection) -> bool:
    address = ws.remote_address
    return is_loopback(address[0] if address else "")


# What a connection keeps of its handshake once it is open: nothing reads the headers again.
_NO_HEADERS = Headers()


def _forget_handshake(ws: ServerConnection) -> None:
    """Drops the handshake's request and response headers, which the library keeps for the
    connection's life: a few KiB per socket, more than everything else gochat keeps for it."""
    if ws.request is not None:
        ws.request.headers = _NO_HEADERS
    ws.response = None


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    return f"{address[0]}:{address[1]}" if address else "?"


async def serve_websocket(settings: Settings) -> None:
    node = ConnectNode(settings, settings.connect_websocket, "ws", encode=text_frame, probe=ping)
    await node.start()
    front = WebsocketFrontEnd(node, settings)
    port = await front.start()
    serve_metrics(settings, "connect_websocket", node.health("connect_websocket"))
    log.info("ready", extra=kv(server_id=node.server_id, ws_port=port, path=front.path))
    await wait_for_stop_signal()
    log.info("stopping", extra=kv(connections=node.hub.connection_count()))
    await node.deregister()
    await front.stop()
    await node.stop()
    log.info("stopped")
