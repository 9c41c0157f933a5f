"""Several websocket nodes in one bench run: every URL checked, sockets dealt round-robin over
them, every node's port used to find the system's processes, per-node counts added up."""

from __future__ import annotations

import pytest

from gochat_py.bench.cli import build_parser
from gochat_py.bench.options import BenchOptions, TargetError, options_from_args, parse_ws_urls
from gochat_py.bench.scenarios import Coordinator

TWO = "ws://127.0.0.1:7000/ws,ws://127.0.0.1:7100/ws"


def options(*argv: str) -> BenchOptions:
    return options_from_args(build_parser().parse_args(list(argv)))


def test_ws_urls_split_and_each_checked() -> None:
    assert parse_ws_urls(" ws://127.0.0.1:7000/ws , ws://127.0.0.2:7100/ws,") == [
        "ws://127.0.0.1:7000/ws",
        "ws://127.0.0.2:7100/ws",
    ]
    with pytest.raises(TargetError, match="loopback"):
        parse_ws_urls("ws://127.0.0.1:7000/ws,ws://10.0.0.1:7000/ws")
    with pytest.raises(TargetError, match="scheme"):
        parse_ws_urls("ws://127.0.0.1:7000/ws,wss://127.0.0.1:7100/ws")
    with pytest.raises(TargetError):
        parse_ws_urls(" , ")


def test_options_carry_the_urls_and_the_idle_check() -> None:
    opts = options("idle", "--ws", TWO, "--idle-messages", "3")
    assert opts.ws_urls == TWO.split(",") and opts.idle_messages == 3
    with pytest.raises(TargetError):
        options("idle", "--idle-messages", "-1")
    with pytest.raises(SystemExit):
        options("room", "--ws-client", "lean")  # the bench has one websocket client: no such option
    assert options("room", "--transport", "tcp", "--ws", "ws://10.0.0.1/ws").ws_urls == []  # not used, not checked


def test_sockets_dealt_round_robin_over_the_nodes() -> None:
    coordinator = Coordinator(options("idle", "--ws", TWO + ",ws://127.0.0.1:7200/ws", "--users", "4"))
    specs = coordinator.socket_specs(["t"] * 4, [])
    assert [s.node for s in specs] == [0, 1, 2, 0]
    coordinator = Coordinator(options("idle", "--ws", TWO, "--users", "3", "--sockets-per-user", "2"))
    specs = coordinator.socket_specs(["t"] * 3, [])
    assert [s.node for s in specs] == [0, 1, 0, 1, 0, 1]  # one user's sockets may land on both nodes
    # mixed: only the websocket sockets (every other one) are dealt over the nodes
    coordinator = Coordinator(options("room", "--ws", TWO, "--users", "6", "--transport", "mixed"))
    specs = coordinator.socket_specs(["t"] * 6, [])
    assert [(s.transport, s.node) for s in specs] == [
        ("ws", 0),
        ("tcp", 0),
        ("ws", 1),
        ("tcp", 0),
        ("ws", 0),
        ("tcp", 0),
    ]


def test_every_node_port_finds_processes() -> None:
    coordinator = Coordinator(options("idle", "--ws", TWO, "--api", "http://127.0.0.1:7070"))
    assert coordinator.target_ports() == [7070, 7000, 7100]


def test_per_node_counts_added_over_client_processes() -> None:
    assert Coordinator.by_node([[1, 2], [3, 4], []]) == [4, 6]
    assert Coordinator.by_node([]) == []
