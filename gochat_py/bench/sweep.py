"""``gochat-py bench sweep``: the documented set of runs, their JSON, the plots and a table.

Each run is its own ``gochat-py bench`` process (so no run inherits another's memory or
sockets), written to ``<out>/<name>.json``; then ``fanout.png``, ``latency.png`` and
``summary.md`` are made from all of them.  ``--start-system`` starts a whole gochat-py system
(as ``gochat-py up`` does) with a fresh state folder first and stops it at the end.

:func:`compare_settings` (``gochat-py bench MODE ... --history on,off``, ``--send http,socket``) runs
one scenario against a system started that way for each setting in turn, and prints the runs side
by side.
"""

from __future__ import annotations

import argparse
import itertools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from gochat_py.bench.plots import load_summaries, plot_summaries, run_label


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="docs/bench", help="folder for the JSON, PNG and summary.md (%(default)s)")
    parser.add_argument("--api", default="http://127.0.0.1:7070", help="api of the running system")
    parser.add_argument("--ws", default="ws://127.0.0.1:7000/ws", help="websocket of the running system")
    parser.add_argument("--room-sizes", default="50,100,250,500", help="room fan-out sizes (users)")
    parser.add_argument("--messages", type=int, default=1000, help="messages per fan-out run")
    parser.add_argument("--client-procs", type=int, default=2, help="client processes per run")
    parser.add_argument("--idle-connections", type=int, default=10000, help="sockets of the idle run (0: skip)")
    parser.add_argument("--quick", action="store_true", help="small sizes: a check that the sweep works")
    parser.add_argument("--only", default="", help="comma-separated run names to do (default all)")
    parser.add_argument("--start-system", action="store_true", help="start (and stop) a system for the sweep")


