"""Starts and stops a whole gochat-py system on one machine, one OS process per module.

Used by ``gochat-py up`` and by the end-to-end tests, so the tests run the system exactly as a
person does.  Redis and etcd are started too when nothing answers at the configured addresses
(data under the state folder; Redis with its append-only file on).  Children get SIGTERM if the
launcher dies, and their output is prefixed with the module name.  Under ``up`` a child that
exits on its own is reported and restarted, and one that keeps dying brings the whole system
down (:mod:`gochat_py.supervisor`): nothing dies silently.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from gochat_py.config import Settings, split_host_port
from gochat_py.supervisor import Supervisor

MODULE_ORDER = ("logic", "connect_websocket", "connect_tcp", "task", "api", "site")
READY_MARKER = "msg=ready"
_COLOURS = ("36", "32", "33", "35", "34", "31", "96", "92")


def port_open(address: str, timeout: float = 0.3) -> bool:
    host, port = split_host_port(address)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM when the launcher goes away, even by SIGKILL."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ManagedProcess:
    """One child process whose output is copied, prefixed, to a sink and kept for diagnostics."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        ready: Callable[[str], bool] | None = None,
        probe: Callable[[], bool] | None = None,
        sink: TextIO | None = None,
        colour: str | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self._ready_line = ready
        self._probe = probe
        self.sink = sink if sink is not None else sys.stdout
        self.colour = colour
        self.lines: deque[str] = deque(maxlen=400)
        self.ready = threading.Event()
        self.proc: subprocess.Popen[bytes] | None = None
        self.expected_exit = False
        self._pump: threading.Thread | None = None

    def start(self) -> ManagedProcess:
        """Starts the process; again after it died too (a restart: same command, same sink)."""
        self.ready.clear()
        self.expected_exit = False
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"out-{self.name}", daemon=True)
        self._pump.start()
        return self

    def _copy_output(self) -> None:
        assert self.proc and self.proc.stdout
        prefix = f"\x1b[{self.colour}m{self.name:>17}\x1b[0m | " if self.colour else f"{self.name:>17} | "
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if self._ready_line and self._ready_line(line):
                self.ready.set()
            try:
                self.sink.write(prefix + line + "\n")
                self.sink.flush()
            except (ValueError, OSError):
                pass  # the sink is closed: keep draining so the child never blocks on a full pipe

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._probe and self._probe():
                self.ready.set()
            if self.ready.is_set():
                return
            if not self.running():
                raise RuntimeError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout} s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(list(self.lines)[-lines:])

    def signal(self, sig: int) -> None:
        if self.running():
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.proc is None:
            return None
        self.expected_exit = True
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self._pump:
            self._pump.join(2)
        return self.proc.returncode

    def kill(self) -> None:
        self.expected_exit = True
        if self.running():
            self.proc.kill()
            self.proc.wait(5)


def module_process(
    module: str,
    settings: Settings,
    extra_env: dict[str, str] | None = None,
    name: str | None = None,
    sink: TextIO | None = None,
    colour: str | None = None,
) -> ManagedProcess:
    env = dict(os.environ)
    env["GOCHAT_ENV"] = settings.env
    env["GOCHAT_CONFIG_DIR"] = settings.config_dir
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra_env or {})
    return ManagedProcess(
        name or module,
        [sys.executable, "-m", "gochat_py", "--module", module],
        env=env,
        ready=lambda line: READY_MARKER in line,
        sink=sink,
        colour=colour,
    )


def redis_process(
    address: str, data_dir: Path, sink: TextIO | None = None, extra: tuple[str, ...] = (), name: str = "redis"
) -> ManagedProcess:
    """``extra``: more redis-server options (``--replicaof host port`` for a replica)."""
    host, port = split_host_port(address)
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    argv = [
        binary, "--port", str(port), "--bind", host, "--dir", str(data_dir),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
        "--loglevel", "warning", *extra,
    ]  # fmt: skip
    return ManagedProcess(name, argv, probe=lambda: port_open(address), sink=sink)


def etcd_process(address: str, data_dir: Path, sink: TextIO | None = None) -> ManagedProcess:
    host, port = split_host_port(address)
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    client = f"http://{host}:{port}"
    peer = f"http://{host}:{port + 1}"
    argv = [
        binary, "--name", "gochat-local", "--data-dir", str(data_dir),
        "--listen-client-urls", client, "--advertise-client-urls", client,
        "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"gochat-local={peer}", "--logger", "zap", "--log-level", "warn",
    ]  # fmt: skip
    return ManagedProcess("etcd", argv, probe=lambda: port_open(address), sink=sink)


