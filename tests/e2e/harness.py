"""Real systems for end-to-end tests: Redis, etcd and every module as its own OS process.

Each :class:`Cluster` gets its own free ports, etcd prefix, Redis database and state folder, so
clusters in one test run never see each other.  Processes are started by the same launcher code
``gochat-py up`` uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import redis
import websockets

from gochat_py.client.tcp import TcpClient
from gochat_py.config import load_settings
from gochat_py.discovery import make_etcd_client
from gochat_py.launcher import MODULE_ORDER, ManagedProcess, System, etcd_process, port_open, redis_process

_cluster_numbers = itertools.count(1)


_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A loopback port (and the ``span - 1`` after it) nobody listens on.

    Taken below the kernel's ephemeral range: a port the kernel handed out with ``bind(0)`` can be
    given again to any outgoing connection before the module under test binds it (CI saw exactly
    that), a port below the range cannot.  Ports are never handed out twice in one test run.
    """
    floor = min(_ephemeral_floor(), 32768)
    rng = random.SystemRandom()
    for _ in range(1000):
        port = rng.randrange(max(floor - 12000, 1024), floor - span)
        ports = range(port, port + span)
        if _handed_out.isdisjoint(ports) and all(_bindable(p) for p in ports):
            _handed_out.update(ports)
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


class Infra:
    """One Redis and one etcd for the whole test session, on free loopback ports."""

    def __init__(self, root: Path, log: Path) -> None:
        self.redis_address = f"127.0.0.1:{free_port()}"
        self.etcd_address = f"127.0.0.1:{free_port(span=2)}"  # etcd's peer listener takes port + 1
        self.root = root
        self.log = log.open("a", buffering=1)
        self.redis = self.redis_process()
        self.etcd = self.etcd_process()

    # A subclass starts them otherwise (TLS); the same address and data folder every time.
    def redis_process(self) -> ManagedProcess:
        return redis_process(self.redis_address, self.root / "redis", self.log)

    def etcd_process(self) -> ManagedProcess:
        return etcd_process(self.etcd_address, self.root / "etcd", self.log)

    def redis_client(self, db: int) -> redis.Redis:
        """A plain client of this Redis (a subclass with TLS on says how to reach it)."""
        return redis.Redis.from_url(f"redis://{self.redis_address}/{db}")

    def start(self) -> Infra:
        self.redis.start()
        self.etcd.start()
        self.redis.wait_ready(30)
        self.etcd.wait_ready(30)
        return self

    def stop(self) -> None:
        self.etcd.stop()
        self.redis.stop()
        self.log.close()

    # Fault tests: stop one server and start a new one on the same address and data folder.
    def stop_redis(self) -> None:
        """SIGTERM: Redis writes its append-only file and exits."""
        assert self.redis.stop() == 0, self.redis.tail()

    def start_redis(self) -> None:
        self.redis = self.redis_process().start()
        self.redis.wait_ready(30)

    def stop_etcd(self) -> None:
        self.etcd.stop()  # etcd exits with a signal's status on SIGTERM
        assert not self.etcd.running()

    def start_etcd(self) -> None:
        self.etcd = self.etcd_process().start()
        self.etcd.wait_ready(30)


