"""A raw protocol-v2 client for the server's tests: every frame it receives is checked against the
published JSON Schema (docs/protocol-v2.schema.json) and parsed by the codec's client side.

Deliberately not the client library (gochat_py.client): these tests pin the wire itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import websockets

from gochat_py.protocol.tcp_frame import PING_PAYLOAD, FrameDecoder, encode_frame

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "protocol-v2.schema.json"
_SCHEMA = json.loads(SCHEMA_PATH.read_text())
_SERVER_MESSAGE = jsonschema.Draft202012Validator({**_SCHEMA, "$ref": "#/$defs/ServerMessage"})


def check_server_frame(data: bytes) -> dict[str, Any]:
    """The frame as JSON, after the schema has accepted it."""
    body = json.loads(data)
    errors = sorted(_SERVER_MESSAGE.iter_errors(body), key=lambda e: e.path)
    assert not errors, f"frame {data!r} breaks the schema: {errors[0].message}"
    return body


class V2Socket:
    """One v2 connection (websocket or TCP); ``seen`` holds every message, in order."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._cid = 0
        self._new = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None
        self._ws: websockets.ClientConnection | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    async def websocket(cls, url: str, hello: dict[str, Any] | str) -> V2Socket:
        socket = cls()
        socket._ws = await websockets.connect(url, open_timeout=10, max_size=2**20)
        await socket._ws.send(hello if isinstance(hello, str) else json.dumps(hello))
        socket._reader = asyncio.create_task(socket._read_ws())
        return socket

    @classmethod
    async def tcp(cls, host: str, port: int, hello: dict[str, Any]) -> V2Socket:
        socket = cls()
        reader, socket._writer = await asyncio.open_connection(host, port)
        socket._writer.write(encode_frame(json.dumps(hello).encode()))
        socket._reader = asyncio.create_task(socket._read_tcp(reader))
        return socket

    async def _got(self, data: bytes) -> None:
        body = check_server_frame(data)
        async with self._new:
            self.seen.append(body)
            self._new.notify_all()

    async def _read_ws(self) -> None:
        assert self._ws
        try:
            async for message in self._ws:
                await self._got(message.encode() if isinstance(message, str) else message)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self._ws.close_code is not None:
                self.close_code, self.close_reason = self._ws.close_code, self._ws.close_reason or ""
            self.closed.set()
            async with self._new:
                self._new.notify_all()

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        try:
            while data := await reader.read(65536):
                for payload in decoder.feed(data):
                    if payload != PING_PAYLOAD:
                        await self._got(payload)
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()
            async with self._new:
                self._new.notify_all()

    async def send_raw(self, data: str | bytes) -> None:
        if self._ws is not None:
            await self._ws.send(data)
        else:
            assert self._writer
            self._writer.write(encode_frame(data.encode() if isinstance(data, str) else data))
            await self._writer.drain()

    async def command(self, cmd: str, **fields: Any) -> int:
        """Sends a command; returns its cid."""
        self._cid += 1
        await self.send_raw(json.dumps({"cid": self._cid, "cmd": cmd, **fields}))
        return self._cid

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10) -> dict[str, Any]:
        """The first message (seen so far or later) that matches."""
        deadline = time.monotonic() + timeout
        async with self._new:
            while True:
                for body in self.seen:
                    if predicate(body):
                        return body
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.closed.is_set() and not any(predicate(b) for b in self.seen)):
                    raise AssertionError(f"no matching message within {timeout} s; last seen: {self.seen[-8:]}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new.wait(), remaining)

    async def reply(self, cid: int, timeout: float = 10) -> dict[str, Any]:
        """The reply to a command: its ``result`` or ``error`` object as the message has it."""
        return await self.wait_for(lambda b: b.get("cid") == cid and ("result" in b or "error" in b), timeout)

    async def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """A command that must succeed: its result."""
        answer = await self.reply(await self.command(cmd, **fields))
        assert "result" in answer, answer
        return answer["result"]

    async def fails(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """A command that must fail: its error."""
        answer = await self.reply(await self.command(cmd, **fields))
        assert "error" in answer, answer
        return answer["error"]

    def events(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        return [b for b in self.seen if b.get("type") == kind and all(b.get(k) == v for k, v in fields.items())]

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            await self._reader


async def welcome(socket: V2Socket) -> dict[str, Any]:
    return await socket.wait_for(lambda b: b.get("type") == "welcome")