class System:
    """Infrastructure plus modules, started in order and stopped in reverse order."""

    def __init__(
        self,
        settings: Settings,
        sink: TextIO | None = None,
        colour: bool = False,
        env: dict[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.sink = sink
        self.colour = colour
        self.env = env or {}  # GOCHAT_* overrides every module gets
        self.infra: list[ManagedProcess] = []
        self.modules: list[ManagedProcess] = []

    def start_infra(self) -> None:
        """Starts a plaintext Redis and etcd where none answers; with TLS configured for one, it
        refuses instead: the modules could never talk to a plaintext server (RuntimeError)."""
        state = self.settings.state_path
        common = self.settings
        # a Sentinel-managed Redis is the operators' to run: `up` starts only a lone local one
        local_redis = not common.redis.sentinels
        for name, address, tls in (
            ("Redis", common.redis.address, common.redis.tls_ca if local_redis else ""),
            ("etcd", common.etcd.endpoint, common.etcd.tls_ca),
        ):
            if tls and not port_open(address):
                raise RuntimeError(
                    f"nothing answers at {address} and TLS to {name} is configured; up starts only plaintext"
                    f" servers: start {name} with TLS yourself (README, TLS between the layers)"
                )
        if local_redis and not port_open(common.redis.address):
            self.infra.append(redis_process(common.redis.address, state / "redis", self.sink).start())
        # several endpoints: a cluster run elsewhere, never one to start here
        if len(common.etcd.endpoints) == 1 and not port_open(common.etcd.endpoint):
            self.infra.append(etcd_process(common.etcd.endpoint, state / "etcd", self.sink).start())
        for process in self.infra:
            process.wait_ready(30)

    def start_module(
        self, module: str, extra_env: dict[str, str] | None = None, name: str | None = None
    ) -> ManagedProcess:
        colour = _COLOURS[len(self.modules) % len(_COLOURS)] if self.colour else None
        env = {**self.env, **(extra_env or {})}
        process = module_process(module, self.settings, env, name, self.sink, colour).start()
        self.modules.append(process)
        return process

    def start_all(self, modules: tuple[str, ...] = MODULE_ORDER, timeout: float = 60) -> None:
        for module in modules:
            self.start_module(module)
        for process in self.modules:
            process.wait_ready(timeout)

    def stop(self) -> None:
        for process in reversed(self.modules):
            process.stop()
        for process in reversed(self.infra):
            process.stop()


def upgrade_local_database(settings: Settings) -> str | None:
    """``up`` runs the whole system on this machine, so a SQLite database is this machine's alone:
    its schema is brought to this release's before the modules start (a state folder from an older
    release keeps working with one command).  A shared database (PostgreSQL) is left to
    ``gochat-py db upgrade``.  Returns what was done, for the operator; None: nothing."""
    import asyncio

    from sqlalchemy.engine import make_url

    from gochat_py.storage.schema import upgrade

    if make_url(settings.database_url).get_backend_name() != "sqlite":
        return None
    before, after = asyncio.run(upgrade(settings.database_url))
    if after is None:
        return None
    where = make_url(settings.database_url).database
    return f"database {where}: schema revision {before.current or 'none'} -> {after.current}"


def up(settings: Settings, start_infra: bool = True) -> int:
    """Runs everything until Ctrl-C or SIGTERM (exit 0), restarting what dies; non-zero when the
    system could not start or a process kept dying (see :mod:`gochat_py.supervisor`)."""
    colour = sys.stdout.isatty()
    system = System(settings, sys.stdout, colour)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    status = 0
    supervisor: Supervisor | None = None
    try:
        if start_infra:
            system.start_infra()
        try:
            upgraded = upgrade_local_database(settings)
        except Exception as exc:  # a folder it cannot write to, a file that is no database...
            raise RuntimeError(f"cannot upgrade the database: {getattr(exc, 'orig', None) or exc}") from exc
        if upgraded:
            print(f"gochat-py: {upgraded}", flush=True)
        system.start_all()
        # the Redis and etcd it started are its own to restart; ones it found running are not
        supervisor = Supervisor(system.infra + system.modules, settings.launcher)
        host, port = split_host_port(settings.site.bind)
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"gochat-py is up: open http://{shown}:{port}  (Ctrl-C stops everything)", flush=True)
        while not stop.wait(0.5):
            reason = supervisor.check()
            if reason:
                print(f"gochat-py: {reason}", file=sys.stderr, flush=True)
                status = 1
                break
    except RuntimeError as exc:
        print(f"gochat-py: {exc}", file=sys.stderr)
        status = 1
    finally:
        print("gochat-py: stopping everything", file=sys.stderr, flush=True)
        system.stop()
        if supervisor and (restarts := supervisor.summary()):
            print(f"gochat-py: restarts while up: {restarts}", file=sys.stderr, flush=True)
    return status
