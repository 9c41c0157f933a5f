"""A TCP client: joins a room, prints what arrives, sends each line typed on stdin to the room.

    gochat-py client tcp --token TOKEN --room 1
    gochat-py client tcp --user alice --password secret --room 1    # logs in through the api first

:class:`TcpClient` is also what the tests use to speak TCP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import ssl
import sys
import urllib.request
from collections.abc import AsyncIterator

from gochat_py.config import split_host_port
from gochat_py.protocol.frames import OP_BUILD_TCP_CONN, OP_ROOM_SEND
from gochat_py.protocol.tcp_frame import PING_PAYLOAD, FrameDecoder, encode_client_message


class TcpClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.token = ""
        self.room_id = 0

    @classmethod
    async def connect(cls, address: str, tls: ssl.SSLContext | None = None) -> TcpClient:
        host, port = split_host_port(address)
        reader, writer = await asyncio.open_connection(host, port, ssl=tls)
        return cls(reader, writer)

    async def join(self, token: str, room_id: int) -> None:
        self.token, self.room_id = token, room_id
        self.writer.write(encode_client_message(OP_BUILD_TCP_CONN, token, room_id, "build tcp conn"))
        await self.writer.drain()

    async def send_room(self, msg: str, room_id: int | None = None) -> None:
        self.writer.write(encode_client_message(OP_ROOM_SEND, self.token, room_id or self.room_id, msg))
        await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def payloads(self, with_pings: bool = False) -> AsyncIterator[bytes]:
        """Frame payloads until the server closes the connection."""
        while data := await self.reader.read(65536):
            for payload in self.decoder.feed(data):
                if with_pings or payload != PING_PAYLOAD:
                    yield payload

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def _login(api: str, user: str, password: str) -> str:
    body = json.dumps({"userName": user, "passWord": password}).encode()
    request = urllib.request.Request(f"{api}/user/login", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        reply = json.loads(response.read())
    if reply["code"] != 0:
        raise SystemExit(f"login failed: {reply['message']}")
    return reply["data"]


async def _run(args: argparse.Namespace) -> int:
    token = args.token or _login(args.api, args.user, args.password)
    tls = None
    if args.tls or args.ca:
        tls = ssl.create_default_context(cafile=args.ca or None)
    client = await TcpClient.connect(args.address, tls)
    await client.join(token, args.room)
    print(f"joined room {args.room} at {args.address}; type a line and Enter to send, Ctrl-D to quit", flush=True)

    async def show() -> None:
        async for payload in client.payloads():
            print(payload.decode(errors="replace"), flush=True)
        print("connection closed by the server", file=sys.stderr, flush=True)

    async def type_lines() -> None:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if line.strip():
                await client.send_room(line.rstrip("\n"))

    reading = asyncio.create_task(show())
    typing = asyncio.create_task(type_lines())
    done, _ = await asyncio.wait({reading, typing}, return_when=asyncio.FIRST_COMPLETED)
    for task in (reading, typing):
        task.cancel()
    await client.close()
    return 0 if typing in done else 1


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("tcp", help="chat over the raw TCP protocol from a terminal")
    parser.add_argument("--address", default="127.0.0.1:7001", help="connect_tcp address (default %(default)s)")
    parser.add_argument("--room", type=int, default=1, help="room id to join (default %(default)s)")
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--token", help="auth token from /user/login")
    who.add_argument("--user", help="log in through the api with this user name")
    parser.add_argument("--password", default="", help="password for --user")
    parser.add_argument("--api", default="http://127.0.0.1:7070", help="api base URL for --user")
    parser.add_argument("--tls", action="store_true", help="connect with TLS (the node has tls_cert set)")
    parser.add_argument("--ca", default="", help="CA or self-signed certificate to trust (implies --tls)")


def main(args: argparse.Namespace) -> int:
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(args))
    return 130
