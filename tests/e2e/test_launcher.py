"""The command line as a person uses it: ``gochat-py up`` and ``gochat-py --module``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from gochat_py.launcher import port_open
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, free_port, op_is

UP_BANNER = "gochat-py is up: open http://127.0.0.1:"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _start_up(
    tmp_path: Path, **extra_env: str
) -> tuple[subprocess.Popen[str], dict[str, int], list[str], threading.Thread]:
    ports = {name: free_port() for name in ("api", "ws", "tcp1", "tcp2", "site", "redis")}
    ports["etcd"] = free_port(span=2)  # etcd's peer listener takes etcd + 1
    env = {
        **os.environ,
        "GOCHAT_STATE_DIR": str(tmp_path / "state"),
        "GOCHAT_REDIS__ADDRESS": f"127.0.0.1:{ports['redis']}",
        "GOCHAT_ETCD__ENDPOINT": f"127.0.0.1:{ports['etcd']}",
        "GOCHAT_LOGIC__RPC_BIND": "127.0.0.1:0",
        "GOCHAT_CONNECT_WEBSOCKET__RPC_BIND": "127.0.0.1:0",
        "GOCHAT_CONNECT_WEBSOCKET__BIND": f"127.0.0.1:{ports['ws']}",
        "GOCHAT_CONNECT_TCP__BIND": f"127.0.0.1:{ports['tcp1']},127.0.0.1:{ports['tcp2']}",
        "GOCHAT_CONNECT_TCP__RPC_BIND": "127.0.0.1:0",
        "GOCHAT_API__BIND": f"127.0.0.1:{ports['api']}",
        "GOCHAT_SITE__BIND": f"127.0.0.1:{ports['site']}",
        "GOCHAT_LOGIC__PASSWORD_TIME_COST": "1",
        **{f"GOCHAT_METRICS__{m}": "127.0.0.1:0" for m in ("LOGIC", "API", "CONNECT_WEBSOCKET", "CONNECT_TCP", "TASK")},
        "GOCHAT_LOGIC__PASSWORD_MEMORY_KIB": "8192",
        **extra_env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gochat_py", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def drain() -> None:  # keeps reading so the launcher never blocks on a full pipe
        assert proc.stdout
        for line in proc.stdout:
            lines.append(line)

    drainer = threading.Thread(target=drain, daemon=True)
    drainer.start()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and proc.poll() is None:
        if any(UP_BANNER in line for line in lines):
            return proc, ports, lines, drainer
        time.sleep(0.05)
    proc.kill()
    pytest.fail("gochat-py up did not come up:\n" + "".join(lines[-60:]))


def _finish(proc: subprocess.Popen[str], lines: list[str], drainer: threading.Thread) -> str:
    proc.wait(timeout=60)
    drainer.join(30)  # it has read the last lines once the pipe ends (every child has exited)
    assert not drainer.is_alive(), "the launcher's output did not end"
    return "".join(lines)


def test_up_starts_everything_and_sigterm_stops_everything(tmp_path: Path) -> None:
    proc, ports, lines, drainer = _start_up(tmp_path)
    try:
        children = _children(proc.pid)
        # six modules plus the Redis and etcd it had to start (none was reachable)
        assert len(children) == 8, children
        reply = _post(f"http://127.0.0.1:{ports['api']}/user/register", {"userName": "upuser", "passWord": "pw"})
        assert reply["code"] == 0 and len(reply["data"]) == 44
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['site']}/", timeout=10) as page:
            assert b"<html" in page.read().lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['site']}/config.json", timeout=10) as config:
            assert set(json.loads(config.read())) == {"apiUrl", "wsUrl", "wsUrls"}
        assert (tmp_path / "state" / "gochat.sqlite3").exists()
        assert (tmp_path / "state" / "redis" / "appendonlydir").is_dir()  # append-only file on
    finally:
        proc.send_signal(signal.SIGTERM)
        output = _finish(proc, lines, drainer)
    assert proc.returncode == 0, output[-3000:]
    assert not [pid for pid in children if _alive(pid)]
    assert "msg=stopped" in output


def test_up_reuses_a_redis_and_an_etcd_that_already_run(infra: Infra, tmp_path: Path) -> None:
    """README: `gochat-py up` starts Redis and etcd only when none answers; the ones it found it
    uses, and leaves running when it stops."""
    db, base = 13, f"/gochat_up_reuse_{os.getpid()}"
    running = redis.Redis.from_url(f"redis://{infra.redis_address}/{db}")
    running.flushdb()
    proc, ports, lines, drainer = _start_up(
        tmp_path,
        GOCHAT_REDIS__ADDRESS=infra.redis_address,
        GOCHAT_REDIS__DB=str(db),
        GOCHAT_ETCD__ENDPOINT=infra.etcd_address,
        GOCHAT_ETCD__BASE_PATH=base,
    )
    try:
        children = _children(proc.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_text() for pid in children]
        assert len(children) == 6, commands  # the six modules, nothing else
        assert all("--module" in command for command in commands), commands
        reply = _post(f"http://127.0.0.1:{ports['api']}/user/register", {"userName": "reuser", "passWord": "pw"})
        assert reply["code"] == 0, reply
        assert running.exists(f"sess_{reply['data']}")  # the session is in the Redis that was running
        assert not (tmp_path / "state" / "redis").exists()
        assert not (tmp_path / "state" / "etcd").exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        output = _finish(proc, lines, drainer)
    assert proc.returncode == 0, output[-3000:]
    assert f"key={base}/LogicRpc/" in output  # registered in the etcd that was running
    assert infra.redis.running() and infra.etcd.running()  # and both still run
    assert running.ping()
    running.flushdb()


def _task_pid(launcher: int) -> int | None:
    for pid in _children(launcher):
        with contextlib.suppress(OSError):
            if "--module\x00task" in Path(f"/proc/{pid}/cmdline").read_text():
                return pid
    return None


def _wait_for_line(lines: list[str], text: str, proc: subprocess.Popen[str], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = next((line for line in list(lines) if text in line), None)
        if found:
            return found
        assert proc.poll() is None, "gochat-py up exited:\n" + "".join(lines[-60:])
        time.sleep(0.05)
    pytest.fail(f"no line {text!r} within {timeout} s:\n" + "".join(lines[-60:]))


def _restarted_pid(lines: list[str], proc: subprocess.Popen[str], restart: int, name: str = "task") -> int:
    line = _wait_for_line(lines, f"(restart {restart} of {name} since up started)", proc)
    match = re.search(rf"{name} restarted, pid (\d+)", line)
    assert match, line
    return int(match.group(1))


async def _room_message_arrives(api_url: str, ws_url: str, user: str) -> None:
    async with ApiClient(api_url) as api:
        token = await api.register(user)
        ws = await WsClient(ws_url).join(token, 1)
        try:
            reply = await api.post("/push/pushRoom", {"authToken": token, "msg": "after the restart", "roomId": 1})
            assert reply["code"] == 0, reply
            await ws.next_frame(op_is(3, msg="after the restart"), timeout=60)
        finally:
            await ws.close()


def test_up_restarts_a_module_that_dies(tmp_path: Path) -> None:
    """README: a module that dies is restarted, with a line saying so; the system works on, and
    SIGTERM still stops everything, the restarted module too."""
    proc, ports, lines, drainer = _start_up(tmp_path)
    try:
        task = _task_pid(proc.pid)
        assert task
        os.kill(task, signal.SIGKILL)
        _wait_for_line(lines, "task died (killed by SIGKILL)", proc)
        new_task = _restarted_pid(lines, proc, 1)
        assert new_task != task and new_task in _children(proc.pid)
        urls = f"http://127.0.0.1:{ports['api']}", f"ws://127.0.0.1:{ports['ws']}/ws"
        asyncio.run(_room_message_arrives(*urls, "after_task"))
        # the Redis it started itself is restarted too (its append-only file keeps the data)
        redis_pid = next(
            pid for pid in _children(proc.pid) if "redis-server" in Path(f"/proc/{pid}/cmdline").read_text()
        )
        os.kill(redis_pid, signal.SIGKILL)
        new_redis = _restarted_pid(lines, proc, 1, "redis")
        assert new_redis != redis_pid
        deadline = time.monotonic() + 30
        while not port_open(f"127.0.0.1:{ports['redis']}") and time.monotonic() < deadline:
            time.sleep(0.05)
        asyncio.run(_room_message_arrives(*urls, "after_redis"))
        children = _children(proc.pid)
        assert len(children) == 8, children
    finally:
        proc.send_signal(signal.SIGTERM)
        output = _finish(proc, lines, drainer)
    assert proc.returncode == 0, output[-3000:]
    assert "restarting it in 0.5 s (attempt 1)" in output
    assert "gochat-py: restarts while up: redis 1, task 1" in output
    assert not [pid for pid in children if _alive(pid)]


def test_up_stops_everything_when_a_module_keeps_dying(tmp_path: Path) -> None:
    proc, _ports, lines, drainer = _start_up(tmp_path, GOCHAT_LAUNCHER__RESTART_LIMIT="2")
    try:
        children = _children(proc.pid)
        task = _task_pid(proc.pid)
        assert task
        os.kill(task, signal.SIGKILL)
        new_task = _restarted_pid(lines, proc, 1)
        children.append(new_task)
        os.kill(new_task, signal.SIGKILL)
        output = _finish(proc, lines, drainer)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, output[-3000:]
    assert (
        "gochat-py: task keeps dying: 2 deaths within 60 s ([launcher] restart_limit = 2), the last killed by SIGKILL"
        in output
    )
    assert "gochat-py: stopping everything" in output
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)]


def test_a_cluster_that_fails_to_start_leaves_no_module_running(infra: Infra, tmp_path: Path) -> None:
    """A module that cannot start stops its siblings: left running, a task would consume the
    queue of a later cluster that reuses the Redis database (CI lost messages that way)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", free_port()))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = Cluster(infra, tmp_path, GOCHAT_API__BIND=f"127.0.0.1:{port}")
        with pytest.raises(RuntimeError, match="api exited"):
            cluster.start()
    started = [p.name for p in cluster.system.modules]
    assert "logic" in started and "task" in started, started
    assert not [p.name for p in cluster.system.modules if p.running()]
