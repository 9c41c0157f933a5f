"""Clients that vanish without closing are dropped: a TCP peer that acknowledges nothing more (TCP
keepalive and TCP_USER_TIMEOUT), a websocket client that stops answering pings.

A vanished client is a client process stopped with SIGSTOP: its kernel still answers on loopback,
but its receive window closes once its small buffer is full, so the server's data stays
unacknowledged, and it answers no websocket ping.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import uuid
from pathlib import Path

from tests.e2e.harness import PYTHON, ApiClient, Cluster, WsClient, op_is

CLUSTER_MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")
CLUSTER_ENV = {
    "GOCHAT_CONNECT__PING_INTERVAL": "1",
    "GOCHAT_CONNECT__PONG_TIMEOUT": "3",
    "GOCHAT_CONNECT__WRITE_TIMEOUT": "2",  # TCP_USER_TIMEOUT
}
DROPPED_WITHIN = 60  # seconds; the settings above make it a few

TCP_CLIENT = """
import json, socket, sys, time
from gochat_py.protocol.tcp_frame import FrameDecoder, encode_client_message
port, token, room = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a window that closes soon
sock.connect(("127.0.0.1", port))
sock.sendall(encode_client_message(6, token, room))
decoder = FrameDecoder()
while not any(p.startswith(b"{") and json.loads(p).get("op") == 5 for p in decoder.feed(sock.recv(4096))):
    pass
print("joined", sock.getsockname()[1], flush=True)
time.sleep(3600)
"""

WS_CLIENT = """
import asyncio, json, sys, websockets
async def main():
    ws = await websockets.connect(sys.argv[1])
    await ws.send(json.dumps({"authToken": sys.argv[2], "roomId": int(sys.argv[3])}))
    while json.loads(await ws.recv()).get("op") != 5:
        pass
    print("joined", flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


async def start_client(script: str, *args: str) -> tuple[asyncio.subprocess.Process, list[str]]:
    proc = await asyncio.create_subprocess_exec(PYTHON, "-c", script, *args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert line.startswith(b"joined"), line
    return proc, line.decode().split()[1:]


async def end(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.kill()  # also ends a stopped process
    await proc.wait()


def server_timer(server_port: int, client_port: int) -> int | None:
    """The kernel timer pending on the server's end of one loopback connection (/proc/net/tcp's
    ``tr``: 1 retransmit, 2 keepalive, 4 zero-window probe), or None when there is no such socket."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port and fields[3] == "01":  # ESTABLISHED
            return int(fields[5].split(":")[0], 16)
    return None


async def observer(cluster: Cluster, api: ApiClient, room: int) -> tuple[str, WsClient]:
    token = await api.register(f"watch{uuid.uuid4().hex[:8]}")
    ws = await WsClient(cluster.ws_url).join(token, room)
    await ws.next_frame(op_is(5, count=1))
    return token, ws


async def test_a_tcp_peer_that_acknowledges_nothing_more_is_dropped(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        sender, watcher = await observer(cluster, api, room)
        gone = await api.register(f"gone{uuid.uuid4().hex[:8]}")
        port = cluster.tcp_ports[0]
        proc, (client_port,) = await start_client(TCP_CLIENT, str(port), gone, str(room))
        try:
            await watcher.next_frame(op_is(5, count=2))
            # keepalive is on: an idle connection has the keepalive timer pending
            for _ in range(200):
                if server_timer(port, int(client_port)) == 2:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(
                    f"no keepalive timer on the server's socket: {server_timer(port, int(client_port))}"
                )

            proc.send_signal(signal.SIGSTOP)
            # well under the send buffer: the node's own slow-client limit is not what drops it
            for n in range(20):
                reply = await api.post(
                    "/push/pushRoom", {"authToken": sender, "msg": f"{n}:" + "x" * 3000, "roomId": room}
                )
                assert reply["code"] == 0, reply
            await watcher.next_frame(op_is(5, count=1), timeout=DROPPED_WITHIN)
            assert server_timer(port, int(client_port)) is None
        finally:
            await end(proc)
            await watcher.close()
    assert "closed a slow client" not in cluster.log_path.read_text()


async def test_a_websocket_client_that_stops_answering_pings_is_dropped(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        _, watcher = await observer(cluster, api, room)
        gone = await api.register(f"gone{uuid.uuid4().hex[:8]}")
        proc, _ = await start_client(WS_CLIENT, cluster.ws_url, gone, str(room))
        try:
            await watcher.next_frame(op_is(5, count=2))
            proc.send_signal(signal.SIGSTOP)
            await watcher.next_frame(op_is(5, count=1), timeout=DROPPED_WITHIN)
            assert watcher.ws is not None and watcher.ws.close_code is None  # the one that answers stays
        finally:
            await end(proc)
            await watcher.close()
    assert "closed a slow client" not in cluster.log_path.read_text()
