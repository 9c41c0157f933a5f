"""A loopback TCP relay between a client and a server, for tests that break connections on purpose.

It forwards bytes both ways on real sockets; :meth:`Relay.cut` resets every connection through it
(as a dropped network does to a client), and :meth:`Relay.mute` drops what the server sends from
then on while still passing what the client sends (a reply lost on its way back).  New connections
are accepted as usual, so a client that reconnects gets through again.
"""

from __future__ import annotations

import asyncio
import contextlib

from gochat_py.config import split_host_port


class Relay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.muted = False
        self.connections = 0  # accepted so far
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        host, port = split_host_port(self.upstream)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        both = [
            asyncio.create_task(self._pump(reader, up_writer, from_server=False)),
            asyncio.create_task(self._pump(up_reader, writer, from_server=True)),
        ]
        self._tasks.update(both)
        await asyncio.wait(both, return_when=asyncio.FIRST_COMPLETED)
        for task in both:
            task.cancel()
        for end in (writer, up_writer):
            end.transport.abort()
            self._writers.discard(end)
        self._tasks.difference_update(both)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, from_server: bool) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if from_server and self.muted:
                    continue
                writer.write(data)
                await writer.drain()

    def cut(self) -> int:
        """Resets every open connection both ways; how many there were (client and server side)."""
        ends = list(self._writers)
        for end in ends:
            end.transport.abort()
        self._writers.clear()
        return len(ends)

    def mute(self, muted: bool = True) -> None:
        self.muted = muted

    async def close(self) -> None:
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
