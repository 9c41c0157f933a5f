"""A short ``gochat-py bench soak`` against a real system (websocket and TCP, churn), so the soak
never rots and every run of the suite checks that nothing is lost or duplicated while users come
and go.  The recorded 10-minute run is in docs/soak.md.

Behaviour only: the summary has its fields, nothing expected was lost, nothing came twice.  No
timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import Cluster

CLUSTER_MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")


@pytest.mark.parametrize("resume", [False, True], ids=["plain", "resume"])
def test_soak_with_churn(cluster: Cluster, resume: bool) -> None:
    """With ``--resume`` the users rejoin with ``since``, and what was sent while they were away
    counts as expected."""
    tcp = ",".join(f"127.0.0.1:{port}" for port in cluster.tcp_ports)
    argv = [
        sys.executable, "-m", "gochat_py", "bench", "soak",
        "--api", cluster.api_url, "--ws", cluster.ws_url, "--tcp", tcp,
        "--users", "20", "--rooms", "3", "--duration", "12", "--rate", "15", "--private-share", "0.3",
        "--churn-interval", "4", "--min-lifetime", "1", "--reconnect-delay", "0.2,1", "--switch-transport", "0.2",
        "--grace", "1", "--sample-interval", "2", "--drain-quiet", "2", "--no-progress",
        *(["--resume"] if resume else []),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=240, check=False)
    assert done.stdout.strip(), f"no summary; stderr:\n{done.stderr[-3000:]}"
    s = json.loads(done.stdout)
    assert done.returncode in (0, 1), done.stderr[-3000:]
    context = {k: s.get(k) for k in ("errors", "lost_samples", "duplicate_samples", "reorder_samples", "churn")}
    assert not s.get("aborted"), context

    assert s["lost"] == 0, context
    assert s["duplicated"] == 0, context
    assert s["misdelivered"] == 0, context

    for key in ("sent", "expected", "delivered", "delivered_expected", "reordered", "latency_ms", "churn"):
        assert key in s, key
    assert s["sent"]["total"] > 0 and s["sent"]["room"] > 0 and s["sent"]["private"] > 0
    assert s["sent"]["failed"] == 0, context
    assert s["expected"] > 0 and s["delivered_expected"] == s["expected"]
    assert s["delivered"] >= s["expected"]
    assert isinstance(s["reordered"], int)
    for key in ("p50", "p99", "max"):
        assert s["latency_ms"][key] is not None
    churn = s["churn"]
    assert churn["rejoins"] > 0 and churn["planned_closes"] > 0
    assert churn["connections"] > 20
    assert set(churn["by_transport"]) == {"ws", "tcp"}
    names = {p["name"] for p in s["processes"]}
    assert set(CLUSTER_MODULES) <= names
    for row in s["processes"]:
        assert row["alive_at_end"], row
        for key in ("rss_kib_start", "rss_kib_end", "cpu_s"):
            assert row[key] is not None, row
    assert s["rss_samples"]["t_s"] and s["rss_samples"]["kib"]
    if resume:
        figures = s["resume"]
        assert figures["rejoins_with_since"] > 0, figures
        assert churn["room_changes"] == 0
        assert s["reordered"] == 0, context
        for key in ("gaps", "missed_per_rejoin", "missed_total", "catch_up_ms", "catch_up_after_confirm_ms"):
            assert key in figures, key
    else:
        assert "resume" not in s
