"""etcd and Redis over TLS with client certificates: a real etcd started with ``--client-cert-auth``
and a real Redis with only a ``tls-port``, on loopback, and the whole system working through them.

This module runs on its own etcd and Redis (TLS only), so it disturbs no other test.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import aetcd
import pytest
import redis
import redis.exceptions

from gochat_py.config import EtcdSettings, RedisSettings, split_host_port
from gochat_py.discovery import make_etcd_client
from gochat_py.launcher import ManagedProcess, port_open
from gochat_py.storage.redis import make_redis
from tests.e2e.certs import Authority, Issued
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, op_is, registered

MODULES = ("logic", "connect_websocket", "task", "api")


class TlsInfra(Infra):
    """Redis listening on a TLS port only, etcd serving clients over https with client-cert auth;
    both ask for a certificate signed by ``server.ca``."""

    def __init__(self, root: Path, server: Issued) -> None:
        self.server = server
        super().__init__(root, root / "infra.log")

    def redis_process(self) -> ManagedProcess:
        host, port = split_host_port(self.redis_address)
        data = self.root / "redis"
        data.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server",
            "--port", "0", "--tls-port", str(port), "--bind", host, "--dir", str(data),
            "--tls-cert-file", str(self.server.cert), "--tls-key-file", str(self.server.key),
            "--tls-ca-cert-file", str(self.server.ca), "--tls-auth-clients", "yes",
            "--appendonly", "yes", "--save", "", "--daemonize", "no", "--loglevel", "warning",
        ]  # fmt: skip
        return ManagedProcess("redis-tls", argv, probe=lambda: port_open(self.redis_address), sink=self.log)

    def etcd_process(self) -> ManagedProcess:
        host, port = split_host_port(self.etcd_address)
        data = self.root / "etcd"
        data.mkdir(parents=True, exist_ok=True)
        client, peer = f"https://{host}:{port}", f"http://{host}:{port + 1}"
        argv = [
            shutil.which("etcd") or "/usr/bin/etcd", "--name", "gochat-tls", "--data-dir", str(data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"gochat-tls={peer}",
            "--cert-file", str(self.server.cert), "--key-file", str(self.server.key),
            "--client-cert-auth", "--trusted-ca-file", str(self.server.ca),
            "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip
        return ManagedProcess("etcd-tls", argv, probe=lambda: port_open(self.etcd_address), sink=self.log)

    def redis_client(self, db: int) -> redis.Redis:
        host, port = split_host_port(self.redis_address)
        return redis.Redis(
            host=host,
            port=port,
            db=db,
            ssl=True,
            ssl_ca_certs=str(self.server.ca),
            ssl_certfile=str(self.server.cert),
            ssl_keyfile=str(self.server.key),
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki_infra"), "infra")


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory, pki: Authority) -> Iterator[TlsInfra]:
    running = TlsInfra(tmp_path_factory.mktemp("infra_tls"), pki.issue("servers"))
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client_cert(pki: Authority) -> Issued:
    return pki.issue("modules")


@pytest.fixture(scope="module")
def cluster(infra: TlsInfra, tmp_path_factory: pytest.TempPathFactory, client_cert: Issued) -> Iterator[Cluster]:
    env = {
        f"GOCHAT_{section}__{key}": str(value)
        for section in ("ETCD", "REDIS")
        for key, value in (("TLS_CA", client_cert.ca), ("TLS_CERT", client_cert.cert), ("TLS_KEY", client_cert.key))
    }
    running = Cluster(infra, tmp_path_factory.mktemp("cluster_infra_tls"), **env).start(MODULES)
    yield running
    running.stop()


async def test_the_system_runs_on_etcd_and_redis_over_tls_with_client_certificates(cluster: Cluster) -> None:
    keys = await registered(cluster)  # read through etcd over TLS, with the cluster's certificate
    assert len(keys) == 2, keys
    room, tag = random.randint(10**6, 10**9), uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api:
        alice, bob = await api.register(f"alice{tag}"), await api.register(f"bob{tag}")  # sessions in Redis
        ws = await WsClient(cluster.ws_url).join(alice, room)
        # A join has no reply, and a room message reaches only the sockets already in the room when
        # it is delivered: wait for the member list of the room (op 5, sent through logic, the queue
        # in Redis, task and connect once the join is recorded) before pushing.
        await ws.next_frame(op_is(5, roomId=room), timeout=60)
        reply = await api.post("/push/pushRoom", {"authToken": bob, "msg": "over TLS", "roomId": room})
        assert reply["code"] == 0, reply
        await ws.next_frame(op_is(3, msg="over TLS"), timeout=60)  # through the queue in Redis, task, connect
        await ws.close()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()


async def test_etcd_refuses_clients_without_tls_or_without_a_certificate(
    infra: TlsInfra, client_cert: Issued, cluster: Cluster
) -> None:
    base = cluster.settings.etcd.base_path.encode()
    host, port = split_host_port(infra.etcd_address)
    async with aetcd.Client(host=host, port=port, timeout=3) as plaintext:
        with pytest.raises(aetcd.exceptions.ClientError):
            await plaintext.get_prefix(base)
    no_cert = make_etcd_client(EtcdSettings(endpoint=infra.etcd_address, timeout=3, tls_ca=str(client_cert.ca)))
    try:
        with pytest.raises(aetcd.exceptions.ClientError):
            await no_cert.get_prefix(base)
    finally:
        await no_cert.close()
    with_cert = make_etcd_client(
        EtcdSettings(
            endpoint=infra.etcd_address,
            timeout=3,
            tls_ca=str(client_cert.ca),
            tls_cert=str(client_cert.cert),
            tls_key=str(client_cert.key),
        )
    )
    try:
        assert len(list(await with_cert.get_prefix(base))) == 2
    finally:
        await with_cert.close()


async def test_redis_refuses_clients_without_tls_or_without_a_certificate(infra: TlsInfra, client_cert: Issued) -> None:
    plaintext = make_redis(RedisSettings(address=infra.redis_address, timeout=2))
    no_cert = make_redis(RedisSettings(address=infra.redis_address, timeout=2, tls_ca=str(client_cert.ca)))
    with_cert = make_redis(
        RedisSettings(
            address=infra.redis_address,
            timeout=2,
            tls_ca=str(client_cert.ca),
            tls_cert=str(client_cert.cert),
            tls_key=str(client_cert.key),
        )
    )
    try:
        for refused in (plaintext, no_cert):
            with pytest.raises(redis.exceptions.RedisError):
                await refused.ping()
        assert await with_cert.ping() is True
    finally:
        for client in (plaintext, no_cert, with_cert):
            await client.aclose()
