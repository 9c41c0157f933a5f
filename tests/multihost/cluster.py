"""A gochat-py deployment over several test hosts (network namespaces, see :mod:`.netns`).

Layout (the one docs/deploy.md describes)::

    h1 10.231.0.11  etcd e1, logic, connect_websocket, api, task
    h2 10.231.0.12  etcd e2, logic, connect_websocket, connect_tcp, api, task
    h3 10.231.0.13  etcd e3, redis, site
    client          the test's own clients (its code runs there through Host.call)

Every module binds its host's address (nothing on 127.0.0.1) and advertises it; every module
gets all three etcd members as its endpoint.  Each websocket node registers its public URL, and
site hands the live ones to the page (``/config.json``).

TODO(database): both logic processes (and the task processes, which archive history) share one
SQLite file: the namespaces share the file system, which real hosts do not.  Once PostgreSQL is in
the project, start it on a host of its own (say h4) and give every logic and task its URL through
GOCHAT_LOGIC__DATABASE_URL; the SQLite stand-in then goes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gochat_py.config import split_host_port
from gochat_py.launcher import READY_MARKER, ManagedProcess, port_open
from tests.multihost.netns import Host, Network

ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
REDIS_PORT = 6379
PORTS = {"api": 7070, "ws": 7000, "tcp": (7001, 7002), "site": 8080}
RPC_PORTS = {"logic": 6900, "connect_websocket": 6912, "connect_tcp": 6914}
# (host, module, instance name) in start order: what each host runs
LAYOUT = (
    ("h1", "logic", "logic_1"),
    ("h2", "logic", "logic_2"),
    ("h1", "connect_websocket", "ws_1"),
    ("h2", "connect_websocket", "ws_2"),
    ("h2", "connect_tcp", "tcp_2"),
    ("h1", "task", "task_1"),
    ("h2", "task", "task_2"),
    ("h1", "api", "api_1"),
    ("h2", "api", "api_2"),
    ("h3", "site", "site_3"),
)


def etcd_healthy(address: str) -> bool:
    """The member answers and the cluster has a leader (etcd's /health says so)."""
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=2) as response:
            return json.loads(response.read()).get("health") == "true"
    except (OSError, ValueError):
        return False


