"""Mutual TLS between the layers: the whole system with ``[rpc] tls_*`` set, and connect nodes
that refuse a Deliver from anyone without a certificate of the deployment's CA."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from gochat_py.client.tcp import TcpClient
from gochat_py.rpc import connect_pb2, connect_pb2_grpc, logic_pb2, logic_pb2_grpc
from tests.e2e.certs import Authority, Issued
from tests.e2e.harness import (
    ApiClient,
    Cluster,
    Infra,
    TcpReader,
    WsClient,
    eventually,
    free_port,
    op_is,
    probe,
    registered,
)

MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")


def tls_env(issued: Issued) -> dict[str, str]:
    return {
        "GOCHAT_RPC__TLS_CA": str(issued.ca),
        "GOCHAT_RPC__TLS_CERT": str(issued.cert),
        "GOCHAT_RPC__TLS_KEY": str(issued.key),
    }


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[Authority, Authority]:
    """The deployment's CA, and another one nobody in the deployment trusts."""
    folder = tmp_path_factory.mktemp("pki")
    return Authority(folder, "gochat"), Authority(folder, "stranger")


@pytest.fixture(scope="module")
def cluster(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory, pki: tuple[Authority, Authority]
) -> Iterator[Cluster]:
    node = pki[0].issue("node")  # one certificate for every module, as on a single host
    running = Cluster(infra, tmp_path_factory.mktemp("cluster_tls"), **tls_env(node)).start(MODULES)
    yield running
    running.stop()


async def _addresses(cluster: Cluster, service: str) -> list[str]:
    prefix = f"{cluster.settings.etcd.base_path}/{service}/tcp@"
    return sorted(key[len(prefix) :] for key in await registered(cluster) if key.startswith(prefix))


def _deliver_request(room: int) -> connect_pb2.DeliverRequest:
    body = b'{"op":3,"msg":"forged"}'
    return connect_pb2.DeliverRequest(
        items=[connect_pb2.Delivery(room_id=room, msg=connect_pb2.Msg(ver=1, op=3, seq_id="1-1", body=body))]
    )


async def _deliver(channel: grpc.aio.Channel, room: int) -> connect_pb2.PushReply:
    try:
        return await connect_pb2_grpc.ConnectStub(channel).Deliver(_deliver_request(room), timeout=5)
    finally:
        await channel.close()


async def test_login_join_and_delivery_run_over_mutual_tls(cluster: Cluster) -> None:
    logic_nodes = await _addresses(cluster, "LogicRpc")
    connect_nodes = await _addresses(cluster, "ConnectRpc")
    assert len(logic_nodes) == 1 and len(connect_nodes) == 2, (logic_nodes, connect_nodes)
    assert all(a.startswith("127.0.0.1:") for a in logic_nodes + connect_nodes)  # the names in the SANs
    room, tag = random.randint(10**6, 10**9), uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api:
        await api.register(f"alice{tag}")  # api -> logic
        login = await api.post("/user/login", {"userName": f"alice{tag}", "passWord": "pw-123456"})
        assert login["code"] == 0, login
        alice = login["data"]  # a login ends the session of the registration
        bob = await api.register(f"bob{tag}")
        ws = await WsClient(cluster.ws_url).join(alice, room)  # connect_websocket -> logic
        tcp_client = await TcpClient.connect(f"127.0.0.1:{cluster.tcp_ports[0]}")
        tcp = TcpReader(tcp_client)
        await tcp_client.join(bob, room)  # connect_tcp -> logic
        await ws.next_frame(op_is(5, count=2), timeout=15)
        reply = await api.post("/push/pushRoom", {"authToken": bob, "msg": "over mTLS", "roomId": room})
        assert reply["code"] == 0, reply
        # task -> both connect nodes
        await ws.next_frame(op_is(3, msg="over mTLS"))
        await tcp.next(op_is(3, msg="over mTLS"))
        await ws.close()
        await tcp_client.close()
    assert "rpc_tls=True" in cluster.log_path.read_text()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()


