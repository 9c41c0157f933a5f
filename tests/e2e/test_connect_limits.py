"""The websocket node protects itself and everyone else from idle, oversize and slow clients."""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import time
import uuid

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


async def test_a_slow_client_is_dropped_and_never_holds_up_the_others(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        fast_token = await api.register(f"fast{uuid.uuid4().hex[:8]}")
        slow_token = await api.register(f"slow{uuid.uuid4().hex[:8]}")
        fast = await WsClient(cluster.ws_url).join(fast_token, room)
        slow = await asyncio.to_thread(_raw_join, cluster.ws_port, slow_token, room)
        try:
            await fast.next_frame(op_is(5, count=2))
            filler = "x" * 4000
            texts = [f"{n}:{filler}" for n in range(2000)]
            await api.push_room_many(fast_token, room, texts, concurrency=16)
            got = [json.loads(await fast.next_frame(op_is(3), timeout=30))["msg"] for _ in texts]
            assert sorted(got) == sorted(texts)  # every one, once (senders run concurrently: any order)
            # the slow one was cut off: its socket ends (after whatever the kernel had buffered)
            slow.settimeout(20)
            received = 0
            while chunk := await asyncio.to_thread(slow.recv, 65536):
                received += len(chunk)
            assert received < len(texts) * len(filler)
            # and the room noticed it left
            await fast.next_frame(op_is(5, count=1), timeout=10)
        finally:
            slow.close()
            await fast.close()
    await cluster.logged("closed a slow client")
