"""A short run of ``gochat-py bench`` against a real system, so the benchmark never rots.

Behaviour only: the summary has its fields and nothing was lost or duplicated.  No timing is
asserted; speed is what the benchmark reports, not what a test checks.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.e2e.harness import Cluster, free_port

CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")
# Rooms over 10 members get no member list on join: the 20-user room run must confirm its sockets
# with /push/count (op 4), as against a server that sends no member lists.
CLUSTER_ENV = {"GOCHAT_LOGIC__MEMBER_LIST_AUTO_LIMIT": "10"}
SERVED = re.compile(r'msg="metrics served" address=(127\.0\.0\.1:\d+)')


@pytest.fixture(scope="module")
def metrics_urls(cluster: Cluster) -> str:
    """``--metrics`` for the cluster: the harness serves each module's metrics on any free port,
    which the module logs once at start (read while it is still among the last log lines)."""
    urls = []
    for module in CLUSTER_MODULES:
        (process,) = cluster.processes(module)
        (address,) = [m.group(1) for line in list(process.lines) if (m := SERVED.search(line))]
        urls.append(f"http://{address}/metrics")
    return ",".join(urls)  # bare URLs: the bench names each by the process listening on its port


def run_bench(cluster: Cluster, *args: str, ws: str = "") -> dict:
    argv = [sys.executable, "-m", "gochat_py", "bench", *args, "--api", cluster.api_url, "--ws", ws or cluster.ws_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip(), f"no summary; stderr:\n{done.stderr[-3000:]}"
    summary = json.loads(done.stdout)
    assert done.returncode == 0, (summary.get("errors"), done.stderr[-3000:])
    return summary


def test_room_fan_out(cluster: Cluster, metrics_urls: str) -> None:
    s = run_bench(
        cluster,
        *("room", "--users", "20", "--messages", "20", "--concurrency", "4", "--client-procs", "2"),
        *("--metrics", metrics_urls),
    )
    assert s["ok"] is True and s["errors"] == []
    assert s["expected_deliveries"] == 400
    assert s["deliveries"] == 400
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["misdelivered"] == 0
    assert s["push"]["accepted"] == 20 and s["push"]["failed"] == 0
    for key in ("deliveries_per_s", "push_requests_per_s"):
        assert s[key] > 0
    for key in ("p50", "p99", "max"):
        assert s["latency_ms"][key] is not None
    assert s["latency_ms"]["count"] == 400
    by_client = s["latency_by_client_ms"]  # 10 sockets each, every message on each
    assert [row["client"] for row in by_client] == [0, 1] and [row["count"] for row in by_client] == [200, 200]
    assert max(row["max"] for row in by_client) == s["latency_ms"]["max"]
    assert s["connect"]["opened"] == 20 and s["connect"]["failed"] == 0
    assert s["connect"]["time_s"] >= 0
    names = {p["name"] for p in s["processes"]}
    assert {"logic", "connect_websocket", "task", "api"} <= names
    assert all(p["rss_kib"] > 0 and p["cpu_s"] is not None for p in s["processes"])
    assert s["source"]["commit"] is None or len(s["source"]["commit"]) == 40
    # the system's own counters over the window say where the deliveries went
    metrics = s["metrics"]
    assert metrics["unreachable"] == []
    assert set(metrics["processes"]) == set(CLUSTER_MODULES)
    connect = metrics["processes"]["connect_websocket"]
    assert connect["frames_out"]["3"] >= s["deliveries"]
    assert connect["slow_consumers"] == 0 and connect["joins_refused"] == 0
    assert connect["connections"]["end"] >= 20
    assert metrics["processes"]["api"]["rpc"]["PushBatch"]["calls"] > 0  # the api's calls to logic
    assert metrics["processes"]["logic"]["messages_in"]["3"] >= 20
    task = metrics["processes"]["task"]
    assert task["delivered"]["3"] >= 20 and task["rpc"]["Deliver"]["calls"] > 0
    assert any("PushBatch" in line for line in metrics["explain"])


def test_private_messages(cluster: Cluster) -> None:
    s = run_bench(cluster, "private", "--users", "10", "--messages", "20", "--concurrency", "8")
    assert s["ok"] is True
    assert s["deliveries"] == 20 and s["lost"] == 0 and s["duplicated"] == 0 and s["misdelivered"] == 0


def test_idle_connections(cluster: Cluster, metrics_urls: str) -> None:
    s = run_bench(cluster, "idle", "--users", "10", "--sockets-per-user", "2", "--hold", "1", "--metrics", metrics_urls)
    assert s["ok"] is True
    assert s["idle"]["connections"] == 20 and s["idle"]["disconnected"] == 0
    assert "rss_per_connection_kib" in s["idle"]
    assert s["metrics"]["processes"]["connect_websocket"]["connections"]["end"] >= 20  # read around the hold


@pytest.mark.parametrize("mode", ["room", "private"])
def test_send_over_v2_sockets(cluster: Cluster, mode: str) -> None:
    """--send socket: every message goes out as a v2 publish (room) or send (private) on its
    sender's own socket and is answered there; every receiver is a v2 socket."""
    s = run_bench(
        cluster,
        *(mode, "--users", "12", "--messages", "24", "--concurrency", "6", "--client-procs", "2"),
        *("--send", "socket"),
    )
    assert s["ok"] is True and s["errors"] == []
    assert s["send"] == "socket" and s["protocol"] == "v2" and s["params"]["send"] == ["socket"]
    assert s["connect"]["ready"] == 12 and s["connect"]["v2_limits"]["rooms"] >= 1
    assert s["push"]["requests"] == 24 and s["push"]["accepted"] == 24 and s["push"]["failed"] == 0
    assert s["push"]["latency_ms"]["count"] == 24  # one reply per message
    expected = 24 * 12 if mode == "room" else 24
    assert s["expected_deliveries"] == expected and s["deliveries"] == expected
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["misdelivered"] == 0 and s["foreign"] == 0


