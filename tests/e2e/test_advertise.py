"""A logic node bound to a wildcard address, with no rpc_advertise, registers a routable address
of this host, or, on a host with nothing routable, refuses to start and names the setting.  Which
branch runs depends on this machine; tests/unit/test_advertise.py covers both without a network."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis

from gochat_py.config import EtcdSettings, split_host_port
from gochat_py.discovery import host_addresses, is_routable, make_etcd_client
from gochat_py.storage.database_identity import IDENTITY_KEY
from tests.e2e.harness import Infra, eventually


def logic_env(infra: Infra, root: Path, base_path: str) -> dict[str, str]:
    # each logic here has a new database of its own: forget the one an earlier logic recorded
    redis.Redis.from_url(f"redis://{infra.redis_address}/15").delete(IDENTITY_KEY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
    env.update(
        GOCHAT_STATE_DIR=str(root / "state"),
        GOCHAT_REDIS__ADDRESS=infra.redis_address,
        GOCHAT_REDIS__DB="15",
        GOCHAT_ETCD__ENDPOINT=infra.etcd_address,
        GOCHAT_ETCD__BASE_PATH=base_path,
        GOCHAT_ETCD__LEASE_TTL="3",
        GOCHAT_LOGIC__RPC_BIND="0.0.0.0:0",
        GOCHAT_LOGIC__PASSWORD_MEMORY_KIB="8192",
        GOCHAT_METRICS__LOGIC="127.0.0.1:0",
    )
    return env


async def registered_addresses(etcd: EtcdSettings) -> list[str]:
    client = make_etcd_client(etcd)
    try:
        items = await client.get_prefix(etcd.base_path.encode())
    except Exception:
        return []  # not answering yet
    finally:
        await client.close()
    return [item.key.decode().rpartition("tcp@")[2] for item in items]


async def test_a_wildcard_bound_logic_registers_a_routable_address_or_refuses(infra: Infra, tmp_path: Path) -> None:
    routable = [address for address in host_addresses() if is_routable(address)]
    etcd = EtcdSettings(endpoint=infra.etcd_address, base_path=f"/gochat_adv_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    log_path = tmp_path / "logic.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gochat_py", "--module", "logic"],
            env=logic_env(infra, tmp_path, etcd.base_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        if not routable:
            assert process.wait(60) == 1
            output = log_path.read_text()
            assert "cannot start" in output and "GOCHAT_LOGIC__RPC_ADVERTISE / [logic] rpc_advertise" in output
            return
        deadline = time.monotonic() + 60
        while not (addresses := await registered_addresses(etcd)):
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.2)
        [address] = addresses
        host, port = split_host_port(address)
        assert is_routable(host) and host == routable[0] and port > 0, address
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.bind((host, 0))  # an address of this host
        await eventually(lambda: f"rpc={address}" in log_path.read_text(), 10, "ready line")
    finally:
        process.terminate()
        process.wait(30)


def test_a_wildcard_rpc_advertise_exits_with_one_line_naming_the_setting(infra: Infra, tmp_path: Path) -> None:
    env = logic_env(infra, tmp_path, f"/gochat_adv_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    env["GOCHAT_LOGIC__RPC_ADVERTISE"] = "0.0.0.0:6900"
    result = subprocess.run(
        [sys.executable, "-m", "gochat_py", "--module", "logic"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    [line] = [line for line in result.stderr.splitlines() if "level=error" in line]
    assert 'msg="cannot start"' in line and "GOCHAT_LOGIC__RPC_ADVERTISE / [logic] rpc_advertise" in line
