"""PNG plots from JSON summaries (matplotlib, Agg backend; ``pip install 'gochat-py[bench]'``).

- ``fanout.png``: deliveries per second against room size, gochat-py (room mode) and the floor;
- ``latency.png``: the end-to-end latency distribution of each run that has one (histogram and CDF).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

ROOM_SERIES = "gochat-py (api → logic → task → connect)"


def fanout_series(summary: dict[str, Any]) -> str:
    """The line a run belongs on: gochat-py, or the floor at its frames per write (a floor that
    writes 16 frames at once is another curve, not another point of the same one)."""
    if summary["mode"] == "room":
        return ROOM_SERIES
    batch = int(summary.get("params", {}).get("floor_batch") or 1)
    return f"floor, {batch} frame{'s' if batch > 1 else ''} per write (one process, no layers)"


def load_summaries(paths: list[Path]) -> list[dict[str, Any]]:
    summaries = []
    for path in paths:
        files = sorted(path.glob("*.json")) if path.is_dir() else [path]
        for file in files:
            data = orjson.loads(file.read_bytes())
            if isinstance(data, dict) and data.get("tool") == "gochat-py bench":
                data.setdefault("_file", file.name)
                summaries.append(data)
    return summaries


def run_label(summary: dict[str, Any]) -> str:
    if summary.get("label"):
        return str(summary["label"])
    mode = summary.get("mode")
    users = summary.get("users") or summary.get("params", {}).get("users")
    extra = f", {summary['params']['rate']:g}/s" if mode == "rate" else ""
    return f"{mode} {users} users{extra}"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_fanout(summaries: list[dict[str, Any]], out: Path) -> Path | None:
    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for s in summaries:
        if s.get("mode") in ("room", "floor") and s.get("deliveries_per_s") and s.get("sockets"):
            series[fanout_series(s)].append((int(s["sockets"]), float(s["deliveries_per_s"])))
    if not series:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for name, points in sorted(series.items()):
        points.sort()
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=name)
        for x, y in points:
            ax.annotate(f"{y / 1000:.0f}k", (x, y), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    ax.set_xlabel("websocket users in the room")
    ax.set_ylabel("deliveries per second")
    ax.set_title("Room fan-out on one 2-core machine (loopback)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "fanout.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_latency(summaries: list[dict[str, Any]], out: Path) -> Path | None:
    runs = [s for s in summaries if s.get("latency_cdf_ms") and s.get("mode") != "floor"]
    if not runs:
        return None
    plt = _pyplot()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    for s in runs:
        values = [max(v, 0.01) for v in s["latency_cdf_ms"]]
        label = f"{run_label(s)} (p99 {s['latency_ms']['p99']:.0f} ms)"
        fractions = [i / (len(values) - 1) for i in range(len(values))]
        cdf.plot(values, fractions, label=label)
        hist.hist(values, bins=40, histtype="step", label=label)  # each point is an equal share of the deliveries
    for ax in (hist, cdf):
        ax.set_xlabel("end-to-end latency, ms (push request sent → frame received)")
        ax.grid(True, alpha=0.3)
    cdf.set_xscale("log")
    cdf.set_ylabel("fraction of deliveries at or below")
    cdf.set_title("Latency CDF")
    hist.set_ylabel("share of deliveries (0.5 % per count)")
    hist.set_title("Latency distribution")
    cdf.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_summaries(summaries: list[dict[str, Any]], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = [plot_fanout(summaries, out), plot_latency(summaries, out)]
    return [path for path in made if path is not None]


def plot_files(inputs: list[Path], out: Path) -> list[Path]:
    return plot_summaries(load_summaries(inputs), out)
