"""The floor: room fan-out with every gochat layer cut away.

One process accepts websocket connections on a loopback port (the same ``websockets`` server the
connect layer uses), waits for ``sockets`` of them to send their join, tells them the room is
complete (an op 5 frame), and on ``("go", messages)`` builds each message's frame once (an op 3
body in the server's format, stamped like the real path) and writes the same bytes straight to
every socket's transport, ``--floor-batch`` frames per write.  What the clients count is then
what Python can push through loopback websockets on this machine: the ceiling for the full path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from multiprocessing.connection import Connection

import orjson

from gochat_py.bench.children import PipeCommands, run_child
from gochat_py.bench.framing import ws_server_frame
from gochat_py.bench.stamp import make_stamp

HIGH_WATER = 256 * 1024
STALL_LIMIT = 10.0


def room_frame(run_id: str, seq: int, room_id: int) -> bytes:
    body = orjson.dumps(
        {
            "code": 0,
            "msg": make_stamp(run_id, seq, time.monotonic_ns()),
            "fromUserId": 1,
            "fromUserName": "floor",
            "toUserId": 0,
            "toUserName": "",
            "roomId": room_id,
            "op": 3,
            "createTime": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return ws_server_frame(body)


class FloorServer(PipeCommands):
    def __init__(
        self, pipe: Connection, sockets: int, room_id: int, run_id: str, max_seconds: float, batch: int = 1
    ) -> None:
        self.pipe = pipe
        self.batch = max(1, batch)
        self.expected = sockets
        self.room_id = room_id
        self.run_id = run_id
        self.max_seconds = max_seconds
        self.joined: list = []
        self.complete = asyncio.Event()
        self.stop = asyncio.Event()
        self.commands: asyncio.Queue[tuple] = asyncio.Queue()

    async def handle(self, ws) -> None:  # type: ignore[no-untyped-def]
        with contextlib.suppress(Exception):
            await ws.recv()  # the join message; its content does not matter here
            self.joined.append(ws)
            if len(self.joined) == self.expected:
                self.complete.set()
            await self.stop.wait()

    def on_command(self, command: tuple) -> None:
        self.commands.put_nowait(command)

    async def run(self) -> None:
        from websockets.asyncio.server import serve

        self.listen()
        deadline = time.monotonic() + self.max_seconds
        async with serve(self.handle, "127.0.0.1", 0, compression=None, ping_interval=None, backlog=4096) as server:
            port = server.sockets[0].getsockname()[1]
            self.pipe.send(("listening", port))
            while time.monotonic() < deadline:
                try:
                    command = await asyncio.wait_for(self.commands.get(), deadline - time.monotonic())
                except TimeoutError:
                    break
                if command[0] == "announce":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.complete.wait(), command[1])
                    info = ws_server_frame(
                        orjson.dumps({"op": 5, "roomId": self.room_id, "count": len(self.joined), "roomUserInfo": {}})
                    )
                    for ws in self.joined:
                        ws.transport.write(info)
                    self.pipe.send(("announced", len(self.joined)))
                elif command[0] == "go":
                    started = time.monotonic_ns()
                    await self.fan_out(command[1])
                    self.pipe.send(("sent", started, time.monotonic_ns()))
                elif command[0] == "stop":
                    break
            self.stop.set()

    async def fan_out(self, messages: int) -> None:
        """``batch`` frames (each encoded once) per write: 1 is one write per frame and socket."""
        transports = [ws.transport for ws in self.joined]
        batch = self.batch
        for first in range(0, messages, batch):
            chunk = b"".join(
                room_frame(self.run_id, seq, self.room_id) for seq in range(first, min(messages, first + batch))
            )
            for transport in transports:
                transport.write(chunk)
            # let the loop flush; wait while any client is far behind (bounded buffers, like the server)
            await asyncio.sleep(0)
            stalled_until = time.monotonic() + STALL_LIMIT
            while any(t.get_write_buffer_size() > HIGH_WATER for t in transports if not t.is_closing()):
                if time.monotonic() > stalled_until:
                    return  # a client stopped reading; what it missed is counted as lost
                await asyncio.sleep(0.001)


def floor_main(setup: tuple[int, int, str, float, int], pipe: Connection) -> None:
    """Entry point of the floor process: ``setup`` is (sockets, room id, run id, max seconds, batch)."""
    sockets, room_id, run_id, max_seconds, batch = setup
    run_child(FloorServer(pipe, sockets, room_id, run_id, max_seconds, batch).run, pipe)