class SentinelInfra(Infra):
    """Infra whose Redis is a primary, ``replicas`` replicas of it and three Sentinels watching
    them (quorum 2), with Sentinel's timing knobs set low so a failover takes a few seconds."""

    MASTER_NAME = "gochat"

    def __init__(
        self, root: Path, log: Path, replicas: int = 1, down_after_ms: int = 500, failover_timeout_ms: int = 2000
    ) -> None:
        super().__init__(root, log)  # self.redis, at self.redis_address, starts as the primary
        self.down_after_ms, self.failover_timeout_ms = down_after_ms, failover_timeout_ms
        self.replica_addresses = [f"127.0.0.1:{free_port()}" for _ in range(replicas)]
        self.servers = {self.redis_address: self._server(self.redis_address)}  # address -> process
        for address in self.replica_addresses:
            self.servers[address] = self._server(address, replica_of=self.redis_address)
        self.redis = self.servers[self.redis_address]
        self.sentinel_addresses = [f"127.0.0.1:{free_port()}" for _ in range(3)]
        self.sentinels = [self._sentinel(n, address) for n, address in enumerate(self.sentinel_addresses)]

    def _server(self, address: str, replica_of: str = "") -> ManagedProcess:
        port = address.rpartition(":")[2]
        extra = ("--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0")
        if replica_of:
            extra += ("--replicaof", *replica_of.split(":"))
        return redis_process(address, self.root / f"redis_{port}", self.log, extra, name=f"redis_{port}")

    def _sentinel(self, n: int, address: str) -> ManagedProcess:
        folder = self.root / f"sentinel{n}"
        folder.mkdir(parents=True, exist_ok=True)
        host, port = address.split(":")
        name, (primary_host, primary_port) = self.MASTER_NAME, self.redis_address.split(":")
        conf = folder / "sentinel.conf"  # Sentinel rewrites its file: one each
        conf.write_text(
            f"port {port}\nbind {host}\ndir {folder}\n"
            f"sentinel monitor {name} {primary_host} {primary_port} 2\n"
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}\n"
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {name} 1\n"
        )
        binary = shutil.which("redis-sentinel")
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [binary, str(conf)] if binary else [server, str(conf), "--sentinel"]
        return ManagedProcess(f"sentinel{n}", argv, probe=lambda: port_open(address), sink=self.log)

    def start(self) -> SentinelInfra:
        super().start()
        for address in self.replica_addresses:
            self.servers[address].start().wait_ready(30)
        for sentinel in self.sentinels:
            sentinel.start().wait_ready(30)
        deadline = time.monotonic() + 60
        while not (self.replicating(self.redis_address) and self._sentinels_see_everything()):
            assert time.monotonic() < deadline, (
                "replicas not in sync, or the Sentinels did not find them and each other"
            )
            time.sleep(0.2)
        return self

    def replicating(self, primary: str) -> bool:
        """Every replica finished its sync and follows ``primary``."""
        try:
            info = self._ask(primary, "INFO", "replication")
        except redis.RedisError:
            return False
        online = [info.get(f"slave{n}", {}).get("state") == "online" for n in range(len(self.replica_addresses))]
        return info.get("role") == "master" and all(online)

    def _sentinels_see_everything(self) -> bool:
        """Every Sentinel knows the primary, its replicas and the two other Sentinels: only then
        can they agree on a failover."""
        for address in self.sentinel_addresses:
            try:
                state = self._ask(address, "SENTINEL", "MASTER", self.MASTER_NAME)
            except redis.RedisError:
                return False
            if int(state.get("num-slaves", 0)) < len(self.replica_addresses):
                return False
            if int(state.get("num-other-sentinels", 0)) < 2:
                return False
        return True

    @staticmethod
    def _ask(address: str, *command: str) -> Any:
        host, port = address.split(":")
        client = redis.Redis(host=host, port=int(port), socket_timeout=2, decode_responses=True)
        try:
            return client.execute_command(*command)
        finally:
            client.close()

    def module_env(self) -> dict[str, str]:
        """The GOCHAT_* settings that make every module find Redis through the Sentinels."""
        return {
            "GOCHAT_REDIS__SENTINELS": ",".join(self.sentinel_addresses),
            "GOCHAT_REDIS__MASTER_NAME": self.MASTER_NAME,
        }

    def primary(self) -> str:
        """The primary's address as the Sentinels name it now ("" while they disagree)."""
        answers = set()
        for address in self.sentinel_addresses:
            with contextlib.suppress(redis.RedisError):
                answers.add(":".join(self._ask(address, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME)))
        return answers.pop() if len(answers) == 1 else ""

    def role(self, address: str) -> str:
        return str(self._ask(address, "ROLE")[0])

    def restart_server(self, address: str) -> ManagedProcess:
        """The killed Redis at ``address`` started again on its data, as a supervisor would; the
        Sentinels then make it a replica of the promoted one."""
        process = self._server(address).start()
        process.wait_ready(30)
        self.servers[address] = process
        if address == self.redis_address:
            self.redis = process
        return process

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for address, process in self.servers.items():
            if address != self.redis_address:
                process.stop()
        super().stop()


