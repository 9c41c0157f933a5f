"""TCP clients with the original's framing, side by side with websocket users."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import time
import uuid

import pytest

from gochat_py.client.tcp import TcpClient
from gochat_py.protocol.tcp_frame import encode_client_message, encode_frame
from tests.e2e.harness import ApiClient, Cluster, TcpReader, WsClient, op_is

CLUSTER_ENV = {"GOCHAT_CONNECT__AUTH_TIMEOUT": "2", "GOCHAT_CONNECT__PING_INTERVAL": "1"}


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def tcp_address(cluster: Cluster, index: int = 0) -> str:
    return f"127.0.0.1:{cluster.tcp_ports[index]}"


async def test_websocket_and_tcp_users_talk_in_one_room(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        ws_name, tcp_name = unique("web"), unique("tcp")
        ws_token, tcp_token = await api.register(ws_name), await api.register(tcp_name)
        ws_id, tcp_id = await api.user_id(ws_token), await api.user_id(tcp_token)
        ws = await WsClient(cluster.ws_url).join(ws_token, room)
        client = await TcpClient.connect(tcp_address(cluster, 1))  # the second listener works too
        tcp = TcpReader(client)
        await client.join(tcp_token, room)
        try:
            both = {str(ws_id): ws_name, str(tcp_id): tcp_name}
            await ws.next_frame(op_is(5, roomUserInfo=both))
            await tcp.next(op_is(5, roomUserInfo=both))

            await client.send_room("from tcp")
            frame = await ws.next_frame(op_is(3, msg="from tcp"))
            body = json.loads(frame)
            assert (body["fromUserId"], body["fromUserName"], body["roomId"]) == (tcp_id, tcp_name, room)
            assert json.loads(await tcp.next(op_is(3, msg="from tcp"))) == body  # same bytes both ways

            await api.post("/push/pushRoom", {"authToken": ws_token, "msg": "from web", "roomId": room})
            ws_frame = await ws.next_frame(op_is(3, msg="from web"))
            assert await tcp.next(op_is(3, msg="from web")) == ws_frame

            reply = await api.post(
                "/push/push", {"authToken": ws_token, "msg": "private to tcp", "toUserId": str(tcp_id), "roomId": room}
            )
            assert reply["code"] == 0
            private = await tcp.next(op_is(2))
            assert (
                private
                == (
                    f'{{"code":0,"msg":"private to tcp","fromUserId":{ws_id},"fromUserName":"{ws_name}",'
                    f'"toUserId":{tcp_id},"toUserName":"{tcp_name}","roomId":{room},"op":2,"createTime":""}}'
                ).encode()
            )

            await api.post("/push/count", {"authToken": ws_token, "roomId": room})
            assert await tcp.next(op_is(4)) == b'{"count":2,"op":4}'
        finally:
            await client.close()
            await ws.close()


async def test_the_sender_is_the_owner_of_the_token_not_what_the_frame_claims(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        victim_name, mallory_name = unique("victim"), unique("mallory")
        victim_token, mallory_token = await api.register(victim_name), await api.register(mallory_name)
        victim_id, mallory_id = await api.user_id(victim_token), await api.user_id(mallory_token)
        ws = await WsClient(cluster.ws_url).join(victim_token, room)
        client = await TcpClient.connect(tcp_address(cluster))
        try:
            await ws.next_frame(op_is(5))
            spoofed = {
                "code": 0,
                "msg": "i am the victim",
                "fromUserId": victim_id,
                "fromUserName": victim_name,
                "toUserId": 0,
                "toUserName": "",
                "roomId": room,
                "op": 3,
                "createTime": "",
                "authToken": mallory_token,
            }
            # op 3 with no join first, as the original's clients may do
            await client.send_raw(encode_frame(json.dumps(spoofed).encode()))
            body = json.loads(await ws.next_frame(op_is(3, msg="i am the victim")))
            assert (body["fromUserId"], body["fromUserName"]) == (mallory_id, mallory_name)

            tcp = TcpReader(client)
            await client.send_raw(encode_client_message(3, "no-such-token", room, "who am i"))
            await tcp.closed()  # an unknown token ends the connection
        finally:
            await client.close()
            await ws.close()


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("bad version", b'v2\x00\x0c{"op": 6}  '),
        ("not a v", b"GET / HTTP/1.1\r\n\r\n"),
        ("short length", b"v1\x00\x02"),
        ("negative length", b"v1\xff\xf0"),
        ("huge length", b"v1\x7f\xff" + b"x" * 100),
        ("not json", encode_frame(b"hello there")),
        ("json but not an object", encode_frame(b"[1, 2, 3]")),
        ("no token", encode_frame(b'{"op": 6, "roomId": 1}')),
        ("room zero", encode_frame(b'{"op": 6, "roomId": 0, "authToken": "x"}')),
        ("unknown token", encode_client_message(6, "unknown-token", 1)),
    ],
)
async def test_malformed_input_closes_only_that_connection(cluster: Cluster, name: str, data: bytes) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("good"))
        good = await TcpClient.connect(tcp_address(cluster))
        good_reader = TcpReader(good)
        await good.join(token, room)
        await good_reader.next(op_is(5))

        bad = await TcpClient.connect(tcp_address(cluster))
        bad_reader = TcpReader(bad)
        await bad.send_raw(data)
        await bad_reader.closed()

        await api.post("/push/pushRoom", {"authToken": token, "msg": f"after {name}", "roomId": room})
        await good_reader.next(op_is(3, msg=f"after {name}"))
        await good.close()
    assert all(p.running() for p in cluster.system.modules)


async def test_a_connection_that_never_authenticates_is_closed(cluster: Cluster) -> None:
    client = await TcpClient.connect(tcp_address(cluster))
    reader = TcpReader(client)
    started = time.monotonic()
    await reader.closed(timeout=15)
    assert 1.5 < time.monotonic() - started < 12
    await cluster.logged("authentication timeout")


async def test_frames_split_and_joined_arbitrarily_still_work(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("chunky"))
        ws = await WsClient(cluster.ws_url).join(token, room)
        client = await TcpClient.connect(tcp_address(cluster))
        stream = encode_client_message(6, token, room) + b"".join(
            encode_client_message(3, token, room, f"piece {n}") for n in range(5)
        )
        for offset in range(0, len(stream), 7):  # 7-byte pieces: every frame boundary falls mid-piece
            await client.send_raw(stream[offset : offset + 7])
            await asyncio.sleep(0.001)
        for n in range(5):
            await ws.next_frame(op_is(3, msg=f"piece {n}"))
        await client.close()
        await ws.close()


async def test_the_command_line_client_joins_prints_and_sends(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        name = unique("cli")
        token = await api.register(name, "cli-password")
        ws = await WsClient(cluster.ws_url).join(await api.register(unique("listener")), room)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gochat_py", "client", "tcp",
            "--address", tcp_address(cluster), "--room", str(room),
            "--user", name, "--password", "cli-password", "--api", cluster.api_url,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        assert proc.stdin and proc.stdout
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert b"joined room" in line
            await ws.next_frame(op_is(5, count=2))
            proc.stdin.write(b"typed on stdin\n")
            await proc.stdin.drain()
            body = json.loads(await ws.next_frame(op_is(3, msg="typed on stdin")))
            assert body["fromUserName"] == name
            printed = await asyncio.wait_for(proc.stdout.readline(), 10)
            while b"typed on stdin" not in printed:
                printed = await asyncio.wait_for(proc.stdout.readline(), 10)
            assert json.loads(printed)["op"] == 3
            proc.stdin.close()
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            await ws.close()
        assert token


async def test_logout_closes_the_users_websocket_and_tcp_connections(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token, other_token = await api.register(unique("leaver")), await api.register(unique("stayer"))
        ws = await WsClient(cluster.ws_url).join(token, room)
        other = await WsClient(cluster.ws_url).join(other_token, room)
        client = await TcpClient.connect(tcp_address(cluster))
        tcp = TcpReader(client)
        await client.join(token, room)
        try:
            await tcp.next(op_is(5, count=2))
            assert await api.post("/user/logout", {"authToken": token}) == {
                "code": 0,
                "data": None,
                "message": "logout ok!",
            }
            await tcp.closed()
            assert ws.ws is not None
            await asyncio.wait_for(ws.ws.wait_closed(), 10)
            assert ws.ws.close_code == 1008 and ws.ws.close_reason == "logged out"
            # the other user stays, and sees the leaver gone
            await other.next_frame(op_is(5, count=1))
            assert other.ws is not None and other.ws.close_code is None
        finally:
            await client.close()
            await ws.close()
            await other.close()


async def test_a_message_over_the_length_limit_closes_the_connection(cluster: Cluster) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("long"))
        client = await TcpClient.connect(tcp_address(cluster))
        reader = TcpReader(client)
        await client.join(token, room)
        await reader.next(op_is(5))
        await client.send_room("x" * 4097)  # [api] max_message_length is 4096
        await reader.closed()
        await client.close()
    await cluster.logged("msg is too long: 4097 characters")


async def test_the_server_pings_with_the_originals_frame(cluster: Cluster) -> None:
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(unique("pinged"))
    client = await TcpClient.connect(tcp_address(cluster))
    try:
        await client.join(token, random.randint(10**6, 10**9))
        raw = b""
        async with asyncio.timeout(10):
            while bytes.fromhex("7631000c70696e67206d7367") not in raw:
                raw += await client.reader.read(4096)
    finally:
        await client.close()


async def test_a_private_message_reaches_the_user_on_every_node(cluster: Cluster) -> None:
    """One user on a websocket node and a TCP node at once (desktop and phone): both get it."""
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token, sender = await api.register(unique("twice")), await api.register(unique("sender"))
        user_id = await api.user_id(token)
        ws = await WsClient(cluster.ws_url).join(token, room)
        client = await TcpClient.connect(tcp_address(cluster))
        tcp = TcpReader(client)
        await client.join(token, room)
        try:
            await ws.next_frame(op_is(5))
            await tcp.next(op_is(5))
            body = {"authToken": sender, "msg": "to both", "toUserId": str(user_id), "roomId": room}
            assert (await api.post("/push/push", body))["code"] == 0
            await ws.next_frame(op_is(2, msg="to both"))
            await tcp.next(op_is(2, msg="to both"))
        finally:
            await client.close()
            await ws.close()