def plan_runs(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(name, bench arguments) of every run of the sweep."""
    sizes = [int(n) for n in args.room_sizes.split(",") if n.strip()]
    messages = args.messages
    procs = ["--client-procs", str(args.client_procs)]
    if args.quick:
        sizes, messages = [10, 20], 20
    runs: list[tuple[str, list[str]]] = []
    for n in sizes:
        common = ["--users", str(n), "--messages", str(messages), *procs]
        runs.append((f"room-{n}", ["room", *common, "--concurrency", "16"]))
        runs.append((f"floor-{n}", ["floor", *common]))
        runs.append((f"floor16-{n}", ["floor", *common, "--floor-batch", "16"]))
    users = 20 if args.quick else 500
    runs.append(
        (f"rate-{users}", ["rate", "--users", str(users), "--rate", "40", "--messages", "40" if args.quick else "400"])
    )
    runs.append(
        (
            f"private-{users}",
            ["private", "--users", str(users), "--messages", "40" if args.quick else "2000", "--concurrency", "64"],
        )
    )
    idle = 100 if args.quick else args.idle_connections
    if idle:
        per_user = 10 if idle >= 1000 else 1
        runs.append(
            (
                f"idle-{idle}",
                [
                    "idle",
                    *("--users", str(idle // per_user), "--sockets-per-user", str(per_user), *procs, "--hold", "5"),
                    *("--source-ips", "127.0.0.2,127.0.0.3"),
                ],
            )
        )
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        runs = [run for run in runs if run[0] in wanted]
    return runs


def summary_table(summaries: list[dict[str, Any]]) -> str:
    def fmt(value: Any, digits: int = 0) -> str:
        if value is None:
            return "–"
        return f"{value:,.{digits}f}" if isinstance(value, float | int) else str(value)

    def cpu(s: dict[str, Any], name: str) -> str:
        rows = [p for p in s.get("processes", []) if p["name"] == name and p.get("cpu_pct") is not None]
        return fmt(sum(p["cpu_pct"] for p in rows)) if rows else "–"

    lines = [
        "| run | deliveries/s | pushes/s | p50 ms | p99 ms | max ms | lost | dup | connect s "
        "| connect_ws CPU % | logic % | task % | api % | bench clients % | machine busy % | others % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        if s.get("mode") == "idle":
            continue
        lat = s.get("latency_ms") or {}
        clients = sum(p.get("cpu_pct") or 0 for p in s.get("bench_processes", []) if "client" in p["name"])
        lines.append(
            f"| {s.get('_name', run_label(s))} | {fmt(s.get('deliveries_per_s'))} "
            f"| {fmt(s.get('push_requests_per_s'))} "
            f"| {fmt(lat.get('p50'), 1)} | {fmt(lat.get('p99'), 1)} | {fmt(lat.get('max'), 1)} "
            f"| {fmt(s.get('lost'))} | {fmt(s.get('duplicated'))} | {fmt(s.get('connect', {}).get('ready_time_s'), 1)} "
            f"| {cpu(s, 'connect_websocket')} | {cpu(s, 'logic')} | {cpu(s, 'task')} | {cpu(s, 'api')} "
            f"| {fmt(clients)} | {fmt(s.get('machine_busy_pct'))} | {fmt(s.get('other_load_pct'))} |"
        )
    for s in summaries:
        idle = s.get("idle")
        if idle:
            lines.append("")
            lines.append(
                f"Idle ({s.get('_name')}): {idle['connections']:,} connections held {idle['held_s']} s, "
                f"connect process RSS +{idle['connect_rss_delta_kib']:,} KiB = "
                f"**{idle['rss_per_connection_kib']} KiB per connection**, "
                f"{idle['disconnected']} disconnected, connect time {s['connect']['ready_time_s']} s."
            )
    return "\n".join(lines) + "\n"


def start_system(extra_env: dict[str, str] | None = None) -> tuple[Any, str, str]:
    """A whole system of this checkout on a fresh state folder (its own Redis and etcd unless
    something answers at their addresses): the system, its api URL and its websocket URL."""
    from gochat_py.config import load_settings
    from gochat_py.launcher import System

    state = tempfile.mkdtemp(prefix="gochat-bench-")
    env = {"GOCHAT_STATE_DIR": state, **(extra_env or {})}
    settings = load_settings(environ={**os.environ, **env})
    log = open(Path(state) / "system.log", "a", buffering=1)  # noqa: SIM115 - closed with the system
    system = System(settings, sink=log, env=env)
    try:
        system.start_infra()
        system.start_all()
    except BaseException:
        system.stop()
        raise
    print(f"bench: started a system (state {state}, {' '.join(f'{k}={v}' for k, v in env.items())})", file=sys.stderr)
    return (
        system,
        f"http://{settings.api.bind}",
        f"ws://{settings.connect_websocket.bind}{settings.connect_websocket.path}",
    )


def _start_system(args: argparse.Namespace) -> Any:
    system, args.api, args.ws = start_system()
    return system


def run_sweep(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    system = _start_system(args) if args.start_system else None
    status = 0
    try:
        for name, bench_args in plan_runs(args):
            target = out / f"{name}.json"
            argv = [sys.executable, "-m", "gochat_py.bench", *bench_args, "--api", args.api, "--ws", args.ws]
            argv += ["--label", name, "--output", str(target)]
            print(f"bench sweep: {name}: {' '.join(argv[3:])}", file=sys.stderr, flush=True)
            started = time.monotonic()
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, timeout=900, check=False)
            if done.returncode != 0:
                status = 1
            if target.exists():
                s = orjson.loads(target.read_bytes())
                print(
                    f"bench sweep: {name}: ok={s.get('ok')} deliveries/s={s.get('deliveries_per_s')} "
                    f"p99={(s.get('latency_ms') or {}).get('p99')} ms ({time.monotonic() - started:.0f} s)",
                    file=sys.stderr,
                    flush=True,
                )
            time.sleep(2)  # let the system settle (leaves, member-list broadcasts) between runs
    finally:
        if system is not None:
            system.stop()
    summaries = load_summaries([out])
    order = {name: i for i, (name, _) in enumerate(plan_runs(args))}
    for s in summaries:
        s["_name"] = s.get("label") or s["_file"]
    summaries.sort(key=lambda s: order.get(s["_name"], len(order)))
    for path in plot_summaries(summaries, out):
        print(path)
    (out / "summary.md").write_text(summary_table(summaries))
    print(out / "summary.md")
    return status


# ---------------------------------------------------------------------- --history on,off, --send http,socket

HISTORY_ENV = {"on": "true", "off": "false"}
# (numerator, denominator) of the ratio reported when an option is compared alone
RATIOS = {"history": ("on", "off"), "send": ("socket", "http")}


def compared(opts: Any) -> dict[str, list[str]]:
    """The options whose settings are compared side by side: ``--history`` (any), ``--send``
    (several)."""
    axes = {}
    if opts.history:
        axes["history"] = list(opts.history)
    if len(opts.send) > 1:
        axes["send"] = list(opts.send)
    return axes


def compare_row(variant: dict[str, str], round_: int, s: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run that the side-by-side shows."""
    lat = s.get("latency_ms") or {}
    load = s.get("load_average_before") or [None]
    return {
        **variant,
        "round": round_,
        "ok": s.get("ok"),
        "deliveries_per_s": s.get("deliveries_per_s"),
        "push_requests_per_s": s.get("push_requests_per_s"),
        "p50_ms": lat.get("p50"),
        "p99_ms": lat.get("p99"),
        "max_ms": lat.get("max"),
        "push_p99_ms": ((s.get("push") or {}).get("latency_ms") or {}).get("p99"),
        "lost": s.get("lost"),
        "duplicated": s.get("duplicated"),
        "gochat_cpu_us_per_delivery": (s.get("cpu_us_per_delivery") or {}).get("gochat_total"),
        "other_load_pct": s.get("other_load_pct"),
        "load_1m": load[0],
    }


def _median(values: list[Any]) -> float | None:
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def compare_table(rows: list[dict[str, Any]], axes: list[str]) -> dict[str, Any]:
    """Medians per setting and, for one option compared alone, the ratio of its two settings
    (history on ÷ off, send socket ÷ http; throughput 0.85 is 15 % less)."""
    keys = ("deliveries_per_s", "p50_ms", "p99_ms", "gochat_cpu_us_per_delivery")

    def setting(row: dict[str, Any]) -> str:
        return ",".join(row[axis] for axis in axes)

    medians = {
        name: {key: _median([r[key] for r in rows if setting(r) == name]) for key in keys}
        for name in dict.fromkeys(setting(r) for r in rows)
    }
    out: dict[str, Any] = {"median": medians}
    if len(axes) == 1:
        top, bottom = RATIOS[axes[0]]
        if top in medians and bottom in medians:
            out[f"{top}_over_{bottom}"] = {
                key: round(medians[top][key] / medians[bottom][key], 3)
                if medians[top][key] and medians[bottom][key]
                else None
                for key in keys
            }
    return out


def compare_markdown(rows: list[dict[str, Any]], axes: list[str]) -> str:
    lines = [
        f"| {' | '.join(axes)} | round | deliveries/s | p50 ms | p99 ms | max ms | lost | dup "
        "| gochat CPU µs/deliv. | others % | load 1m |",
        "|" + "---|" * len(axes) + "---:|" * 10,
    ]
    for r in rows:
        cells = [*(r[axis] for axis in axes), r["round"], r["deliveries_per_s"], r["p50_ms"], r["p99_ms"]]
        cells += [r["max_ms"], r["lost"], r["duplicated"], r["gochat_cpu_us_per_delivery"], r["other_load_pct"]]
        cells.append(r["load_1m"])
        lines.append(
            "| "
            + " | ".join("–" if c is None else f"{c:,}" if isinstance(c, int | float) else str(c) for c in cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def compare_settings(opts: Any) -> int:
    """Runs ``opts``' scenario ``opts.repeat`` times for each combination of the compared
    settings in turn (on, off, on, off, ...), each against a system of this checkout started for
    it on a fresh state folder; prints one JSON with the runs side by side, their medians and the
    ratio.  ``--output FILE`` also keeps it, and every run's own summary next to it as
    ``FILE-<setting>-<round>.json``."""
    from dataclasses import replace

    from gochat_py.bench.coordinator import run_to_summary
    from gochat_py.bench.scenarios import run_bench

    axes = compared(opts)
    variants = [dict(zip(axes, values, strict=True)) for values in itertools.product(*axes.values())]
    output = Path(opts.output) if opts.output else None
    rows: list[dict[str, Any]] = []
    status = 0
    for round_ in range(1, opts.repeat + 1):
        for variant in variants:
            env = {"GOCHAT_HISTORY__ENABLED": HISTORY_ENV[variant["history"]]} if "history" in variant else {}
            system, api, ws = start_system(env)
            name = "-".join(variant.values())
            try:
                target = "" if output is None else str(output.with_name(f"{output.stem}-{name}-{round_}.json"))
                label = f"{opts.label or opts.mode} {' '.join(f'{k} {v}' for k, v in variant.items())} #{round_}"
                send = [variant.get("send", opts.send[0])]
                run = replace(
                    opts, api=api, ws=ws, ws_urls=[ws], history=[], send=send, output=target, label=label, plot=""
                )
                summary, _ = run_to_summary(run_bench(run), target)
            finally:
                system.stop()
            status |= 0 if summary.get("ok") else 1
            rows.append(compare_row(variant, round_, summary))
            print(f"bench: {label}: {rows[-1]}", file=sys.stderr, flush=True)
            time.sleep(2)
    result = {
        "tool": f"gochat-py bench {' '.join(axes)}",
        "mode": opts.mode,
        "label": opts.label,
        "params": {
            k: getattr(opts, k)
            for k in ("users", "messages", "concurrency", "client_procs", "join_since", "protocol", "sockets_per_user")
        },
        "runs": rows,
        **compare_table(rows, list(axes)),
    }
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text + "\n")
    print(compare_markdown(rows, list(axes)), file=sys.stderr)
    print(text, flush=True)
    return status
