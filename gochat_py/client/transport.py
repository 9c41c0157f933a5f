"""The two ways a v2 client reaches a connect node, behind one small interface.

A :class:`Connection` moves whole v2 messages (JSON bytes) and nothing else: on a websocket each is
a text frame; on TCP each is the payload of one frame of the v1 framing
(:mod:`gochat_py.protocol.tcp_frame`), and the server's ``ping msg`` keepalive payload is dropped
here, before any JSON parsing.  Every way a connection can end surfaces as
:class:`TransportClosed`, so the client above has one thing to catch.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection

from gochat_py.config import split_host_port
from gochat_py.protocol.tcp_frame import PING_PAYLOAD, FrameDecoder, FrameError, encode_frame

OPEN_TIMEOUT = 10.0


class TransportClosed(Exception):
    """The connection ended; ``code`` is the websocket close code when there was one (TCP has none)."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Connection(Protocol):
    async def send(self, data: bytes) -> None: ...

    async def recv(self) -> bytes: ...

    async def close(self) -> None: ...


Connector = Callable[[], Awaitable[Connection]]


class WebSocketConnection:
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(cls, url: str, tls: ssl.SSLContext | None = None) -> WebSocketConnection:
        try:
            ws = await websockets.connect(url, ssl=tls, open_timeout=OPEN_TIMEOUT, max_size=2**22)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise TransportClosed(f"cannot connect to {url}: {exc}") from None
        return cls(ws)

    async def send(self, data: bytes) -> None:
        try:
            await self._ws.send(data.decode())  # a text frame, as the protocol wants
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from None

    async def recv(self) -> bytes:
        try:
            message = await self._ws.recv()
        except websockets.ConnectionClosed as exc:
            raise _closed(exc) from None
        return message.encode() if isinstance(message, str) else message

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), OPEN_TIMEOUT)


def _closed(exc: websockets.ConnectionClosed) -> TransportClosed:
    if exc.rcvd is not None:
        return TransportClosed(f"closed by the server ({exc.rcvd.code} {exc.rcvd.reason})".strip(), exc.rcvd.code)
    return TransportClosed("connection lost")


class TcpConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._decoder = FrameDecoder()
        self._ready: deque[bytes] = deque()

    @classmethod
    async def open(cls, address: str, tls: ssl.SSLContext | None = None) -> TcpConnection:
        host, port = split_host_port(address)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), OPEN_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise TransportClosed(f"cannot connect to {address}: {exc}") from None
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        try:
            self._writer.write(encode_frame(data))
            await self._writer.drain()
        except (OSError, RuntimeError) as exc:  # RuntimeError: written after the transport closed
            raise TransportClosed(f"connection lost: {exc}") from None

    async def recv(self) -> bytes:
        while not self._ready:
            try:
                data = await self._reader.read(65536)
            except OSError as exc:
                raise TransportClosed(f"connection lost: {exc}") from None
            if not data:
                raise TransportClosed("closed by the server")
            try:
                payloads = self._decoder.feed(data)
            except FrameError as exc:
                raise TransportClosed(f"bad framing from the server: {exc}") from None
            self._ready.extend(p for p in payloads if p != PING_PAYLOAD)
        return self._ready.popleft()

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), OPEN_TIMEOUT)


def websocket_connector(url: str, tls: ssl.SSLContext | None = None) -> Connector:
    """Opens a new websocket to ``url`` (``ws://host:7000/ws``) on each call."""

    async def connect() -> Connection:
        return await WebSocketConnection.open(url, tls)

    return connect


def tcp_connector(address: str, tls: ssl.SSLContext | None = None) -> Connector:
    """Opens a new TCP connection to ``address`` (``host:port``) on each call."""

    async def connect() -> Connection:
        return await TcpConnection.open(address, tls)

    return connect