@contextlib.contextmanager
def running_infra(tmp_path_factory: Any, name: str) -> Iterator[Infra]:
    """A Redis and an etcd of their own, stopped at the end (for a session, or for a test module
    that stops and starts them)."""
    root = tmp_path_factory.mktemp(name)
    running = Infra(root, root / "infra.log").start()
    try:
        yield running
    finally:
        running.stop()


class Cluster:
    """A whole gochat-py system; ``env`` holds the GOCHAT_* overrides every module gets."""

    def __init__(self, infra: Infra, root: Path, **extra: str) -> None:
        self.number = next(_cluster_numbers)
        self.root = root
        self.api_port, self.ws_port, self.site_port = free_port(), free_port(), free_port()
        self.tcp_ports = (free_port(), free_port())
        self.db = self.number % 16
        self.env = {
            "GOCHAT_STATE_DIR": str(root / "state"),
            "GOCHAT_REDIS__ADDRESS": infra.redis_address,
            "GOCHAT_REDIS__DB": str(self.db),
            "GOCHAT_ETCD__ENDPOINT": infra.etcd_address,
            "GOCHAT_ETCD__BASE_PATH": f"/gochat_test_{os.getpid()}_{self.number}",
            "GOCHAT_ETCD__LEASE_TTL": "3",
            "GOCHAT_LOGIC__RPC_BIND": "127.0.0.1:0",
            "GOCHAT_LOGIC__NODE_GRACE": "1",
            "GOCHAT_LOGIC__PASSWORD_TIME_COST": "1",
            "GOCHAT_LOGIC__PASSWORD_MEMORY_KIB": "8192",
            "GOCHAT_CONNECT_WEBSOCKET__BIND": f"127.0.0.1:{self.ws_port}",
            "GOCHAT_CONNECT_WEBSOCKET__RPC_BIND": "127.0.0.1:0",
            "GOCHAT_CONNECT_TCP__BIND": f"127.0.0.1:{self.tcp_ports[0]},127.0.0.1:{self.tcp_ports[1]}",
            "GOCHAT_CONNECT_TCP__RPC_BIND": "127.0.0.1:0",
            "GOCHAT_TASK__CLAIM_IDLE": "1",
            "GOCHAT_API__BIND": f"127.0.0.1:{self.api_port}",
            "GOCHAT_SITE__BIND": f"127.0.0.1:{self.site_port}",
            "GOCHAT_SITE__API_URL": f"http://127.0.0.1:{self.api_port}",
            "GOCHAT_SITE__WS_URL": f"ws://127.0.0.1:{self.ws_port}/ws",
            # any free port: several clusters and extra nodes run side by side
            **{f"GOCHAT_METRICS__{m.upper()}": "127.0.0.1:0" for m in MODULE_ORDER if m != "site"},
            **extra,
        }
        infra.redis_client(self.db).flushdb()
        self.settings = load_settings(env="dev", environ={**os.environ, **self.env})
        self.log_path = root / "cluster.log"
        self.log = self.log_path.open("a", buffering=1)
        self.system = System(self.settings, sink=self.log, env=self.env)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def start(self, modules: tuple[str, ...] = MODULE_ORDER) -> Cluster:
        """Starts the modules; if one fails, stops the others before raising (left running, they
        would consume a later cluster's queue once it reuses the Redis database)."""
        try:
            self.system.start_all(modules, timeout=60)
        except BaseException:
            self.stop()
            raise
        return self

    def upgrade_database(self) -> str:
        """``gochat-py db upgrade`` with the cluster's settings (a PostgreSQL database starts empty);
        its output."""
        result = subprocess.run(
            [PYTHON, "-m", "gochat_py", "db", "upgrade"],
            env={**os.environ, **self.env, "GOCHAT_ENV": "dev"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start_module(self, module: str, name: str | None = None, **env: str) -> ManagedProcess:
        process = self.system.start_module(module, env, name)
        process.wait_ready(60)
        return process

    def start_second_api_and_websocket_node(self) -> tuple[int, int, str]:
        """Another api and another connect_websocket on ports of their own, as modules started
        later would be: (api port, websocket port, the websocket node's RPC address)."""
        api_port, ws_port, ws_rpc = free_port(), free_port(), f"127.0.0.1:{free_port()}"
        self.start_module("api", name="api_2", GOCHAT_API__BIND=f"127.0.0.1:{api_port}")
        self.start_module(
            "connect_websocket",
            name="connect_websocket_2",
            GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{ws_port}",
            GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=ws_rpc,
        )
        return api_port, ws_port, ws_rpc

    def processes(self, name: str) -> list[ManagedProcess]:
        return [p for p in self.system.modules if p.name == name]

    def stop(self) -> None:
        self.system.stop()
        self.log.close()

    async def logged(self, text: str, timeout: float = 10) -> None:
        """Waits until some process of the cluster has logged ``text`` (log lines reach the file
        a moment after the client has seen the effect)."""
        await eventually(lambda: text in self.log_path.read_text(), timeout, f"log line {text!r}")

    def tails(self) -> str:
        return "\n".join(f"--- {p.name} ---\n{p.tail(30)}" for p in self.system.modules)


_METRICS_SERVED = re.compile(r'msg="metrics served" address=127\.0\.0\.1:(\d+)')


async def registered(cluster: Cluster) -> set[str]:
    """The keys under the cluster's etcd base path: one per logic and connect process."""
    client = make_etcd_client(cluster.settings.etcd)
    try:
        return {item.key.decode() for item in await client.get_prefix(cluster.settings.etcd.base_path.encode())}
    except Exception:
        return set()  # etcd not answering (yet)
    finally:
        await client.close()


def consumer_of(process: ManagedProcess) -> str:
    """The consumer name a task process reads under (worker.serve's default)."""
    return f"{socket.gethostname()}-{process.pid}"


def lease_holder(cluster: Cluster, db: redis.Redis) -> ManagedProcess:
    """The task process that delivers: its consumer name is in the task lease."""
    holder = db.get("gochat_task_lease")
    assert holder, "no task process holds the lease"
    tasks = [p for p in cluster.system.modules if p.name.startswith("task") and p.running()]
    return next(p for p in tasks if consumer_of(p) == holder.decode())


def scrape(cluster: Cluster, module: str) -> dict[str, float]:
    """The module's Prometheus metrics as {'name{labels}': value}, found through the port it logged."""
    (process,) = cluster.processes(module)
    ports = [int(m.group(1)) for line in list(process.lines) if (m := _METRICS_SERVED.search(line))]
    assert ports, f"{module} logged no metrics address"
    with urllib.request.urlopen(f"http://127.0.0.1:{ports[-1]}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def probe(cluster: Cluster, name: str, path: str) -> tuple[int, dict[str, Any]]:
    """A module's /healthz or /readyz: (status, JSON body).  ``name`` is the process's name (site
    answers on its own port; the others beside their metrics, on the port they logged)."""
    if name == "site":
        url = f"http://127.0.0.1:{cluster.site_port}"
    else:
        running = [p for p in cluster.processes(name) if p.running()]
        assert len(running) == 1, name
        ports = [int(m.group(1)) for line in list(running[0].lines) if (m := _METRICS_SERVED.search(line))]
        assert ports, f"{name} logged no metrics address"
        url = f"http://127.0.0.1:{ports[-1]}"
    try:
        with urllib.request.urlopen(url + path, timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


class ApiClient:
    """The HTTP API as a browser calls it: POST with a JSON body, answers are envelopes."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._session
        await self._session.close()

    async def post_raw(self, path: str, data: bytes) -> tuple[int, dict[str, Any], dict[str, str]]:
        assert self._session
        async with self._session.post(
            self.base_url + path, data=data, headers={"Content-Type": "application/json"}
        ) as response:
            return response.status, json.loads(await response.read()), dict(response.headers)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        status, envelope, _ = await self.post_raw(path, json.dumps(body).encode())
        assert status == 200, (path, status, envelope)
        assert set(envelope) == {"code", "data", "message"}, envelope
        return envelope

    async def register(self, name: str, password: str = "pw-123456") -> str:
        reply = await self.post("/user/register", {"userName": name, "passWord": password})
        assert reply["code"] == 0, reply
        return reply["data"]

    async def push_room_many(self, token: str, room: int, texts: list[str], concurrency: int) -> None:
        """Every text as a room message, ``concurrency`` requests at a time; each must be accepted."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        for text in texts:
            queue.put_nowait(text)

        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                reply = await self.post("/push/pushRoom", {"authToken": token, "msg": text, "roomId": room})
                assert reply["code"] == 0, reply

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def user_id(self, token: str) -> int:
        reply = await self.post("/user/checkAuth", {"authToken": token})
        assert reply["code"] == 0, reply
        return reply["data"]["userId"]


class WsClient:
    """A websocket client that joins a room and collects every frame it receives."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.frames: asyncio.Queue[bytes] = asyncio.Queue()
        self.seen: list[bytes] = []
        self.ws: websockets.ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None

    async def join(self, token: str, room_id: int, **extra: Any) -> WsClient:
        """``extra``: more fields of the join message, e.g. ``since``."""
        self.ws = await websockets.connect(self.url, open_timeout=10)
        await self.ws.send(json.dumps({"authToken": token, "roomId": room_id, **extra}))
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws
        try:
            async for message in self.ws:
                data = message.encode() if isinstance(message, str) else message
                self.seen.append(data)
                await self.frames.put(data)
        except websockets.ConnectionClosed:
            pass

    async def next_frame(self, predicate: Callable[[bytes], bool], timeout: float = 10.0) -> bytes:
        """The first frame (from now on) matching ``predicate``; frames before it are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; seen: {self.seen[-10:]!r}")
            try:
                frame = await asyncio.wait_for(self.frames.get(), remaining)
            except TimeoutError:
                continue
            if predicate(frame):
                return frame

    async def close(self) -> None:
        if self.ws:
            await self.ws.close()
        if self._reader:
            await self._reader


class TcpReader:
    """Collects a TCP client's payloads in the background."""

    def __init__(self, client: TcpClient) -> None:
        self.client = client
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        try:
            async for payload in self.client.payloads():
                await self.queue.put(payload)
        except (ConnectionError, OSError):
            pass
        await self.queue.put(None)  # connection ended

    async def next(self, predicate: Callable[[bytes], bool], timeout: float = 10) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            payload = await asyncio.wait_for(self.queue.get(), max(deadline - time.monotonic(), 0.01))
            assert payload is not None, "connection closed"
            if predicate(payload):
                return payload

    async def closed(self, timeout: float = 10) -> None:
        """Waits for the server to end the connection (frames before that are skipped)."""
        deadline = time.monotonic() + timeout
        while await asyncio.wait_for(self.queue.get(), max(deadline - time.monotonic(), 0.01)) is not None:
            pass


async def eventually(
    condition: Callable[[], Any], timeout: float, what: str = "condition", interval: float = 0.05
) -> float:
    """Polls ``condition`` (a function, sync or async) until it is true; returns the seconds it took."""
    start = time.monotonic()
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise AssertionError(f"{what}: not true within {timeout} s")
        await asyncio.sleep(interval)


def op_is(op: int, **fields: Any) -> Callable[[bytes], bool]:
    def predicate(frame: bytes) -> bool:
        try:
            body = json.loads(frame)
        except ValueError:
            return False
        return body.get("op") == op and all(body.get(k) == v for k, v in fields.items())

    return predicate


CREATE_TIME = re.compile(rb'"createTime":"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"}$')
PYTHON = sys.executable
