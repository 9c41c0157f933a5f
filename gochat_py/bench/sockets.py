"""One bench socket of any kind, opened, read and closed the same way for the bench and the soak.

Three kinds: ``"tcp"`` (gochat's stick-package framing, :class:`TcpClient`), ``"lean"`` (the lean
websocket client of ``ws_client.py``) and ``"websockets"`` (the ``websockets`` library's asyncio
client, which the soak uses: a real client library, at about twice the CPU per frame).  Every kind
hands what it receives to ``on_frames(index, payloads)`` and reports its end once to
``on_lost(index, reason)``, and its handle has ``close()``; the lean and TCP handles also
``send_text(payload)`` (the v2 messages after the join).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from gochat_py.bench.framing import TCP_PING, FrameError, StickSplitter, encode_stick
from gochat_py.bench.ws_client import connect_lean_ws

OnFrames = Callable[[int, list[bytes]], None]
OnLost = Callable[[int, str], None]


class TcpClient(asyncio.Protocol):
    """A gochat TCP client (stick-package frames): join with op 6, then read frames.

    ``on_frames(index, payloads)`` gets every payload of a received chunk but the server's pings
    at once, like the lean websocket client's."""

    def __init__(self, index: int, on_frames: OnFrames, on_lost: OnLost) -> None:
        self.index = index
        self.on_frames = on_frames
        self.on_lost = on_lost
        self.splitter = StickSplitter()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            payloads = self.splitter.feed(data)
        except FrameError as exc:
            self.on_lost(self.index, f"bad frame: {exc}")
            if self.transport:
                self.transport.abort()
            return
        if TCP_PING in payloads:
            payloads = [p for p in payloads if p != TCP_PING]
        if payloads:
            self.on_frames(self.index, payloads)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_lost(self.index, f"connection lost: {exc}" if exc else "closed by server")

    def send_text(self, payload: bytes) -> None:
        """One frame (the join, or a v2 message)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("the TCP connection is not open")
        self.transport.write(encode_stick(payload))

    async def close(self) -> None:
        if self.transport:
            self.transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 2)


class LibraryWs:
    """The ``websockets`` library's client with one reader task: frame by frame to ``on_frames``."""

    def __init__(self, ws: Any, index: int, on_frames: OnFrames, on_lost: OnLost) -> None:
        self.ws = ws
        self.reader = asyncio.create_task(self._read(index, on_frames, on_lost))

    async def _read(self, index: int, on_frames: OnFrames, on_lost: OnLost) -> None:
        from websockets.exceptions import ConnectionClosed

        ws = self.ws
        try:
            while True:
                on_frames(index, [await ws.recv(decode=False)])
        except ConnectionClosed as exc:
            on_lost(index, f"closed {exc.rcvd.code if exc.rcvd else 1006} {exc.rcvd.reason if exc.rcvd else ''}")

    async def close(self) -> None:
        try:
            await self.ws.close()
        finally:
            self.reader.cancel()


async def open_socket(
    kind: str,
    address: str | tuple[str, int],
    index: int,
    first: bytes,
    on_frames: OnFrames,
    on_lost: OnLost,
    *,
    local_addr: tuple[str, int] | None = None,
    timeout: float = 60.0,
) -> Any:
    """A socket of ``kind`` to ``address`` (a URL; ``(host, port)`` for TCP), from ``local_addr``
    when given, opened within ``timeout``, that has sent ``first`` (the join or the v2 hello)."""
    if kind == "tcp":
        host, port = address
        _, handle = await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(
                lambda: TcpClient(index, on_frames, on_lost), host, port, local_addr=local_addr
            ),
            timeout,
        )
    elif kind == "websockets":
        from websockets.asyncio.client import connect

        ws = await connect(
            str(address),
            compression=None,
            max_size=8 * 1024 * 1024,
            open_timeout=timeout,
            ping_interval=None,  # the server pings; the library answers
            close_timeout=2,
            **({"local_addr": local_addr} if local_addr else {}),
        )
        await ws.send(first.decode())
        return LibraryWs(ws, index, on_frames, on_lost)
    else:
        handle = await connect_lean_ws(str(address), index, on_frames, on_lost, local_addr=local_addr, timeout=timeout)
    handle.send_text(first)
    return handle


async def close_all(handles: list[Any], each: float = 3.0) -> None:
    """Closes the sockets, 256 at a time, each within ``each`` seconds and all within 15."""
    limit = asyncio.Semaphore(256)

    async def close(handle: Any) -> None:
        async with limit:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(handle.close(), each)

    handles = [h for h in handles if h is not None]
    if handles:
        await asyncio.wait([asyncio.create_task(close(h)) for h in handles], timeout=15)
