"""The benchmark targets loopback only, and its options are checked before anything is sent."""

from __future__ import annotations

import argparse

import pytest

from gochat_py.bench.cli import build_parser
from gochat_py.bench.options import (
    BenchOptions,
    TargetError,
    check_loopback_address,
    check_loopback_url,
    is_loopback_host,
    options_from_args,
    parse_source_ips,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:7070",
        "http://127.0.0.1",
        "http://127.1.2.3:80/x",
        "http://localhost:7070",
        "http://LOCALHOST:7070",
        "http://[::1]:7070",
        "http://[::ffff:127.0.0.1]:7070",
    ],
)
def test_loopback_urls_pass(url: str) -> None:
    assert check_loopback_url(url, ("http",)) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:7070",
        "http://192.168.1.5:7070",
        "http://172.16.0.1",
        "http://8.8.8.8",
        "http://example.com:7070",
        "http://localhost.example.com",
        "http://127.0.0.1.nip.io",
        "http://[::2]:7070",
        "http://[::ffff:10.0.0.1]:7070",
        "http://0.0.0.0:7070",
        "http://:7070",
        "http://127.0.0.1:99999",
    ],
)
def test_other_urls_refused(url: str) -> None:
    with pytest.raises(TargetError):
        check_loopback_url(url, ("http",))


def test_scheme_checked() -> None:
    assert check_loopback_url("ws://127.0.0.1:7000/ws", ("ws",))
    with pytest.raises(TargetError):
        check_loopback_url("wss://127.0.0.1:7000/ws", ("ws",))
    with pytest.raises(TargetError):
        check_loopback_url("ftp://127.0.0.1/", ("http",))


def test_tcp_address() -> None:
    assert check_loopback_address("127.0.0.1:7001") == ("127.0.0.1", 7001)
    assert check_loopback_address("[::1]:7001") == ("::1", 7001)
    for bad in ("10.1.1.1:7001", "127.0.0.1", "127.0.0.1:0", "host:7001", "127.0.0.1:x"):
        with pytest.raises(TargetError):
            check_loopback_address(bad)


def test_source_ips() -> None:
    assert parse_source_ips("127.0.0.2, 127.0.0.3") == ["127.0.0.2", "127.0.0.3"]
    assert parse_source_ips("") == []
    with pytest.raises(TargetError):
        parse_source_ips("127.0.0.2,192.168.0.1")
    with pytest.raises(TargetError):
        parse_source_ips("nonsense")


def test_is_loopback_host() -> None:
    assert is_loopback_host("127.255.255.254")
    assert not is_loopback_host("128.0.0.1")


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_options_refuse_remote_targets_of_every_kind() -> None:
    with pytest.raises(TargetError):
        options_from_args(parse("room", "--api", "http://10.0.0.1:7070"))
    with pytest.raises(TargetError):
        options_from_args(parse("room", "--ws", "ws://10.0.0.1:7000/ws"))
    with pytest.raises(TargetError):
        options_from_args(parse("room", "--transport", "tcp", "--tcp", "10.0.0.1:7001"))
    with pytest.raises(TargetError):
        options_from_args(parse("room", "--source-ips", "10.0.0.2"))
    with pytest.raises(TargetError):
        options_from_args(parse("floor", "--transport", "tcp"))


def test_options_defaults() -> None:
    opts = options_from_args(parse("room", "--users", "3", "--client-procs", "2", "--source-ips", "127.0.0.2"))
    assert (opts.mode, opts.users, opts.client_procs, opts.source_ips) == ("room", 3, 2, ["127.0.0.2"])
    assert opts.api == "http://127.0.0.1:7070" and opts.transport == "ws"


def test_positive_counts() -> None:
    with pytest.raises(SystemExit):
        parse("room", "--users", "0")
    with pytest.raises(SystemExit):
        parse("room", "--concurrency", "-1")