class MultiHostCluster:
    def __init__(self, root: Path, network: Network, database_url: str = "") -> None:
        """``database_url``: the one database of every logic and task; empty: the SQLite stand-in."""
        self.root = root
        self.network = network
        self.log_path = root / "cluster.log"
        self.log = self.log_path.open("a", buffering=1)
        self.processes: list[ManagedProcess] = []
        self.where: dict[str, Host] = {}  # process name -> its host
        hosts = [network.add_host(name) for name in ("h1", "h2", "h3")]
        self.client = network.add_host("client")
        self.hosts = {h.name: h for h in hosts}
        self.etcd_hosts = hosts
        self.redis_host = self.hosts["h3"]
        self.etcd_endpoint = ",".join(f"{h.address}:{ETCD_CLIENT_PORT}" for h in self.etcd_hosts)
        self.database = root / "shared" / "gochat.sqlite3"  # TODO(database): PostgreSQL, see above
        self.database.parent.mkdir(parents=True)
        self.env = {
            "GOCHAT_ENV": "dev",
            "PYTHONUNBUFFERED": "1",
            "GOCHAT_REDIS__ADDRESS": f"{self.redis_host.address}:{REDIS_PORT}",
            "GOCHAT_ETCD__ENDPOINT": self.etcd_endpoint,
            "GOCHAT_ETCD__BASE_PATH": "/gochat_multihost",
            "GOCHAT_ETCD__LEASE_TTL": "3",
            "GOCHAT_LOGIC__DATABASE_URL": database_url or f"sqlite+aiosqlite:///{self.database}",
            "GOCHAT_LOGIC__NODE_GRACE": "1",
            "GOCHAT_LOGIC__PASSWORD_TIME_COST": "1",
            "GOCHAT_LOGIC__PASSWORD_MEMORY_KIB": "8192",
            "GOCHAT_TASK__CLAIM_IDLE": "1",
            # every test client comes from one address that is not loopback: no rate limits
            **{f"GOCHAT_API__{limit}_RATE": "0" for limit in ("LOGIN_ADDRESS", "LOGIN_USER", "REGISTER_ADDRESS")},
            **{f"GOCHAT_API__{limit}_RATE": "0" for limit in ("PUSH_ADDRESS", "PUSH_USER")},
        }

    # -- infrastructure -------------------------------------------------------------------------

    def _spawn(
        self, host: Host, name: str, argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> ManagedProcess:
        process = ManagedProcess(name, host.argv(*argv), env=env, sink=self.log, **kwargs).start()
        self.processes.append(process)
        self.where[name] = host
        return process

    def etcd_argv(self, host: Host) -> list[str]:
        member = f"e{host.name[1:]}"
        data = self.root / "etcd" / member
        data.mkdir(parents=True, exist_ok=True)
        initial = ",".join(f"e{h.name[1:]}=http://{h.address}:{ETCD_PEER_PORT}" for h in self.etcd_hosts)
        client, peer = f"http://{host.address}:{ETCD_CLIENT_PORT}", f"http://{host.address}:{ETCD_PEER_PORT}"
        return [
            shutil.which("etcd") or "/usr/bin/etcd", "--name", member, "--data-dir", str(data),
            "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", initial, "--initial-cluster-state", "new",
            "--initial-cluster-token", self.network.tag, "--logger", "zap", "--log-level", "warn",
        ]  # fmt: skip

    def start_etcd_member(self, host: Host) -> ManagedProcess:
        address = f"{host.address}:{ETCD_CLIENT_PORT}"
        return self._spawn(
            host, f"etcd_{host.name}", self.etcd_argv(host), probe=lambda: host.call(etcd_healthy, address, timeout=10)
        )

    def start_infra(self) -> None:
        members = [self.start_etcd_member(h) for h in self.etcd_hosts]
        redis_address = f"{self.redis_host.address}:{REDIS_PORT}"
        redis_dir = self.root / "redis"
        redis_dir.mkdir()
        redis_argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(REDIS_PORT),
            "--bind", self.redis_host.address, "--protected-mode", "no", "--dir", str(redis_dir),
            "--save", "", "--appendonly", "no", "--loglevel", "warning",
        ]  # fmt: skip
        host = self.redis_host
        redis = self._spawn(host, "redis", redis_argv, probe=lambda: host.call(port_open, redis_address, timeout=10))
        for process in [*members, redis]:
            process.wait_ready(60)

    # -- modules ----------------------------------------------------------------------------------

    def module_env(self, host: Host, module: str, **extra: str) -> dict[str, str]:
        """What a module on ``host`` gets: binds (and so advertises) the host's address."""
        a = host.address
        env = {
            **self.env,
            "GOCHAT_STATE_DIR": str(self.root / "state" / host.name),
            f"GOCHAT_METRICS__{module.upper()}": f"{a}:0" if module != "site" else "",
        }
        if module == "logic":
            env["GOCHAT_LOGIC__RPC_BIND"] = f"{a}:{RPC_PORTS['logic']}"
        elif module == "connect_websocket":
            env["GOCHAT_CONNECT_WEBSOCKET__BIND"] = f"{a}:{PORTS['ws']}"
            env["GOCHAT_CONNECT_WEBSOCKET__RPC_BIND"] = f"{a}:{RPC_PORTS['connect_websocket']}"
        elif module == "connect_tcp":
            env["GOCHAT_CONNECT_TCP__BIND"] = ",".join(f"{a}:{p}" for p in PORTS["tcp"])
            env["GOCHAT_CONNECT_TCP__RPC_BIND"] = f"{a}:{RPC_PORTS['connect_tcp']}"
        elif module == "api":
            env["GOCHAT_API__BIND"] = f"{a}:{PORTS['api']}"
        elif module == "site":
            env["GOCHAT_SITE__BIND"] = f"{a}:{PORTS['site']}"
            env["GOCHAT_SITE__API_URL"] = self.api_urls[0]
            env["GOCHAT_SITE__WS_URL"] = ""  # the page gets the live websocket nodes' public URLs
        env.update(extra)
        if module == "connect_websocket" and "GOCHAT_CONNECT_WEBSOCKET__PUBLIC_URL" not in extra:
            _, port = split_host_port(env["GOCHAT_CONNECT_WEBSOCKET__BIND"])
            env["GOCHAT_CONNECT_WEBSOCKET__PUBLIC_URL"] = f"ws://{a}:{port}/ws"
        return env

    def start_module(self, host: Host, module: str, name: str, wait: bool = True, **extra: str) -> ManagedProcess:
        env = {**_base_environ(), **self.module_env(host, module, **extra)}
        argv = [sys.executable, "-m", "gochat_py", "--module", module]
        process = self._spawn(host, name, argv, env=env, ready=lambda line: READY_MARKER in line)
        if wait:
            process.wait_ready(90)
        return process

    def start(self) -> MultiHostCluster:
        self.start_infra()
        # The first logic alone: two logic processes creating the schema of a new database at the
        # same moment race (the loser fails with "table user already exists").
        (h, module, name), *rest = LAYOUT
        self.start_module(self.hosts[h], module, name)
        started = [self.start_module(self.hosts[h], module, name, wait=False) for h, module, name in rest]
        for process in started:
            process.wait_ready(120)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        self.log.close()

    # -- addresses --------------------------------------------------------------------------------

    def _of(self, module: str) -> list[Host]:
        return [self.hosts[h] for h, m, _ in LAYOUT if m == module]

    @property
    def api_urls(self) -> list[str]:
        return [f"http://{h.address}:{PORTS['api']}" for h in self._of("api")]

    @property
    def ws_urls(self) -> list[str]:
        return [f"ws://{h.address}:{PORTS['ws']}/ws" for h in self._of("connect_websocket")]

    @property
    def tcp_addresses(self) -> list[str]:
        return [f"{h.address}:{PORTS['tcp'][0]}" for h in self._of("connect_tcp")]

    @property
    def site_url(self) -> str:
        return f"http://{self._of('site')[0].address}:{PORTS['site']}"

    def process(self, name: str) -> ManagedProcess:
        return next(p for p in reversed(self.processes) if p.name == name)

    def on_client(self, function: Callable[..., Any], *args: Any, timeout: float = 300) -> Any:
        """Runs the test's client code in the client host."""
        return self.client.call(function, *args, timeout=timeout)

    def power_off(self, host: Host) -> list[int]:
        """Kills every process on ``host`` at once (see Host.power_off); returns their pids."""
        for process in self.processes:
            if self.where[process.name] is host:
                process.expected_exit = True
        return host.power_off()

    def died(self, *expected: str) -> list[str]:
        """Processes that exited although nobody stopped them (and are not in ``expected``)."""
        return [p.name for p in self.processes if not p.running() and not p.expected_exit and p.name not in expected]

    def tails(self, lines: int = 30) -> str:
        return "\n".join(f"--- {p.name} ({self.where[p.name].name}) ---\n{p.tail(lines)}" for p in self.processes)


def _base_environ() -> dict[str, str]:
    """The test run's environment less any GOCHAT_* setting that would leak into the modules."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