async def test_a_connect_node_refuses_deliver_without_a_certificate_of_the_ca(
    cluster: Cluster, pki: tuple[Authority, Authority], tmp_path: Path
) -> None:
    ours, stranger = pki
    (address, *_) = await _addresses(cluster, "ConnectRpc")
    room = random.randint(10**6, 10**9)
    ca = ours.ca_path.read_bytes()

    # the control: a client with the deployment's certificate gets through
    member = ours.issue("member")
    good = grpc.ssl_channel_credentials(ca, member.key.read_bytes(), member.cert.read_bytes())
    assert (await _deliver(grpc.aio.secure_channel(address, good), room)).code == 0

    foreign = stranger.issue("intruder")
    refused = {
        "plaintext": grpc.aio.insecure_channel(address),
        "TLS without a client certificate": grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(ca)),
        "a certificate of another CA": grpc.aio.secure_channel(
            address, grpc.ssl_channel_credentials(ca, foreign.key.read_bytes(), foreign.cert.read_bytes())
        ),
    }
    for what, channel in refused.items():
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _deliver(channel, room)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE, (what, caught.value)

    # and logic refuses a client of another CA just the same
    (logic,) = await _addresses(cluster, "LogicRpc")
    channel = grpc.aio.secure_channel(
        logic, grpc.ssl_channel_credentials(ca, foreign.key.read_bytes(), foreign.cert.read_bytes())
    )
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await logic_pb2_grpc.LogicStub(channel).CheckAuth(logic_pb2.CheckAuthRequest(auth_token="x"), timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close()


async def test_readiness_shows_a_node_whose_certificate_logic_does_not_trust(
    cluster: Cluster, pki: tuple[Authority, Authority]
) -> None:
    for module in ("api", "connect_websocket", "connect_tcp"):  # reached logic through mutual TLS
        status, body = probe(cluster, module, "/readyz")
        assert status == 200 and body["checks"]["logic"].startswith("reachable at 127.0.0.1:"), body
    # a node given another CA's certificate starts, but cannot reach logic: not ready, and says so
    stranger = pki[1].issue("misissued")
    node = cluster.start_module(
        "connect_websocket",
        name="connect_websocket_stranger",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{free_port()}",
        GOCHAT_CONNECT_WEBSOCKET__SERVER_ID=f"ws-stranger-{uuid.uuid4().hex[:6]}",
        **tls_env(stranger),
    )
    try:
        await eventually(
            lambda: probe(cluster, "connect_websocket_stranger", "/readyz")[0] == 503, 20, "stranger not ready"
        )
        status, body = probe(cluster, "connect_websocket_stranger", "/readyz")
        assert body["failed"] == ["logic"], body
        assert "no LogicRpc node reachable" in body["checks"]["logic"], body
        assert "handshake failed" in body["checks"]["logic"], body  # gRPC's reason, passed on
    finally:
        node.stop()


def _start(env: dict[str, str], module: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gochat_py", "--module", module],
        env={**os.environ, "GOCHAT_LOGIC__RPC_BIND": "127.0.0.1:0", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_half_a_tls_configuration_refuses_start_up_saying_what_is_missing(
    pki: tuple[Authority, Authority], tmp_path: Path
) -> None:
    node, other = pki[0].issue("half"), pki[1].issue("other")
    full = tls_env(node)
    missing = tmp_path / "nowhere.pem"
    # (settings, module, exit status, what the message says); started side by side
    cases = [
        ({**full, "GOCHAT_RPC__TLS_KEY": ""}, "logic", 2, "tls_cert is set but tls_key is not"),
        ({**full, "GOCHAT_RPC__TLS_CA": ""}, "task", 2, "mutual TLS needs all three; tls_ca not set"),
        ({**full, "GOCHAT_RPC__TLS_KEY": str(missing)}, "connect_websocket", 1, f"tls_key {missing}: cannot read it"),
        ({**full, "GOCHAT_RPC__TLS_KEY": str(other.key)}, "api", 1, "not a certificate and its key"),
    ]
    started = [(_start(env, module), status, message) for env, module, status, message in cases]
    for process, status, message in started:
        output, _ = process.communicate(timeout=60)
        assert process.returncode == status, output
        assert message in output, output
