"""The websocket node protects itself and everyone else from idle, oversize and slow clients."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
import uuid
from pathlib import Path

import websockets

from tests.e2e.harness import ApiClient, Cluster, WsClient, op_is

CLUSTER_ENV = {
    "GOCHAT_CONNECT__AUTH_TIMEOUT": "1.5",
    "GOCHAT_CONNECT__SEND_BUFFER": "1048576",
    "GOCHAT_TASK__BATCH_SIZE": "16",
}


def _raw_join(port: int, token: str, room: int) -> socket.socket:
    """A websocket client that joins and then never reads: the slowest client there is."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    payload = json.dumps({"authToken": token, "roomId": room}).encode()
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask + masked)
    return sock


async def test_a_socket_that_never_joins_is_closed_after_the_auth_deadline(cluster: Cluster) -> None:
    started = time.monotonic()
    async with websockets.connect(cluster.ws_url) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 10)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 1008
            assert closed.rcvd.reason == "authentication timeout"
    assert 1.0 < time.monotonic() - started < 8


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole websocket frame a server sent (unmasked)."""
    frames, at = [], 0
    while at + 2 <= len(data):
        opcode, length, head = data[at] & 0x0F, data[at + 1] & 0x7F, 2
        if length == 126:
            (length,), head = struct.unpack_from("!H", data, at + 2), 4
        elif length == 127:
            (length,), head = struct.unpack_from("!Q", data, at + 2), 10
        if at + head + length > len(data):
            break  # cut off
        frames.append((opcode, data[at + head : at + head + length]))
        at += head + length
    return frames


def _backed_up(server_port: int, client_port: int) -> bool:
    """The server's end of that loopback connection has bytes the client has not taken (its
    kernel send queue is not empty): writing to it would wait."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, queues = fields[1], fields[2], fields[4]
        if int(local.split(":")[1], 16) == server_port and int(remote.split(":")[1], 16) == client_port:
            return int(queues.split(":")[0], 16) > 0
    return False


async def test_a_slow_client_is_dropped_and_never_holds_up_the_others(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    filler = "x" * 4000
    async with ApiClient(cluster.api_url) as api:
        fast_token = await api.register(f"fast{uuid.uuid4().hex[:8]}")
        slow_token = await api.register(f"slow{uuid.uuid4().hex[:8]}")
        fast = await WsClient(cluster.ws_url).join(fast_token, room)
        slow = await asyncio.to_thread(_raw_join, cluster.ws_port, slow_token, room)
        try:
            await fast.next_frame(op_is(5, count=2))
            # 1. The slow client reads nothing and its connection is backed up; the other one
            # still gets every message (well within the slow one's send queue: it stays joined).
            first = [f"a{n}:{filler}" for n in range(100)]
            await api.push_room_many(fast_token, room, first, concurrency=16)
            got = [json.loads(await fast.next_frame(op_is(3), timeout=30))["msg"] for _ in first]
            assert sorted(got) == sorted(first)
            assert _backed_up(cluster.ws_port, slow.getsockname()[1]), "the slow client is not behind: nothing tested"
            await api.post("/push/count", {"authToken": fast_token, "roomId": room})
            assert await fast.next_frame(op_is(4)) == b'{"count":2,"op":4}'  # still there

            # 2. Its send queue overflows: it is closed and told why, the other one misses nothing.
            texts = [f"{n}:{filler}" for n in range(2000)]
            await api.push_room_many(fast_token, room, texts, concurrency=16)
            got = [json.loads(await fast.next_frame(op_is(3), timeout=30))["msg"] for _ in texts]
            assert sorted(got) == sorted(texts)  # every one, once (senders run concurrently: any order)
            slow.settimeout(20)
            data = b""
            while chunk := await asyncio.to_thread(slow.recv, 65536):  # up to the end of the stream
                data += chunk
            frames = _server_frames(data)
            assert frames and frames[-1][0] == 0x8, f"no close frame at the end: {frames[-1:]!r}"
            code, reason = struct.unpack("!H", frames[-1][1][:2])[0], frames[-1][1][2:].decode()
            assert (code, reason) == (1008, "too slow: send queue full")
            # before it, whole text frames (and the pings pacing sends) only
            assert {opcode for opcode, _ in frames[:-1]} <= {0x1, 0x9}, {opcode for opcode, _ in frames}
            delivered = [payload for opcode, payload in frames[:-1] if opcode == 0x1]
            assert sum(payload.count(b'"op":3') for payload in delivered) < len(first) + len(texts)
            # and the room noticed it left
            await fast.next_frame(op_is(5, count=1), timeout=10)
        finally:
            slow.close()
            await fast.close()
    await cluster.logged("closed a slow client")