def test_idle_v2_sockets_in_several_rooms(cluster: Cluster) -> None:
    s = run_bench(cluster, "idle", "--users", "6", "--sockets-per-user", "2", "--rooms-per-socket", "3", "--hold", "1")
    assert s["ok"] is True and s["errors"] == [] and s["protocol"] == "v2"
    assert s["connect"]["ready"] == 12  # every socket answered in each of its 3 rooms
    assert s["idle"]["connections"] == 12 and s["idle"]["disconnected"] == 0
    assert s["idle"]["rss_per_connection_kib"] is not None


def test_idle_over_two_connect_nodes_with_room_delivery(cluster: Cluster) -> None:
    """Sockets dealt over two websocket nodes; each node's process is found and its memory
    reported per connection; room messages pushed after the hold reach every socket on both.
    The second node pings every half second, so a client that did not answer pings would be
    dropped within the run."""
    port = free_port()
    second = cluster.start_module(
        "connect_websocket",
        name="connect_websocket_2",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{port}",
        GOCHAT_CONNECT_WEBSOCKET__RPC_BIND="127.0.0.1:0",
        GOCHAT_CONNECT_WEBSOCKET__SERVER_ID="ws-bench-second",
        GOCHAT_CONNECT__PING_INTERVAL="0.5",
        GOCHAT_CONNECT__PONG_TIMEOUT="2",
    )
    urls = [cluster.ws_url, f"ws://127.0.0.1:{port}/ws"]
    try:
        s = run_bench(
            cluster,
            *("idle", "--users", "10", "--sockets-per-user", "3", "--hold", "3", "--idle-messages", "2"),
            *("--client-procs", "2"),
            ws=",".join(urls),
        )
    finally:
        assert second.stop() == 0
    assert s["ok"] is True and s["errors"] == []
    idle = s["idle"]
    assert idle["connections"] == 30 and idle["disconnected"] == 0
    assert s["connect"]["opened_by_node"] == [15, 15]
    assert [node["url"] for node in idle["nodes"]] == urls
    assert [node["connections"] for node in idle["nodes"]] == [15, 15]
    connect_pids = {p["pid"] for p in s["processes"] if p["name"] == "connect_websocket"}
    assert len(connect_pids) == 2 and {node["pid"] for node in idle["nodes"]} == connect_pids
    assert all(node["rss_delta_kib"] is not None for node in idle["nodes"])
    assert "rss_per_connection_kib" in idle and idle["connect_processes"] == 2
    # 2 messages into each of the 10 users' rooms, each to that user's 3 sockets
    assert s["push"]["accepted"] == 20 and s["push"]["failed"] == 0
    assert s["expected_deliveries"] == 60 and s["deliveries"] == 60
    assert s["lost"] == 0 and s["duplicated"] == 0 and s["disconnected"] == 0
    assert [node["deliveries"] for node in s["ws_nodes"]] == [30, 30]


def test_remote_target_refused(cluster: Cluster) -> None:
    argv = [sys.executable, "-m", "gochat_py", "bench", "room", "--api", "http://192.0.2.1:7070"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "loopback" in done.stderr and done.stdout == ""
