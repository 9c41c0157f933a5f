"""A short run of ``gochat-py bench`` against a real system, so the benchmark never rots.

Behaviour only: the summary has its fields and nothing was lost or duplicated.  No timing is
asserted; speed is what the benchmark reports, not what a test checks.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.e2e.harness import Cluster

CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")


def run_bench(cluster: Cluster, *args: str) -> dict:
    argv = [sys.executable, "-m", "gochat_py", "bench", *args, "--api", cluster.api_url, "--ws", cluster.ws_url]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.stdout.strip(), f"no summary; stderr:\n{done.stderr[-3000:]}"
    summary = json.loads(done.stdout)
    assert done.returncode == 0, (summary.get("errors"), done.stderr[-3000:])
    return summary


def test_room_fan_out(cluster: Cluster) -> None:
    s = run_bench(cluster, "room", "--users", "20", "--messages", "20", "--concurrency", "4", "--client-procs", "2")
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
    assert s["connect"]["opened"] == 20 and s["connect"]["failed"] == 0
    assert s["connect"]["time_s"] >= 0
    names = {p["name"] for p in s["processes"]}
    assert {"logic", "connect_websocket", "task", "api"} <= names
    assert all(p["rss_kib"] > 0 and p["cpu_s"] is not None for p in s["processes"])
    assert s["source"]["commit"] is None or len(s["source"]["commit"]) == 40


def test_private_messages(cluster: Cluster) -> None:
    s = run_bench(cluster, "private", "--users", "10", "--messages", "20", "--concurrency", "8")
    assert s["ok"] is True
    assert s["deliveries"] == 20 and s["lost"] == 0 and s["duplicated"] == 0 and s["misdelivered"] == 0


def test_idle_connections(cluster: Cluster) -> None:
    s = run_bench(cluster, "idle", "--users", "10", "--sockets-per-user", "2", "--hold", "1")
    assert s["ok"] is True
    assert s["idle"]["connections"] == 20 and s["idle"]["disconnected"] == 0
    assert "rss_per_connection_kib" in s["idle"]


def test_remote_target_refused(cluster: Cluster) -> None:
    argv = [sys.executable, "-m", "gochat_py", "bench", "room", "--api", "http://192.0.2.1:7070"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "loopback" in done.stderr and done.stdout == ""
