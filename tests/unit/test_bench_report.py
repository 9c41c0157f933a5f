"""The sweep's table and the plots, from made-up summaries (matplotlib comes with the test extra)."""

from __future__ import annotations

from pathlib import Path

import orjson

from gochat_py.bench.plots import load_summaries, run_label
from gochat_py.bench.sweep import summary_table


def summary(mode: str, users: int, dps: float, **extra: object) -> dict:
    return {
        "tool": "gochat-py bench",
        "mode": mode,
        "label": f"{mode}-{users}",
        "users": users,
        "sockets": users,
        "params": {"users": users, "rate": 40.0},
        "deliveries_per_s": dps,
        "push_requests_per_s": 100.0,
        "latency_ms": {"p50": 1.0, "p99": 5.0, "max": 9.0},
        "latency_cdf_ms": [0.5 + i / 10 for i in range(201)],
        "lost": 0,
        "duplicated": 0,
        "connect": {"ready_time_s": 1.5},
        "processes": [{"name": "connect_websocket", "cpu_pct": 80.0}, {"name": "logic", "cpu_pct": 10.0}],
        "bench_processes": [{"name": "bench:client-0", "cpu_pct": 30.0}],
        "machine_busy_pct": 99.0,
        **extra,
    }


def test_load_summaries_skips_other_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_bytes(orjson.dumps(summary("room", 10, 1000.0)))
    (tmp_path / "other.json").write_bytes(b'{"x": 1}')
    loaded = load_summaries([tmp_path])
    assert [s["label"] for s in loaded] == ["room-10"]
    assert run_label({"mode": "rate", "users": 5, "params": {"rate": 40.0}}) == "rate 5 users, 40/s"


def test_summary_table() -> None:
    idle = {
        "tool": "gochat-py bench",
        "mode": "idle",
        "_name": "idle-100",
        "idle": {
            "connections": 100,
            "held_s": 5.0,
            "connect_rss_delta_kib": 1500,
            "rss_per_connection_kib": 15.0,
            "disconnected": 0,
        },
        "connect": {"ready_time_s": 2.0},
    }
    table = summary_table([summary("room", 10, 12345.6), idle])
    assert "| room-10 | 12,346 | 100 | 1.0 | 5.0 | 9.0 | 0 | 0 | 1.5 | 80 | 10 |" in table
    assert "**15.0 KiB per connection**" in table


def test_plots(tmp_path: Path) -> None:
    from gochat_py.bench.plots import plot_summaries

    runs = [summary("room", n, 1000.0 * n) for n in (10, 20)] + [summary("floor", 10, 50000.0)]
    made = plot_summaries(runs, tmp_path / "png")
    assert sorted(p.name for p in made) == ["fanout.png", "latency.png"]
    for path in made:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_floors_with_other_frames_per_write_are_other_curves() -> None:
    from gochat_py.bench.plots import ROOM_SERIES, fanout_series

    assert fanout_series({"mode": "room"}) == ROOM_SERIES
    one = fanout_series({"mode": "floor", "params": {"floor_batch": 1}})
    sixteen = fanout_series({"mode": "floor", "params": {"floor_batch": 16}})
    assert one != sixteen and "16 frames" in sixteen and "1 frame per write" in one
