"""rpc.credentials against a real gRPC server on loopback: which name a client checks in the
server's certificate (the registered host, or ``[rpc] tls_server_name``)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from gochat_py.config import RpcSettings
from gochat_py.rpc import connect_pb2, connect_pb2_grpc
from gochat_py.rpc.client import CHANNEL_OPTIONS, SERVER_OPTIONS
from gochat_py.rpc.credentials import RpcTls, add_port, load_rpc_tls, open_channel
from tests.e2e.certs import Authority, Issued


class Answering(connect_pb2_grpc.ConnectServicer):
    async def Deliver(self, request: connect_pb2.DeliverRequest, context: object) -> connect_pb2.PushReply:
        return connect_pb2.PushReply(code=0)


def settings(issued: Issued, server_name: str = "") -> RpcSettings:
    return RpcSettings(
        tls_ca=str(issued.ca), tls_cert=str(issued.cert), tls_key=str(issued.key), tls_server_name=server_name
    )


async def serve(tls: RpcTls, bind: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(options=SERVER_OPTIONS)
    connect_pb2_grpc.add_ConnectServicer_to_server(Answering(), server)
    port = add_port(server, bind, tls)
    await server.start()
    return server, port


async def deliver(address: str, tls: RpcTls) -> int:
    channel = open_channel(address, tls, CHANNEL_OPTIONS)
    try:
        reply = await connect_pb2_grpc.ConnectStub(channel).Deliver(connect_pb2.DeliverRequest(), timeout=5)
        return reply.code
    finally:
        await channel.close()


@pytest.fixture
def authority(tmp_path: Path) -> Authority:
    return Authority(tmp_path, "deployment")


@pytest.fixture
async def named_server(authority: Authority) -> AsyncIterator[int]:
    """A server whose certificate names only ``chat-node.internal``, not the address dialled."""
    tls = load_rpc_tls(settings(authority.issue("named", ips=(), dns=("chat-node.internal",))))
    assert tls is not None
    server, port = await serve(tls)
    yield port
    await server.stop(None)


async def test_a_client_checks_the_dialled_address_against_the_server_certificate(
    authority: Authority, named_server: int
) -> None:
    client = load_rpc_tls(settings(authority.issue("client")))
    assert client is not None
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await deliver(f"127.0.0.1:{named_server}", client)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_tls_server_name_is_checked_instead_of_the_address(authority: Authority, named_server: int) -> None:
    client = load_rpc_tls(settings(authority.issue("client"), server_name="chat-node.internal"))
    assert client is not None
    assert await deliver(f"127.0.0.1:{named_server}", client) == 0
    wrong = load_rpc_tls(settings(authority.issue("client2"), server_name="other.internal"))
    assert wrong is not None
    with pytest.raises(grpc.aio.AioRpcError):
        await deliver(f"127.0.0.1:{named_server}", wrong)


async def test_an_ip_or_dns_san_matches_the_registered_address(authority: Authority) -> None:
    tls = load_rpc_tls(settings(authority.issue("node")))  # SANs 127.0.0.1, ::1, localhost
    assert tls is not None
    server, port = await serve(tls)
    try:
        assert await deliver(f"127.0.0.1:{port}", tls) == 0
        assert await deliver(f"localhost:{port}", tls) == 0
    finally:
        await server.stop(None)


async def test_an_ipv6_san_matches_a_bracketed_address(authority: Authority) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    tls = load_rpc_tls(settings(authority.issue("node6", ips=("::1",), dns=())))
    assert tls is not None
    server, port = await serve(tls, "[::1]:0")
    try:
        assert await deliver(f"[::1]:{port}", tls) == 0
    finally:
        await server.stop(None)


def test_no_tls_settings_mean_plaintext() -> None:
    assert load_rpc_tls(RpcSettings()) is None
