"""The raw TCP front end: the original's length-prefixed frames on ports 7001 and 7002.

A client joins with an op-6 frame (``{"authToken", "roomId", "op": 6}``) and may send room
messages with op 3; it receives the same frame bodies websocket clients get, each in a frame,
and a ``ping msg`` frame every ``ping_interval``.  Unlike the original:

- the sender of an op-3 message is the owner of the token, never the ``fromUserId`` /
  ``fromUserName`` in the frame, and an unknown token closes the connection;
- a connection that has not authenticated within ``auth_timeout`` is closed;
- bad framing (wrong version, a length under 4 or over ``max_frame_size``) or a payload that is
  not a JSON object closes that connection with a log line, never the process;
- a vanished peer is dropped once the ping stays unacknowledged for ``write_timeout``
  (TCP_USER_TIMEOUT), and TCP keepalive is on.

A first payload that is a protocol-v2 hello (``{"v": 2, "authToken": T}``) makes a v2 connection
instead: the same framing, every later payload a v2 command (connect.v2_session).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

from gochat_py.config import Settings, split_host_port
from gochat_py.connect.hub import Channel
from gochat_py.connect.node import ConnectNode, Refusal
from gochat_py.connect.v2_session import V2Session, is_loopback, session_ended_frame
from gochat_py.logs import kv
from gochat_py.metrics import serve_metrics
from gochat_py.protocol.frames import OP_BUILD_TCP_CONN, OP_ROOM_SEND
from gochat_py.protocol.tcp_frame import (
    PING_FRAME,
    ClientMessage,
    FrameDecoder,
    FrameError,
    encode_frame,
    parse_client_message,
)
from gochat_py.protocol.v2 import HelloError, parse_hello
from gochat_py.protocol.v2_messages import Hello
from gochat_py.rpc import logic_pb2 as logic_pb
from gochat_py.rpc.client import RpcError
from gochat_py.runtime import wait_for_stop_signal
from gochat_py.tls import server_context

log = logging.getLogger("gochat.connect.tcp")
READ_SIZE = 65536


class Close(Exception):
    """Ends one connection; the message is the reason logged."""


@dataclass(eq=False)  # identity: a connection is a member of a set
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    decoder: FrameDecoder
    channel: Channel | None = None
    token: str = ""
    authenticated: bool = False
    session: V2Session | None = None  # a v2 connection's
    first: bool = True  # no payload read yet: the next one may be a v2 hello


def _tune(sock: socket.socket | None, user_timeout: float) -> None:
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(user_timeout * 1000))


class TcpFrontEnd:
    def __init__(self, node: ConnectNode, settings: Settings) -> None:
        self.node = node
        self.settings = settings
        self.servers: list[asyncio.Server] = []
        self.connections: set[Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._pinger: asyncio.Task[None] | None = None

    async def start(self) -> list[str]:
        bound = []
        tcp = self.settings.connect_tcp
        context = server_context(tcp.tls_cert, tcp.tls_key)
        for address in tcp.bind:
            host, port = split_host_port(address)
            server = await asyncio.start_server(self._accept, host, port, limit=READ_SIZE, ssl=context)
            self.servers.append(server)
            bound.extend(f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in server.sockets)
        self._pinger = asyncio.create_task(self._ping_all(), name="tcp-ping")
        return bound

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self.handle(reader, writer)
        finally:
            self._handlers.discard(task)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _tune(writer.get_extra_info("socket"), self.settings.connect.write_timeout)
        peer = writer.get_extra_info("peername")
        conn = Connection(
            reader,
            writer,
            f"{peer[0]}:{peer[1]}" if peer else "?",
            FrameDecoder(self.settings.connect_tcp.max_frame_size),
        )
        self.connections.add(conn)
        try:
            await self._read(conn)
        except Close as reason:
            log.info("tcp connection closed", extra=kv(peer=conn.peer, reason=str(reason)))
        except (ConnectionError, OSError):
            pass
        finally:
            self.connections.discard(conn)
            if conn.channel is not None:
                await self.node.leave(conn.channel)
                if conn.channel.overflowed:
                    log.warning("closed a slow client", extra=kv(user_id=conn.channel.user_id))
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect.auth_timeout
        while True:
            if conn.authenticated:
                data = await conn.reader.read(READ_SIZE)
            else:
                try:
                    data = await asyncio.wait_for(conn.reader.read(READ_SIZE), deadline - loop.time())
                except TimeoutError:
                    raise Close("authentication timeout") from None
            if not data:
                return
            try:
                payloads, error = conn.decoder.feed(data), None
            except FrameError as exc:
                payloads, error = exc.payloads, exc
            for payload in payloads:
                await self._on_payload(conn, payload)
            if error is not None:
                raise Close(f"bad frame: {error}")

    async def _on_payload(self, conn: Connection, payload: bytes) -> None:
        if conn.session is not None:
            reason = await conn.session.handle(payload)
            if reason:
                self._say_why(conn, reason)
                raise Close(reason)
            return
        if conn.first:
            conn.first = False
            try:
                hello = parse_hello(payload)
            except HelloError as exc:
                conn.writer.transport.write(encode_frame(session_ended_frame(str(exc))))
                raise Close(str(exc)) from None
            if hello is not None:
                await self._hello(conn, hello)
                return
        try:
            message = parse_client_message(payload)
        except FrameError as exc:
            raise Close(f"bad frame: {exc}") from None
        if not message.auth_token:
            raise Close("frame without authToken")
        if message.room_id <= 0:
            raise Close(f"roomId must be positive, got {message.room_id}")
        if message.op == OP_BUILD_TCP_CONN:
            await self._join(conn, message)
        elif message.op == OP_ROOM_SEND:
            await self._send_to_room(conn, message)
        # other ops: ignored, as the original does

    async def _join(self, conn: Connection, message: ClientMessage) -> None:
        if conn.channel is not None:
            return  # already in a room: a repeated join is ignored (the original corrupted its lists)
        limit, transport = self.settings.connect.send_buffer, conn.writer.transport
        result = await self.node.join(
            message.auth_token,
            message.room_id,
            lambda user_id, user_name: Channel(user_id, user_name, message.room_id, transport, limit),
            message.since,
        )
        if isinstance(result, Refusal):
            raise Close(f"join refused: {result.reason}")
        conn.channel, conn.token, conn.authenticated = result, message.auth_token, True
        # a slow client's buffer is dropped; otherwise what is queued still goes out before the close
        result.on_close = lambda _reason: transport.abort() if result.overflowed else transport.close()

    async def _hello(self, conn: Connection, hello: Hello) -> None:
        cs, transport = self.settings.connect, conn.writer.transport
        result = await self.node.hello(
            hello.auth_token,
            hello.since,
            lambda user_id, user_name: Channel(user_id, user_name, 0, transport, cs.send_buffer, version=2),
            self.node.limits(self.settings.connect_tcp.max_frame_size),
        )
        if isinstance(result, Refusal):
            # TCP has no close codes: a session_ended tells a client not to come back with this
            # token; a bare close (logic unreachable) means "try again later", as 1013 does
            if not result.retry:
                conn.writer.transport.write(encode_frame(session_ended_frame(f"hello refused: {result.reason}")))
            raise Close(f"hello refused: {result.reason}")
        conn.channel, conn.authenticated = result, True
        exempt = is_loopback(conn.peer.rpartition(":")[0]) and not self.settings.api.rate_limit_loopback
        conn.session = V2Session(self.node, result, exempt=exempt)

        def close(reason: str) -> None:
            if result.overflowed:
                transport.abort()
            else:
                self._say_why(conn, reason)
                transport.close()

        result.on_close = close

    @staticmethod
    def _say_why(conn: Connection, reason: str) -> None:
        channel = conn.channel
        if channel is not None and channel.writable() and not channel.overflowed:
            conn.writer.transport.write(encode_frame(session_ended_frame(reason)))

    async def _send_to_room(self, conn: Connection, message: ClientMessage) -> None:
        """The sender is whoever owns the token (logic checks it, which also keeps the session
        alive): fromUserId/fromUserName in the frame are ignored."""
        limit = self.settings.api.max_message_length
        if len(message.msg) > limit:
            raise Close(f"msg is too long: {len(message.msg)} characters, at most {limit} are allowed")
        request = logic_pb.PushRoomRequest(auth_token=message.auth_token, room_id=message.room_id, msg=message.msg)
        try:
            reply = await self.node.logic.call("PushRoom", request)
        except RpcError as exc:
            log.warning("tcp room message not sent", extra=kv(peer=conn.peer, error=str(exc)))
            return
        if reply.code == logic_pb.SESSION_ERROR:
            raise Close("unknown authToken")
        conn.authenticated = True

    async def _ping_all(self) -> None:
        """One timer for every connection (not a task per socket): the original's ping frame."""
        while True:
            await asyncio.sleep(self.settings.connect.ping_interval)
            for conn in list(self.connections):
                if not conn.writer.transport.is_closing():
                    conn.writer.transport.write(PING_FRAME)

    async def stop(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
        for server in self.servers:
            server.close()
        for conn in list(self.connections):
            conn.writer.close()  # the client sees the connection end and reconnects elsewhere
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=10)
        for server in self.servers:
            await server.wait_closed()


async def serve_tcp(settings: Settings) -> None:
    node = ConnectNode(settings, settings.connect_tcp, "tcp", encode=encode_frame)
    await node.start()
    front = TcpFrontEnd(node, settings)
    bound = await front.start()
    serve_metrics(settings, "connect_tcp", node.health("connect_tcp"))
    log.info("ready", extra=kv(server_id=node.server_id, tcp=",".join(bound)))
    await wait_for_stop_signal()
    log.info("stopping", extra=kv(connections=len(front.connections)))
    await node.deregister()
    await front.stop()
    await node.stop()
    log.info("stopped")
