"""TLS on the api, websocket and TCP ports, and the websocket Origin allow-list."""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import subprocess
import uuid
from pathlib import Path

import aiohttp
import pytest
import websockets

from gochat_py.client.tcp import TcpClient
from tests.e2e.harness import ApiClient, Cluster, WsClient, free_port, op_is


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def _trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


async def test_websocket_and_tcp_over_tls(cluster: Cluster, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    ws_port, tcp_port = free_port(), free_port()
    tls_env = {"GOCHAT_CONNECT_WEBSOCKET__TLS_CERT": str(cert), "GOCHAT_CONNECT_WEBSOCKET__TLS_KEY": str(key)}
    cluster.start_module(
        "connect_websocket",
        name="connect_websocket_tls",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{ws_port}",
        **tls_env,
    )
    cluster.start_module(
        "connect_tcp",
        name="connect_tcp_tls",
        GOCHAT_CONNECT_TCP__BIND=f"127.0.0.1:{tcp_port}",
        GOCHAT_CONNECT_TCP__TLS_CERT=str(cert),
        GOCHAT_CONNECT_TCP__TLS_KEY=str(key),
    )
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        token = await api.register(f"tls{uuid.uuid4().hex[:8]}")
        secure = await websockets.connect(f"wss://127.0.0.1:{ws_port}/ws", ssl=_trusting(cert))
        await secure.send(json.dumps({"authToken": token, "roomId": room}))
        tcp = await TcpClient.connect(f"127.0.0.1:{tcp_port}", _trusting(cert))
        await tcp.join(token, room)
        try:
            # a join has no reply: the member list (op 5) naming both sockets says both are in
            async with asyncio.timeout(15):
                while not op_is(5, count=1)((await secure.recv()).encode()):
                    pass
                async for payload in tcp.payloads():
                    if op_is(5, count=1)(payload):
                        break
                reply = await api.post("/push/pushRoom", {"authToken": token, "msg": "over tls", "roomId": room})
                assert reply["code"] == 0, reply
                while not op_is(3, msg="over tls")((await secure.recv()).encode()):
                    pass
                async for payload in tcp.payloads():
                    if op_is(3, msg="over tls")(payload):
                        break
        finally:
            await secure.close()
            await tcp.close()
        # a plain-text client gets nowhere on the TLS port
        with pytest.raises((websockets.InvalidMessage, websockets.InvalidHandshake, OSError, EOFError)):
            await websockets.connect(f"ws://127.0.0.1:{ws_port}/ws", open_timeout=5)


async def test_the_origin_allow_list(cluster: Cluster) -> None:
    port = free_port()
    cluster.start_module(
        "connect_websocket",
        name="connect_websocket_origins",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{port}",
        GOCHAT_CONNECT_WEBSOCKET__ALLOWED_ORIGINS="https://chat.example.com,http://localhost:8080",
    )
    url = f"ws://127.0.0.1:{port}/ws"
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, origin="https://evil.example.com")
    assert refused.value.response.status_code == 403
    for origin in ("https://chat.example.com", "http://localhost:8080", None):
        async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
            await ws.ping()
    # and the node serves the allowed ones
    async with ApiClient(cluster.api_url) as api:
        room = random.randint(10**6, 10**9)
        token = await api.register(f"origin{uuid.uuid4().hex[:8]}")
        client = await WsClient(url).join(token, room)
        await client.next_frame(op_is(5))  # joined
        reply = await api.post("/push/pushRoom", {"authToken": token, "msg": "allowed", "roomId": room})
        assert reply["code"] == 0, reply
        await client.next_frame(op_is(3, msg="allowed"))
        await client.close()


async def test_the_api_over_https(cluster: Cluster, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    port = free_port()
    cluster.start_module(
        "api",
        name="api_tls",
        GOCHAT_API__BIND=f"127.0.0.1:{port}",
        GOCHAT_API__TLS_CERT=str(cert),
        GOCHAT_API__TLS_KEY=str(key),
    )
    connector = aiohttp.TCPConnector(ssl=_trusting(cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        body = {"userName": f"https{uuid.uuid4().hex[:8]}", "passWord": "pw"}
        async with session.post(f"https://127.0.0.1:{port}/user/register", json=body) as response:
            reply = await response.json()
        assert reply["code"] == 0 and len(reply["data"]) == 44
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):  # plain HTTP to the TLS port gets no answer
            await session.post(f"http://127.0.0.1:{port}/user/login", json=body, timeout=aiohttp.ClientTimeout(10))
