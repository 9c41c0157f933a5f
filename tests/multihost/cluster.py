"""A gochat-py deployment over several test hosts (network namespaces, see :mod:`.netns`).

Layout (the one docs/deploy.md describes)::

    h1 10.231.0.11  etcd e1, Redis replica, Sentinel, logic, connect_websocket, api, task
    h2 10.231.0.12  etcd e2, Redis replica, Sentinel, logic, connect_websocket, connect_tcp, api, task
    h3 10.231.0.13  etcd e3, Redis primary, Sentinel, site
    client          the test's own clients (its code runs there through Host.call)
    db 10.231.0.15  PostgreSQL

Every module binds its host's address (nothing on 127.0.0.1) and advertises it; every module
gets all three etcd members as its endpoint and all three Sentinels; every logic and task the one
PostgreSQL database (``gochat-py db upgrade`` runs once before they start).  gRPC between the
layers is mutual TLS: one certificate per host, with the host's address as its subject
alternative name, signed by the deployment's CA.  A push is accepted once a replica holds it
(``wait_replicas = 1``): with two replicas, losing the primary's host leaves one to acknowledge.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from gochat_py.config import split_host_port
from gochat_py.launcher import READY_MARKER, ManagedProcess, port_open
from tests.e2e.certs import Authority, Issued
from tests.multihost.netns import Host, Network
from tests.postgres import postgres_bin

ETCD_CLIENT_PORT, ETCD_PEER_PORT = 2379, 2380
REDIS_PORT, SENTINEL_PORT, POSTGRES_PORT = 6379, 26379, 5432
MASTER_NAME = "gochat"
# Sentinel's timing knobs low, as in tests/e2e/test_redis_sentinel.py: a failover takes seconds
SENTINEL_DOWN_AFTER_MS, SENTINEL_FAILOVER_TIMEOUT_MS = 500, 2000
WAIT_TIMEOUT_MS = 500
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
    def __init__(self, root: Path, network: Network) -> None:
        self.root = root
        self.network = network
        self.log_path = root / "cluster.log"
        self.log = self.log_path.open("a", buffering=1)
        self.processes: list[ManagedProcess] = []
        self.where: dict[str, Host] = {}  # process name -> its host
        hosts = [network.add_host(name) for name in ("h1", "h2", "h3")]
        self.client = network.add_host("client")
        self.db_host = network.add_host("db")
        self.hosts = {h.name: h for h in hosts}
        self.etcd_hosts = hosts
        self.redis_hosts = hosts  # a Redis server and a Sentinel on each
        self.first_primary = self.hosts["h3"]  # the others start as its replicas
        self.etcd_endpoint = ",".join(f"{h.address}:{ETCD_CLIENT_PORT}" for h in self.etcd_hosts)
        self.sentinel_addresses = [f"{h.address}:{SENTINEL_PORT}" for h in self.redis_hosts]
        self.database_url = f"postgresql+asyncpg://postgres@{self.db_host.address}:{POSTGRES_PORT}/gochat"
        self.pki = Authority(root / "pki", "gochat")
        self._certificates: dict[str, Issued] = {}
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        # PostgreSQL runs as the ``postgres`` user (it refuses root): a folder that user may enter
        self.pg_root = Path(tempfile.mkdtemp(prefix="gochat-mh-pg-"))
        self.env = {
            "GOCHAT_ENV": "dev",
            "PYTHONUNBUFFERED": "1",
            "GOCHAT_REDIS__SENTINELS": ",".join(self.sentinel_addresses),
            "GOCHAT_REDIS__MASTER_NAME": MASTER_NAME,
            "GOCHAT_REDIS__WAIT_REPLICAS": "1",
            "GOCHAT_REDIS__WAIT_TIMEOUT": str(WAIT_TIMEOUT_MS),
            "GOCHAT_ETCD__ENDPOINT": self.etcd_endpoint,
            "GOCHAT_ETCD__BASE_PATH": "/gochat_multihost",
            "GOCHAT_ETCD__LEASE_TTL": "3",
            "GOCHAT_LOGIC__DATABASE_URL": self.database_url,
            "GOCHAT_LOGIC__NODE_GRACE": "1",
            "GOCHAT_LOGIC__PASSWORD_TIME_COST": "1",
            "GOCHAT_LOGIC__PASSWORD_MEMORY_KIB": "8192",
            "GOCHAT_TASK__CLAIM_IDLE": "1",
            # every test client comes from one address that is not loopback: no rate limits
            **{f"GOCHAT_API__{limit}_RATE": "0" for limit in ("LOGIN_ADDRESS", "LOGIN_USER", "REGISTER_ADDRESS")},
            **{f"GOCHAT_API__{limit}_RATE": "0" for limit in ("PUSH_ADDRESS", "PUSH_USER")},
        }

    def certificate(self, host: Host) -> Issued:
        """The host's certificate (its address and name as subject alternative names), made once."""
        if host.name not in self._certificates:
            self._certificates[host.name] = self.pki.issue(host.name, ips=(host.address,), dns=(host.name,))
        return self._certificates[host.name]

    # -- infrastructure -------------------------------------------------------------------------

    def _spawn(
        self, host: Host, name: str, argv: list[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> ManagedProcess:
        process = ManagedProcess(name, host.argv(*argv), env=env, sink=self.log, **kwargs)
        # A child gets SIGTERM when the *thread* that started it ends (PR_SET_PDEATHSIG): a test
        # that restarts a server from a short-lived thread (asyncio.to_thread) would see it stop
        # with that thread.  Every child is started by one thread that lives as long as the cluster.
        self._spawner.submit(process.start).result(60)
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

    def redis_argv(self, host: Host, replica_of: str = "") -> list[str]:
        folder = self.root / "redis" / host.name
        folder.mkdir(parents=True, exist_ok=True)
        argv = [
            shutil.which("redis-server") or "/usr/bin/redis-server", "--port", str(REDIS_PORT),
            "--bind", host.address, "--protected-mode", "no", "--dir", str(folder),
            "--save", "", "--appendonly", "no", "--loglevel", "warning",
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of:
            argv += ["--replicaof", *replica_of.split(":")]
        return argv

    def start_redis(self, host: Host, replica_of: str = "") -> ManagedProcess:
        address = f"{host.address}:{REDIS_PORT}"
        return self._spawn(
            host,
            f"redis_{host.name}",
            self.redis_argv(host, replica_of),
            probe=lambda: host.call(port_open, address, timeout=10),
        )

    def start_sentinel(self, host: Host, fresh: bool = True) -> ManagedProcess:
        """A Sentinel on ``host``; ``fresh`` = a new configuration file (Sentinel rewrites its
        own: one restarted after a crash goes on from what it had written)."""
        folder = self.root / "sentinel" / host.name
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "sentinel.conf"
        if fresh:
            n = MASTER_NAME
            conf.write_text(
                f"port {SENTINEL_PORT}\nbind {host.address}\ndir {folder}\n"
                f"sentinel monitor {n} {self.first_primary.address} {REDIS_PORT} 2\n"
                f"sentinel down-after-milliseconds {n} {SENTINEL_DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {n} {SENTINEL_FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {n} 1\n"
            )
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        address = f"{host.address}:{SENTINEL_PORT}"
        return self._spawn(
            host,
            f"sentinel_{host.name}",
            [server, str(conf), "--sentinel"],
            probe=lambda: host.call(port_open, address, timeout=10),
        )

    def redis_ask(self, address: str, *command: str) -> Any:
        """One command to a Redis server or Sentinel, sent from the client host."""
        return self.client.call(_redis_command, address, command, timeout=10)

    def redis_primary(self) -> str:
        """The primary's address as every Sentinel that answers names it ("" while they disagree)."""
        answers = set()
        for address in self.sentinel_addresses:
            with contextlib.suppress(Exception):
                answers.add(":".join(self.redis_ask(address, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)))
        return answers.pop() if len(answers) == 1 else ""

    def redis_settled(self, replicas: int) -> bool:
        """The primary has ``replicas`` replicas online and every Sentinel knows them and the two
        other Sentinels: only then is a failover possible."""
        primary = self.redis_primary()
        if not primary:
            return False
        try:
            info = self.redis_ask(primary, "INFO", "replication")
            online = sum(1 for key, value in info.items() if key.startswith("slave") and value.get("state") == "online")
            if info.get("role") != "master" or online < replicas:
                return False
            for address in self.sentinel_addresses:
                state = self.redis_ask(address, "SENTINEL", "MASTER", MASTER_NAME)
                if int(state.get("num-slaves", 0)) < replicas or int(state.get("num-other-sentinels", 0)) < 2:
                    return False
        except Exception:
            return False
        return True

    def wait_redis_settled(self, replicas: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.redis_settled(replicas):
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis: no primary with {replicas} replicas that all three Sentinels know")
            time.sleep(0.2)

    # -- PostgreSQL -------------------------------------------------------------------------------

    def _as_postgres(self, *argv: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv]

    def init_postgres(self) -> None:
        entry = pwd.getpwnam("postgres")
        os.chown(self.pg_root, entry.pw_uid, entry.pw_gid)
        data = self.pg_root / "data"
        bin_ = postgres_bin()
        subprocess.run(
            self._as_postgres(str(bin_ / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                              "--no-sync", "--no-instructions"),
            check=True, capture_output=True, timeout=120, cwd=self.pg_root,
        )  # fmt: skip
        with (data / "pg_hba.conf").open("a") as hba:  # the test network, as an operator would allow it
            hba.write(f"host all all {self.network.subnet}.0/24 trust\n")

    def start_postgres(self) -> ManagedProcess:
        """The server on the db host (again after a power-off: it recovers from its WAL).  Commits
        are synchronous (PostgreSQL's default): with ``synchronous_commit = off`` a power-off
        loses the last commits, a user registered just before it among them."""
        bin_, host = postgres_bin(), self.db_host
        argv = self._as_postgres(
            str(bin_ / "postgres"), "-D", str(self.pg_root / "data"), "-h", host.address, "-p", str(POSTGRES_PORT),
            "-k", str(self.pg_root), "-c", "max_connections=200",
        )  # fmt: skip
        ready = [str(bin_ / "pg_isready"), "-q", "-h", host.address, "-p", str(POSTGRES_PORT), "-U", "postgres"]
        return self._spawn(
            host, "postgres", argv, probe=lambda: subprocess.run(host.argv(*ready), timeout=10).returncode == 0
        )

    def psql(self, sql: str, database: str = "gochat") -> str:
        """``sql`` run by psql on the db host; its unaligned output."""
        command = [str(postgres_bin() / "psql"), "-h", self.db_host.address, "-p", str(POSTGRES_PORT),
                   "-U", "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql]  # fmt: skip
        result = subprocess.run(self.db_host.argv(*command), capture_output=True, text=True, timeout=60, cwd="/")
        if result.returncode != 0:
            raise RuntimeError(f"psql {sql!r}: {result.stderr}")
        return result.stdout.strip()

    def start_infra(self) -> None:
        self.init_postgres()
        members = [self.start_etcd_member(h) for h in self.etcd_hosts]
        primary = self.start_redis(self.first_primary)
        primary_address = f"{self.first_primary.address}:{REDIS_PORT}"
        replicas = [self.start_redis(h, primary_address) for h in self.redis_hosts if h is not self.first_primary]
        sentinels = [self.start_sentinel(h) for h in self.redis_hosts]
        postgres = self.start_postgres()
        for process in [*members, primary, *replicas, *sentinels, postgres]:
            process.wait_ready(60)
        self.psql("CREATE DATABASE gochat", database="postgres")
        self.wait_redis_settled(len(replicas))

    def upgrade_database(self) -> None:
        """``gochat-py db upgrade``, once, from h1, before any logic or task starts."""
        env = {**_base_environ(), **self.env}
        argv = self.hosts["h1"].argv(sys.executable, "-m", "gochat_py", "db", "upgrade")
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        self.log.write(f"db upgrade: {result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {result.stdout}{result.stderr}")

    # -- modules ----------------------------------------------------------------------------------

    def module_env(self, host: Host, module: str, **extra: str) -> dict[str, str]:
        """What a module on ``host`` gets: binds (and so advertises) the host's address."""
        a = host.address
        issued = self.certificate(host)
        env = {
            **self.env,
            "GOCHAT_RPC__TLS_CA": str(issued.ca),
            "GOCHAT_RPC__TLS_CERT": str(issued.cert),
            "GOCHAT_RPC__TLS_KEY": str(issued.key),
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
        self.upgrade_database()
        started = [self.start_module(self.hosts[h], module, name, wait=False) for h, module, name in LAYOUT]
        for process in started:
            process.wait_ready(120)
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(Exception):
                process.stop(timeout=10)
        self.log.close()
        self._spawner.shutdown(wait=False)
        shutil.rmtree(self.pg_root, ignore_errors=True)

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


def _redis_command(address: str, command: tuple[str, ...]) -> Any:
    host, port = split_host_port(address)
    client = redis.Redis(host=host, port=port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _base_environ() -> dict[str, str]:
    """The test run's environment less any GOCHAT_* setting that would leak into the modules."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GOCHAT_")}
