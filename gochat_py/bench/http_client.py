"""A lean HTTP/1.1 client for the benchmark's pushes: keep-alive connections, one request at a
time on each, on a bare ``asyncio.Protocol``.

aiohttp's client costs the benchmark about 200 µs of CPU per request, as much as the api
spends answering it; on a two-core machine shared with the server that is CPU taken from the
system under test.  This client writes the request in one call and parses only what a JSON
envelope answer needs (status line, ``Content-Length``, body), a few microseconds.  It is not a
general HTTP client: no redirects, no chunked bodies, no cookies.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit


class HttpError(RuntimeError):
    pass


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.keep_alive = True
        self.lost = False
        self.last_used = time.monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            answer = self._answer()
        except HttpError as exc:
            self.waiter.set_exception(exc)
            self.keep_alive = False
            return
        if answer is not None:
            self.waiter.set_result(answer)

    def _answer(self) -> tuple[int, bytes] | None:
        """The status and body once the whole answer is in the buffer, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP answer: {head[0]!r}")
        length = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                self.keep_alive = False
            elif name == "transfer-encoding":
                raise HttpError("chunked answers are not supported by the bench client")
        if length is None:
            raise HttpError("answer without Content-Length")
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return int(parts[1]), body

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError(f"connection lost: {exc}" if exc else "connection closed"))

    async def request(self, data: bytes, timeout: float) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await asyncio.wait_for(self.waiter, timeout)


IDLE_REUSE = 20.0  # seconds; servers close idle keep-alive connections (aiohttp: after 75 s)


class HttpClient:
    """POSTs JSON bodies to one base URL over at most ``connections`` kept-alive connections.

    A connection idle for longer than ``IDLE_REUSE`` is closed rather than reused: the server may
    be closing it at that very moment, and a push is not retried (it might have gone through).
    """

    def __init__(self, base_url: str, connections: int, timeout: float) -> None:
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.prefix = parts.path.rstrip("/")
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":  # loopback only: a self-signed test certificate is fine
            self.ssl = ssl.create_default_context()
            self.ssl.check_hostname = False
            self.ssl.verify_mode = ssl.CERT_NONE
        self.authority = parts.netloc.encode()
        self.timeout = timeout
        self.slots = asyncio.Semaphore(connections)
        self.idle: list[_Connection] = []
        self.open: set[_Connection] = set()

    async def _connection(self) -> _Connection:
        while self.idle:
            connection = self.idle.pop()
            if not connection.lost and time.monotonic() - connection.last_used < IDLE_REUSE:
                return connection
            self._drop(connection)
        _, connection = await asyncio.wait_for(
            asyncio.get_running_loop().create_connection(_Connection, self.host, self.port, ssl=self.ssl),
            self.timeout,
        )
        self.open.add(connection)
        return connection

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        request = b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
            (self.prefix + path).encode(),
            self.authority,
            len(body),
            body,
        )
        async with self.slots:
            connection = await self._connection()
            try:
                answer = await connection.request(request, self.timeout)
            except BaseException:
                self._drop(connection)
                raise
            if connection.keep_alive and not connection.lost:
                connection.last_used = time.monotonic()
                self.idle.append(connection)
            else:
                self._drop(connection)
            return answer

    def _drop(self, connection: _Connection) -> None:
        self.open.discard(connection)
        if connection.transport is not None:
            connection.transport.close()

    async def close(self) -> None:
        for connection in list(self.open):
            self._drop(connection)
        self.idle.clear()
        await asyncio.sleep(0)  # let the transports close
