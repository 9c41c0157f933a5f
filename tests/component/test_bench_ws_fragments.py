"""The bench's lean websocket client against another implementation's server that fragments.

The server is the ``websockets`` library's, on loopback: it sends messages as text frames with FIN
clear and continuation frames (as servers do for messages larger than their write buffer), a
ping between two fragments, and a large message in many fragments.  The lean client must hand on
each message once, whole, answer the ping, and close cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from websockets.asyncio.server import ServerConnection, serve

from gochat_py.bench.ws_client import connect_lean_ws

BIG = "b" * 200_000


async def test_lean_client_reassembles_a_real_servers_fragments() -> None:
    joins: list[str] = []
    pongs: list[float] = []

    async def handler(ws: ServerConnection) -> None:
        joins.append(str(await ws.recv()))
        await ws.send("whole")

        async def with_a_ping_between() -> AsyncIterator[str]:
            yield '{"code":0,'
            pongs.append(await (await ws.ping(b"between")))  # waits for the client's pong
            yield '"msg":"x|1|2"}'

        await ws.send(with_a_ping_between())
        await ws.send(BIG[i : i + 4096] for i in range(0, len(BIG), 4096))
        await ws.send([b"\x00\x01", b"\x02"])  # a binary message in two fragments
        await ws.send("last")
        await ws.wait_closed()

    received: list[bytes] = []
    lost: list[str] = []
    done = asyncio.Event()

    def on_frames(index: int, payloads: list[bytes]) -> None:
        received.extend(payloads)
        if b"last" in payloads:
            done.set()

    async with serve(handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        client = await connect_lean_ws(
            f"ws://127.0.0.1:{port}/ws", 0, on_frames, lambda i, reason: lost.append(reason), timeout=10
        )
        client.send_text(b'{"authToken":"t","roomId":1}')
        await asyncio.wait_for(done.wait(), 10)
        await client.close(timeout=5)
    assert joins == ['{"authToken":"t","roomId":1}']
    assert received == [b"whole", b'{"code":0,"msg":"x|1|2"}', BIG.encode(), b"\x00\x01\x02", b"last"]
    assert len(pongs) == 1 and pongs[0] >= 0  # the ping between fragments was answered
    assert client.close_received is not None and client.close_received[0] == 1000
    assert lost == ["closed 1000 "]  # the end of the socket, reported once, and no bad frame