def test_cli_exits_2_for_remote_target(capsys: pytest.CaptureFixture[str]) -> None:
    from gochat_py.bench.cli import main

    assert main(["room", "--api", "http://192.168.0.1:7070"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_history_and_join_since_options() -> None:
    args = build_parser().parse_args(["room", "--join-since", "--history", "on,off", "--repeat", "2"])
    opts = options_from_args(args)
    assert opts.join_since and opts.history == ["on", "off"] and opts.repeat == 2
    plain = options_from_args(build_parser().parse_args(["room"]))
    assert not plain.join_since and plain.history == [] and plain.repeat == 1
    with pytest.raises(TargetError):
        options_from_args(build_parser().parse_args(["room", "--history", "on,maybe"]))
    with pytest.raises(TargetError):
        options_from_args(build_parser().parse_args(["floor", "--history", "on,off"]))


def test_join_body_carries_since_only_when_asked() -> None:
    from gochat_py.bench.clients import SocketSpec, join_body

    assert join_body(SocketSpec("t", 5)) == {"authToken": "t", "roomId": 5}
    assert join_body(SocketSpec("t", 5, since="")) == {"authToken": "t", "roomId": 5, "since": ""}


def test_history_comparison_table() -> None:
    from gochat_py.bench.sweep import compare_markdown, compare_row, compare_table

    rows = [
        compare_row({"history": "on"}, 1, compared_summary(900, 12)),
        compare_row({"history": "off"}, 1, compared_summary(1000, 10)),
        compare_row({"history": "on"}, 2, compared_summary(800, 14)),
        compare_row({"history": "off"}, 2, compared_summary(1000, 10)),
    ]
    table = compare_table(rows, ["history"])
    assert table["median"]["on"]["deliveries_per_s"] == 850 and table["median"]["off"]["p99_ms"] == 10
    assert table["on_over_off"]["deliveries_per_s"] == 0.85 and table["on_over_off"]["p99_ms"] == 1.3
    text = compare_markdown(rows, ["history"])
    assert text.count("\n") == 6 and "| on | 1 | 900 |" in text and text.startswith("| history | round |")
    assert text.rstrip().endswith("| 0.5 |")  # the load average the run started at


def compared_summary(rate: float, p99: float) -> dict:
    return {"ok": True, "deliveries_per_s": rate, "latency_ms": {"p50": 1.0, "p99": p99, "max": 9.0},
            "lost": 0, "duplicated": 0, "cpu_us_per_delivery": {"gochat_total": 2.0},
            "push": {"latency_ms": {"p99": 3.0}}, "load_average_before": [0.5, 0.4, 0.3]}  # fmt: skip


def test_send_comparison_table_and_both_options_at_once() -> None:
    from gochat_py.bench.sweep import compare_markdown, compare_row, compare_table, compared

    rows = [
        compare_row({"send": "http"}, 1, compared_summary(1000, 20)),
        compare_row({"send": "socket"}, 1, compared_summary(1600, 15)),
    ]
    assert rows[0]["push_p99_ms"] == 3.0 and rows[0]["load_1m"] == 0.5
    table = compare_table(rows, ["send"])
    assert table["socket_over_http"]["deliveries_per_s"] == 1.6 and table["socket_over_http"]["p99_ms"] == 0.75
    assert "| socket | 1 | 1,600 |" in compare_markdown(rows, ["send"])
    # both compared: a row per combination, medians per combination, no single ratio
    opts = options_from_args(build_parser().parse_args(["room", "--history", "on,off", "--send", "http,socket"]))
    assert compared(opts) == {"history": ["on", "off"], "send": ["http", "socket"]}
    assert compared(options_from_args(build_parser().parse_args(["room", "--send", "socket"]))) == {}
    both = [
        compare_row({"history": h, "send": t}, 1, compared_summary(100, 1))
        for h in ("on", "off")
        for t in ("http", "socket")
    ]
    table = compare_table(both, ["history", "send"])
    assert list(table["median"]) == ["on,http", "on,socket", "off,http", "off,socket"] and len(table) == 1
    assert "| off | socket | 1 |" in compare_markdown(both, ["history", "send"])


def test_send_protocol_and_rooms_options() -> None:
    from gochat_py.bench.options import protocol_of

    def parsed(*argv: str) -> BenchOptions:
        return options_from_args(build_parser().parse_args(list(argv)))

    assert parsed("room").send == ["http"] and protocol_of(parsed("room")) == "v1"
    assert protocol_of(parsed("private", "--send", "socket")) == "v2"
    assert protocol_of(parsed("room", "--protocol", "v2")) == "v2"  # v2 sockets, HTTP pushes
    assert parsed("room", "--send", "http,socket").send == ["http", "socket"]
    idle = parsed("idle", "--rooms-per-socket", "10")
    assert idle.rooms_per_socket == 10 and protocol_of(idle) == "v2"
    for argv, message in [
        (["room", "--send", "carrier-pigeon"], "--send takes"),
        (["idle", "--send", "socket"], "room, rate and private"),
        (["room", "--send", "socket", "--protocol", "v1"], "needs protocol v2"),
        (["room", "--rooms-per-socket", "3"], "idle mode"),
        (["idle", "--rooms-per-socket", "3", "--protocol", "v1"], "idle mode with protocol v2"),
        (["idle", "--rooms-per-socket", "3", "--idle-messages", "2"], "--idle-messages"),
        (["floor", "--protocol", "v2"], "floor mode"),
    ]:
        with pytest.raises(TargetError, match=message):
            parsed(*argv)
