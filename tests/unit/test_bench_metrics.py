"""The benchmark's reading of the system's Prometheus metrics: parse and diff on literal text.

The exposition texts below are what ``prometheus_client`` writes for ``gochat_py/metrics.py``
(``_created`` series included, as the real processes serve them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gochat_py import metrics
from gochat_py.bench import metrics_scrape as ms
from gochat_py.bench.cli import build_parser
from gochat_py.bench.options import TargetError, options_from_args

BUCKETS = ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0")


def rpc_lines(method: str, counts: list[int], total: float) -> str:
    """A gochat_rpc_seconds series: ``counts`` per bucket (not cumulative), the rest in +Inf."""
    lines, cumulative = [], 0
    for bound, n in zip(BUCKETS, counts + [0] * len(BUCKETS), strict=False):
        cumulative += n
        lines.append(f'gochat_rpc_seconds_bucket{{le="{bound}",method="{method}"}} {cumulative}.0')
    lines.append(f'gochat_rpc_seconds_bucket{{le="+Inf",method="{method}"}} {cumulative}.0')
    lines.append(f'gochat_rpc_seconds_count{{method="{method}"}} {cumulative}.0')
    lines.append(f'gochat_rpc_seconds_sum{{method="{method}"}} {total}')
    return "\n".join(lines)


def exposition(
    *,
    connections: int = 0,
    joins: int = 0,
    frames: dict[str, int] | None = None,
    slow: int = 0,
    messages_in: dict[str, int] | None = None,
    delivered: dict[str, int] | None = None,
    pending: int = 0,
    lag: int = 0,
    rpc: str = "",
) -> str:
    def by_op(name: str, ops: dict[str, int] | None) -> str:
        return "\n".join(f'{name}_total{{op="{op}"}} {n}.0' for op, n in (ops or {}).items())

    return f"""# HELP gochat_connections client sockets joined on this connect node
