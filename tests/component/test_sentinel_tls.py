"""A Sentinel-managed primary over TLS: the Sentinel is asked over TLS, the primary it names is
reached over TLS with the client certificate, and after the primary dies the promoted replica is
too.  Real redis-server processes with only a ``tls-port``, on loopback."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gochat_py.config import QueueSettings, RedisSettings
from gochat_py.launcher import ManagedProcess, port_open
from gochat_py.protocol.queue_message import QueueMessage
from gochat_py.queue import MessageQueue, ReplicaWait
from gochat_py.storage.redis import SentinelRedis, make_redis
from tests.e2e.certs import Authority, Issued
from tests.e2e.harness import eventually, free_port

MASTER = "gochat_tls"


class TlsSentinelSet:
    """A primary, a replica and one Sentinel (quorum 1), all speaking TLS only."""

    def __init__(self, root: Path, server: Issued) -> None:
        self.root, self.server = root, server
        self.log = (root / "redis.log").open("a", buffering=1)
        self.primary, self.replica, self.sentinel = (f"127.0.0.1:{free_port()}" for _ in range(3))
        self.processes: dict[str, ManagedProcess] = {}

    def _tls(self) -> list[str]:
        s = self.server
        return ["--tls-cert-file", str(s.cert), "--tls-key-file", str(s.key), "--tls-ca-cert-file", str(s.ca)]

    def start_server(self, address: str, replica_of: str = "") -> None:
        port = address.rpartition(":")[2]
        folder = self.root / port
        folder.mkdir(exist_ok=True)
        argv = [shutil.which("redis-server") or "/usr/bin/redis-server", "--port", "0", "--tls-port", port]
        argv += ["--bind", "127.0.0.1", "--dir", str(folder), "--save", "", "--tls-replication", "yes"]
        argv += ["--repl-diskless-sync-delay", "0", *self._tls()]
        if replica_of:
            argv += ["--replicaof", *replica_of.split(":")]
        process = ManagedProcess(f"redis_{port}", argv, probe=lambda: port_open(address), sink=self.log)
        self.processes[address] = process.start()
        process.wait_ready(30)

    def start(self) -> TlsSentinelSet:
        self.start_server(self.primary)
        self.start_server(self.replica, replica_of=self.primary)
        host, port = self.sentinel.split(":")
        folder = self.root / "sentinel"
        folder.mkdir()
        s = self.server
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port 0\ntls-port {port}\nbind {host}\ndir {folder}\ntls-replication yes\n"
            f"tls-cert-file {s.cert}\ntls-key-file {s.key}\ntls-ca-cert-file {s.ca}\n"
            f"sentinel monitor {MASTER} {self.primary.replace(':', ' ')} 1\n"
            f"sentinel down-after-milliseconds {MASTER} 500\nsentinel failover-timeout {MASTER} 2000\n"
        )
        argv = [shutil.which("redis-server") or "/usr/bin/redis-server", str(conf), "--sentinel"]
        sentinel = ManagedProcess("sentinel", argv, probe=lambda: port_open(self.sentinel), sink=self.log)
        self.processes[self.sentinel] = sentinel.start()
        sentinel.wait_ready(30)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes.values()):
            process.stop()
        self.log.close()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki_sentinel"), "sentinel")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, pki: Authority) -> Iterator[TlsSentinelSet]:
    running = TlsSentinelSet(tmp_path_factory.mktemp("sentinel_tls"), pki.issue("servers")).start()
    yield running
    running.stop()


async def test_the_primary_and_the_promoted_replica_are_reached_over_tls(
    servers: TlsSentinelSet, pki: Authority
) -> None:
    client = pki.issue("modules")
    settings = RedisSettings(
        sentinels=[servers.sentinel],
        master_name=MASTER,
        timeout=2,
        tls_ca=str(client.ca),
        tls_cert=str(client.cert),
        tls_key=str(client.key),
    )
    redis = make_redis(settings)
    assert isinstance(redis, SentinelRedis)
    try:
        queue = MessageQueue(redis, QueueSettings(stream="tls_s", group="g"), replica_wait=ReplicaWait(1, 1000))
        await queue.ensure_group()

        async def durable_enqueue_works() -> bool:
            try:
                return (await queue.enqueue_many([QueueMessage(op=3, room_id=1, msg=b"m")], durable=True)) is not None
            except Exception:
                return False  # the replica still syncing, or the failover under way

        await eventually(durable_enqueue_works, 30, "a push held by the replica, over TLS")
        kept = await redis.xlen("tls_s")
        assert redis.connection_pool.master_address == tuple(
            [servers.primary.split(":")[0], int(servers.primary.split(":")[1])]
        )
        servers.processes[servers.primary].kill()
        killed = time.monotonic()

        async def on_the_promoted_replica() -> bool:
            try:
                return await redis.xlen("tls_s") >= kept and await redis.set("after", "1")
            except Exception:
                return False

        await eventually(on_the_promoted_replica, 30, "writes on the promoted replica")
        promoted = redis.connection_pool.master_address
        assert promoted is not None and f"{promoted[0]}:{promoted[1]}" == servers.replica, promoted
        assert await redis.xlen("tls_s") == kept  # what the replica acknowledged survived the kill
        print(f"\nTLS sentinel failover: writes again {time.monotonic() - killed:.2f} s after the kill")
    finally:
        await redis.aclose()
