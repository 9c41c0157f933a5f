"""The bench's lean websocket client: RFC 6455 spoken on a bare ``asyncio.Protocol``.

The ``websockets`` library's asyncio client costs about 8 µs of CPU per received frame here (a
reader task per socket, a frame parser generator, a frame object, a message assembler and a
queue), more than the gochat server spends delivering the frame, so on a small machine the
benchmark measured its own clients.  This client does only what a benchmark socket needs:

- the opening handshake (GET with ``Sec-WebSocket-Key``, a 101 with the right
  ``Sec-WebSocket-Accept``; no extensions, so no compression, and no subprotocol);
- one masked text frame out (the join), as every client frame must be masked;
- server frames split straight from each ``data_received`` chunk by
  :class:`~gochat_py.bench.framing.WsSplitter` (fragmented messages reassembled), and the
  chunk's text and binary payloads handed to ``on_frames`` as one list (the bench's
  ``Counter.on_frames``), with no task, queue or object per frame and one call per chunk rather
  than per frame;
- a ping answered with a masked pong carrying the same payload (the server drops a socket that
  does not answer within ``pong_timeout``), a close frame answered with a close frame;
- at the end, a masked close frame and a bounded wait for the server to finish the close.

Anything unexpected (a refused upgrade, a masked server frame, a broken fragment sequence) ends
that socket with an error that names it; the bench counts it like any other lost socket.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from urllib.parse import urlsplit

from gochat_py.bench.framing import (
    WS_CLOSE,
    WS_MAX_HANDSHAKE,
    WS_PING,
    WS_PONG,
    WS_TEXT,
    FrameError,
    HandshakeError,
    WsSplitter,
    check_ws_handshake_response,
    parse_ws_close,
    ws_client_frame,
    ws_client_key,
    ws_close_payload,
    ws_handshake_request,
)

# Codes RFC 6455 §7.4.1 reserves for reporting: never sent in a close frame.
_NOT_ON_THE_WIRE = frozenset((1005, 1006, 1015))


class LeanWsClient(asyncio.Protocol):
    """One client websocket.  ``on_frames(index, payloads)`` gets the text and binary payloads of
    each received chunk in one (never empty) list, up to a close frame; ``on_lost(index,
    reason)`` is called once when an opened socket ends, whoever ended it (the bench ignores it
    while it is closing its sockets itself), exactly like ``TcpClient``."""

    def __init__(
        self,
        index: int,
        on_frames: Callable[[int, list[bytes]], None],
        on_lost: Callable[[int, str], None],
        host: str,
        path: str,
        key: str | None = None,
    ) -> None:
        self.index = index
        self.on_frames = on_frames
        self.on_lost = on_lost
        self.key = key or ws_client_key()
        self.request = ws_handshake_request(host, path, self.key)
        self.splitter = WsSplitter()
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.close_received: tuple[int, str] | None = None
        self._head = bytearray()
        self._open = False
        self._close_sent = False
        self._failure = ""

    # ------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self._open:
            self._handshake(data)
            return
        try:
            payloads, others = self.splitter.feed_batch(data)
        except FrameError as exc:
            self._fail(f"bad frame: {exc}")
            return
        if not others:  # the usual chunk: text frames only
            if payloads:
                self.on_frames(self.index, payloads)
            return
        # Binary payloads are already among the text ones, and a pong needs nothing (this client
        # never pings).  A close frame ends the stream: what follows it is not counted.  The
        # payloads are counted before any ping is answered, so the pong's write is not in their
        # latency.
        close: bytes | None = None
        pings: list[bytes] = []
        for place, opcode, payload in others:
            if opcode == WS_PING:
                pings.append(payload)
            elif opcode == WS_CLOSE:
                close = payload
                payloads = payloads[:place]
                break
        if payloads:
            self.on_frames(self.index, payloads)
        for ping in pings:
            if not self._close_sent and self.transport is not None:
                self.transport.write(ws_client_frame(ping, WS_PONG))
        if close is not None:
            self._on_close(close)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self._failure or f"closed during the handshake: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)
        if not self._open:
            return  # never opened: the opener reports it as a failed open, not as a lost socket
        if self._failure:
            reason = self._failure
        elif self.close_received is not None:
            reason = f"closed {self.close_received[0]} {self.close_received[1]}"
        elif exc is not None:
            reason = f"connection lost: {exc}"
        else:
            reason = "closed 1006 "  # TCP closed without a close frame, as the library client reports it
        self.on_lost(self.index, reason)

    # ------------------------------------------------------------ use

    def send_text(self, payload: bytes) -> None:
        """One masked text frame (the join)."""
        if self.transport is None or self._close_sent:
            raise ConnectionError("the websocket is not open")
        self.transport.write(ws_client_frame(payload, WS_TEXT))

    async def close(self, timeout: float = 2.0) -> None:
        """Sends a close frame (1000) and waits at most ``timeout`` for the server to answer and
        drop the connection; then the transport is closed (aborted if the server never answered)."""
        transport = self.transport
        if transport is None or self.closed.done():
            return
        if self._open and not self._close_sent and not transport.is_closing():
            self._close_sent = True
            transport.write(ws_client_frame(ws_close_payload(1000), WS_CLOSE))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), timeout)
        if not self.closed.done():
            transport.abort()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.closed), 0.5)

    # ------------------------------------------------------------ internals

    def _handshake(self, data: bytes) -> None:
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > WS_MAX_HANDSHAKE:
                self._fail_open(HandshakeError(f"no end of the response head in {WS_MAX_HANDSHAKE} bytes"))
            return
        head, rest = bytes(self._head[:end]), bytes(self._head[end + 4 :])
        self._head = bytearray()
        try:
            check_ws_handshake_response(head, self.key)
        except HandshakeError as exc:
            self._fail_open(exc)
            return
        self._open = True
        if not self.opened.done():
            self.opened.set_result(None)
        if rest:  # frames sent right behind the 101 came in the same chunk
            self.data_received(rest)

    def _fail_open(self, exc: Exception) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def _fail(self, reason: str) -> None:
        self._failure = reason
        if self.transport is not None:
            self.transport.abort()

    def _on_close(self, payload: bytes) -> None:
        try:
            code, reason = parse_ws_close(payload)
        except FrameError as exc:
            self._fail(f"bad frame: {exc}")
            return
        self.close_received = (code, reason)
        if self.transport is None:
            return
        if not self._close_sent:
            # RFC 6455 §5.5.1: answer with a close frame, echoing the code
            self._close_sent = True
            echo = None if code in _NOT_ON_THE_WIRE else code
            self.transport.write(ws_client_frame(ws_close_payload(echo), WS_CLOSE))
        self.transport.close()


def split_ws_url(url: str) -> tuple[str, int, str, str]:
    """(host, port, Host header, request path) of a ``ws://`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise ValueError(f"{url!r}: the lean client speaks ws:// only")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    return parts.hostname, parts.port or 80, host_header, path


async def connect_lean_ws(
    url: str,
    index: int,
    on_frames: Callable[[int, list[bytes]], None],
    on_lost: Callable[[int, str], None],
    *,
    local_addr: tuple[str, int] | None = None,
    timeout: float = 60.0,
) -> LeanWsClient:
    """Opens a socket to ``url`` (from ``local_addr`` when given) and completes the handshake,
    all within ``timeout``; raises on a refused or broken upgrade."""
    host, port, host_header, path = split_ws_url(url)
    loop = asyncio.get_running_loop()

    async def opening() -> LeanWsClient:
        _, protocol = await loop.create_connection(
            lambda: LeanWsClient(index, on_frames, on_lost, host_header, path), host, port, local_addr=local_addr
        )
        try:
            await protocol.opened
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
        return protocol

    return await asyncio.wait_for(opening(), timeout)