# TYPE gochat_connections gauge
gochat_connections {connections}.0
# HELP gochat_joins_total joins accepted by this connect node
# TYPE gochat_joins_total counter
gochat_joins_total {joins}.0
# HELP gochat_joins_created joins accepted by this connect node
# TYPE gochat_joins_created gauge
gochat_joins_created 1.7957864622932062e+09
# HELP gochat_joins_refused_total joins refused (bad token, logic unreachable)
# TYPE gochat_joins_refused_total counter
gochat_joins_refused_total 0.0
# HELP gochat_frames_out_total frames written to client sockets, by op
# TYPE gochat_frames_out_total counter
{by_op("gochat_frames_out", frames)}
# HELP gochat_slow_consumers_total sockets closed because their send buffer was full
# TYPE gochat_slow_consumers_total counter
gochat_slow_consumers_total {slow}.0
# HELP gochat_messages_in_total messages accepted onto the queue, by op
# TYPE gochat_messages_in_total counter
{by_op("gochat_messages_in", messages_in)}
# HELP gochat_queue_delivered_total queue entries delivered by task, by op
# TYPE gochat_queue_delivered_total counter
{by_op("gochat_queue_delivered", delivered)}
# HELP gochat_queue_pending entries read by task but not acknowledged
# TYPE gochat_queue_pending gauge
gochat_queue_pending {pending}.0
# HELP gochat_queue_lag entries in the queue no task has read yet
# TYPE gochat_queue_lag gauge
gochat_queue_lag {lag}.0
# HELP gochat_rpc_seconds duration of gRPC calls made by this process, by method
# TYPE gochat_rpc_seconds histogram
{rpc}
# HELP gochat_rpc_seconds_created duration of gRPC calls made by this process, by method
# TYPE gochat_rpc_seconds_created gauge
gochat_rpc_seconds_created{{method="Connect"}} 1.7957864622933817e+09
"""


def test_parse_counters_gauges_histograms() -> None:
    text = exposition(
        connections=20, joins=21, frames={"3": 400, "5": 20}, rpc=rpc_lines("Connect", [0, 5, 10, 6], 0.05)
    )
    scrape = ms.parse(text)
    assert scrape.gauges["gochat_connections"] == {(): 20.0}
    assert scrape.counters["gochat_joins"] == {(): 21.0}
    assert scrape.counters["gochat_frames_out"] == {(("op", "3"),): 400.0, (("op", "5"),): 20.0}
    assert scrape.counters["gochat_messages_in"] == {}  # declared, never counted
    assert not any(name.endswith("_created") for name in scrape.gauges)  # start times, not amounts
    (hist,) = scrape.histograms["gochat_rpc_seconds"].values()
    assert list(scrape.histograms["gochat_rpc_seconds"]) == [(("method", "Connect"),)]
    assert hist.count == 21 and hist.sum == 0.05
    assert hist.buckets[0] == (0.0005, 0.0) and hist.buckets[3] == (0.005, 21.0)
    assert hist.buckets[-1][0] == float("inf") and len(hist.buckets) == 14


def test_parse_refuses_other_text() -> None:
    with pytest.raises(ValueError):
        ms.parse("<html>not metrics</html>\n")


def test_diff_counters_and_new_series() -> None:
    before = ms.parse(exposition(joins=20, frames={"5": 20}, messages_in={"3": 7}))
    after = ms.parse(exposition(joins=20, frames={"3": 400, "5": 25}, messages_in={"3": 27}))
    delta = ms.diff(before, after)
    assert delta.counters["gochat_joins"] == {(): 0.0}
    assert delta.counters["gochat_frames_out"] == {(("op", "3"),): 400.0, (("op", "5"),): 5.0}  # op 3 is new
    assert delta.counters["gochat_messages_in"] == {(("op", "3"),): 20.0}
    assert delta.reset is False


def test_diff_counter_that_went_back_counts_from_the_restart() -> None:
    delta = ms.diff(ms.parse(exposition(joins=500)), ms.parse(exposition(joins=3)))
    assert delta.counters["gochat_joins"] == {(): 3.0}
    assert delta.reset is True


def test_diff_histogram_buckets_and_quantiles() -> None:
    # before: 10 calls under 1 ms; after: 50 more in (1, 2.5] ms and 50 more in (5, 10] ms
    before = ms.parse(exposition(rpc=rpc_lines("PushBatch", [0, 10], 0.008)))
    after = ms.parse(exposition(rpc=rpc_lines("PushBatch", [0, 10, 50, 0, 50], 0.008 + 0.4)))
    (hist,) = ms.diff(before, after).histograms["gochat_rpc_seconds"].values()
    assert hist.count == 100 and hist.sum == pytest.approx(0.4)
    assert dict(hist.buckets)[0.001] == 0 and dict(hist.buckets)[0.0025] == 50 and dict(hist.buckets)[0.01] == 100
    assert ms.quantile(hist, 0.5) == pytest.approx(0.0025)  # the 50th call ends the (1, 2.5] ms bucket
    assert ms.quantile(hist, 0.25) == pytest.approx(0.00175)  # half-way through it
    assert ms.quantile(hist, 0.99) == pytest.approx(0.005 + 0.005 * 49 / 50)


def test_quantile_in_the_open_bucket_and_of_nothing() -> None:
    # every call slower than the last finite bound: the bound is all that can be said
    assert ms.quantile(ms.Histogram(((0.5, 0.0), (float("inf"), 4.0)), 4, 40.0), 0.99) == 0.5
    assert ms.quantile(ms.Histogram(((0.5, 0.0), (float("inf"), 0.0)), 0, 0.0), 0.5) is None


def test_diff_gauges_end_and_peak() -> None:
    before = ms.parse(exposition(lag=0, pending=2))
    during = [ms.parse(exposition(lag=40, pending=64)), ms.parse(exposition(lag=7, pending=90))]
    after = ms.parse(exposition(lag=0, pending=1))
    delta = ms.diff(before, after, during)
    assert delta.gauges["gochat_queue_lag"] == {(): (0.0, 40.0)}
    assert delta.gauges["gochat_queue_pending"] == {(): (1.0, 90.0)}
    assert ms.diff(before, after).gauges["gochat_queue_pending"] == {(): (1.0, 2.0)}  # no samples: ends only


def room_run() -> dict[str, ms.Delta]:
    """The four processes of a room run of 20 pushes into a room of 20 sockets."""
    return {
        "api": ms.diff(
            ms.parse(exposition(rpc=rpc_lines("Register", [0, 0, 0, 0, 0, 20], 0.4))),
            ms.parse(
                exposition(
                    rpc=rpc_lines("Register", [0, 0, 0, 0, 0, 20], 0.4)
                    + "\n"
                    + rpc_lines("PushBatch", [0, 0, 4, 8], 0.036)
                )
            ),
        ),
        "logic": ms.diff(ms.parse(exposition()), ms.parse(exposition(messages_in={"3": 20}))),
        "task": ms.diff(
            ms.parse(exposition()),
            ms.parse(exposition(delivered={"3": 20}, rpc=rpc_lines("Deliver", [0, 10, 2], 0.012))),
            [ms.parse(exposition(lag=3, pending=5))],
        ),
        "connect_websocket": ms.diff(
            ms.parse(exposition(connections=20, joins=20, frames={"5": 210})),
            ms.parse(
                exposition(
                    connections=20,
                    joins=20,
                    frames={"3": 400, "5": 210},
                    rpc=rpc_lines("Connect", [0, 20], 0.015),
                )
            ),
        ),
    }


def test_process_sections_show_each_role() -> None:
    sections = {name: ms.process_section(name, delta) for name, delta in room_run().items()}
    api = sections["api"]
    assert list(api) == ["rpc"]  # Register happened before the window: not there
    assert api["rpc"]["PushBatch"]["calls"] == 12
    assert api["rpc"]["PushBatch"]["mean_ms"] == 3.0
    assert 2.5 <= api["rpc"]["PushBatch"]["p50_ms"] <= 5.0 and 2.5 <= api["rpc"]["PushBatch"]["p99_ms"] <= 5.0
    assert sections["logic"] == {"messages_in": {"3": 20}}
    task = sections["task"]
    assert task["delivered"] == {"3": 20} and task["rpc"]["Deliver"]["calls"] == 12
    assert task["queue_lag"] == {"end": 0, "max": 3} and task["queue_pending"] == {"end": 0, "max": 5}
    connect = sections["connect_websocket"]
    assert connect["frames_out"] == {"3": 400}  # the op-5 lists went out before the window
    assert connect["joins"] == 0 and connect["slow_consumers"] == 0 and connect["joins_refused"] == 0
    assert connect["connections"] == {"end": 20, "max": 20}
    assert "connections" not in api and "queue_lag" not in connect


def test_role_from_content_when_the_name_says_nothing() -> None:
    section = ms.process_section("127.0.0.1:41000", room_run()["connect_websocket"])
    assert section["frames_out"] == {"3": 400} and section["slow_consumers"] == 0


def test_other_histograms_are_reported_as_waits() -> None:
    extra = """# HELP gochat_admission_wait_seconds time logic held pushes back
# TYPE gochat_admission_wait_seconds histogram
gochat_admission_wait_seconds_bucket{le="0.01"} COUNT
gochat_admission_wait_seconds_bucket{le="+Inf"} COUNT
gochat_admission_wait_seconds_count COUNT
gochat_admission_wait_seconds_sum SUM
"""
    before = ms.parse(exposition() + extra.replace("COUNT", "0.0").replace("SUM", "0.0"))
    after = ms.parse(exposition(messages_in={"3": 8}) + extra.replace("COUNT", "8.0").replace("SUM", "0.04"))
    section = ms.process_section("logic", ms.diff(before, after))
    assert section["waits"]["admission_wait"]["calls"] == 8
    assert section["waits"]["admission_wait"]["mean_ms"] == 5.0
    assert any(line.startswith("logic admission_wait: 8 times") for line in ms.explain({"logic": section}))


def test_explain_lines() -> None:
    sections = {name: ms.process_section(name, delta) for name, delta in room_run().items()}
    unreachable = [{"url": "http://127.0.0.1:9172/metrics", "error": "cannot connect: Connection refused"}]
    lines = ms.explain(sections, unreachable)
    assert lines[0].startswith("api → logic PushBatch: 12 calls, mean 3.0 ms, p99 ≈ ")  # most time first
    assert any(line.startswith("connect_websocket → logic Connect: 20 calls") for line in lines)
    assert any(line.startswith("task → connect Deliver: 12 calls, mean 1.0 ms") for line in lines)
    assert "logic: 20 messages queued (room 20)" in lines
    assert any(
        line.startswith("task: 20 queue entries delivered (room 20); backlog at most 3 unread") for line in lines
    )
    assert any(line.startswith("connect_websocket: 400 frames out (room 400), 0 joins") for line in lines)
    assert lines[-1] == "not scraped: http://127.0.0.1:9172/metrics (cannot connect: Connection refused)"


def test_family_names_match_the_processes_registry() -> None:
    served = {family.name for family in text_string_to_metric_families(generate_latest(metrics.REGISTRY).decode())}
    assert set(ms.FAMILIES) <= served


def test_targets() -> None:
    targets = ms.parse_targets(["logic=http://127.0.0.1:41000/metrics", "127.0.0.1:9170", " ", "http://[::1]:9/m"])
    assert targets == [
        ms.Target("http://127.0.0.1:41000/metrics", "logic"),
        ms.Target("http://127.0.0.1:9170/metrics"),
        ms.Target("http://[::1]:9/m"),
    ]
    assert targets[0].port == 41000
    for bad in ("http://10.0.0.1:9169/metrics", "logic=http://example.com/metrics", "https://127.0.0.1:9169/"):
        with pytest.raises(TargetError):
            ms.parse_targets([bad])


def test_defaults_come_from_the_config() -> None:
    assert ms.default_entries() == [f"http://127.0.0.1:{port}/metrics" for port in range(9169, 9174)]
    assert ms.default_names()[9171] == "connect_websocket"


def test_options() -> None:
    parser = build_parser()
    opts = options_from_args(parser.parse_args(["room"]))
    assert opts.metrics == ms.default_entries()
    assert options_from_args(parser.parse_args(["room", "--no-metrics"])).metrics == []
    given = options_from_args(parser.parse_args(["room", "--metrics", "api=http://127.0.0.1:1234/metrics,127.0.0.1:5"]))
    assert given.metrics == ["api=http://127.0.0.1:1234/metrics", "127.0.0.1:5"]
    with pytest.raises(TargetError):
        options_from_args(parser.parse_args(["room", "--metrics", "http://192.0.2.1:9169/metrics"]))


def fake_listener(proc: Path, pid: int, module: str, ppid: int, port: int, inode: int) -> str:
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "cmdline").write_bytes(b"\0".join(x.encode() for x in ["python3", "-m", "gochat_py", "--module", module]))
    (d / "stat").write_text(f"{pid} (python3) S {ppid} " + " ".join(["0"] * 40) + "\n")
    os.symlink(f"socket:[{inode}]", d / "fd" / "7")
    return f"   0: 0100007F:{port:04X} 00000000:0000 0A 00000000:00000000 00:00000000 00000000 0 0 {inode} 1\n"


def test_targets_named_by_the_process_on_their_port(tmp_path: Path) -> None:
    (tmp_path / "net").mkdir()
    rows = fake_listener(tmp_path, 30, "connect_websocket", 100, 41000, 777)
    rows += fake_listener(tmp_path, 40, "logic", 200, 9169, 778)  # another system's logic
    header = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    (tmp_path / "net" / "tcp").write_text(header + rows)
    targets = ms.parse_targets(
        ["127.0.0.1:41000", "127.0.0.1:9169", "127.0.0.1:9173", "127.0.0.1:9173", "127.0.0.1:5555", "x=127.0.0.1:6"]
    )
    named, skipped = ms.name_targets(targets, {30: "connect_websocket"}, tmp_path)
    assert [(name, pid) for _, name, pid in named] == [
        ("connect_websocket", 30),
        ("task", None),  # nobody there (yet): named by the default port
        ("task@9173", None),
        ("127.0.0.1:5555", None),
        ("x", None),
    ]
    assert skipped == [
        {"url": "http://127.0.0.1:9169/metrics", "error": "pid 40 (logic) is not part of the system under test"}
    ]


async def test_watch_reads_a_served_registry_and_lists_the_silent_one() -> None:
    registry = CollectorRegistry()
    frames = Counter("gochat_frames_out", "frames", ["op"], registry=registry)
    connections = Gauge("gochat_connections", "sockets", registry=registry)
    Counter("gochat_joins", "joins", registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_port
        silent = ms.Target("http://127.0.0.1:9/metrics").url  # discard port: nothing listens
        watch = ms.Watch([f"connect_websocket=http://127.0.0.1:{port}/metrics", silent], system={}, interval=0.05)
        await watch.begin()
        frames.labels("3").inc(400)
        connections.set(20)
        section = await watch.end()
    finally:
        server.shutdown()
        thread.join(5)
    process = section["processes"]["connect_websocket"]
    assert process["frames_out"] == {"3": 400} and process["connections"]["end"] == 20
    assert process["url"] == f"http://127.0.0.1:{port}/metrics"
    assert [entry["url"] for entry in section["unreachable"]] == [silent]
    assert section["explain"][-1].startswith(f"not scraped: {silent} (")
