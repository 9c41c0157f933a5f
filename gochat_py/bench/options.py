"""Command-line options of ``gochat-py bench`` and the loopback-only rule for targets."""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

MODES = ("room", "private", "rate", "idle", "floor")
TRANSPORTS = ("ws", "tcp", "mixed")
SENDS = ("http", "socket")
PROTOCOLS = ("v1", "v2")
LOOPBACK_V4 = ipaddress.ip_network("127.0.0.0/8")


class TargetError(ValueError):
    """A target outside this machine's loopback: the benchmark never sends traffic there."""


def is_loopback_host(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped in LOOPBACK_V4
        return address == ipaddress.IPv6Address("::1")
    return address in LOOPBACK_V4


def check_loopback_url(url: str, schemes: tuple[str, ...]) -> str:
    """``url`` unchanged when its scheme is one of ``schemes`` and its host is loopback."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise TargetError(f"{url!r}: scheme must be one of {', '.join(schemes)}")
    if not parts.hostname or not is_loopback_host(parts.hostname):
        raise TargetError(f"{url!r}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed")
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise TargetError(f"{url!r}: {exc}") from None
    return url


def check_loopback_address(address: str) -> tuple[str, int]:
    """``host:port`` of a TCP target, loopback only."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{address!r}: expected host:port")
    host = host.strip("[]")
    if not is_loopback_host(host):
        raise TargetError(f"{address!r}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed")
    return host, int(port)


def parse_ws_urls(text: str) -> list[str]:
    """Comma-separated websocket URLs (several connect nodes), each loopback only."""
    urls = [part.strip() for part in text.split(",") if part.strip()]
    if not urls:
        raise TargetError("--ws names no websocket URL")
    return [check_loopback_url(url, ("ws",)) for url in urls]


def parse_source_ips(text: str) -> list[str]:
    """Comma-separated loopback addresses for the client sockets' local side (empty: the kernel's)."""
    ips = [part.strip() for part in text.split(",") if part.strip()]
    for ip in ips:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            raise TargetError(f"source address {ip!r} is not an IP address") from None
        if not is_loopback_host(str(address)):
            raise TargetError(f"source address {ip!r} is not a loopback address")
    return ips


@dataclass
class BenchOptions:
    mode: str = "room"
    api: str = "http://127.0.0.1:7070"
    ws: str = "ws://127.0.0.1:7000/ws"
    tcp: str = "127.0.0.1:7001"
    transport: str = "ws"
    ws_urls: list[str] = field(default_factory=list)  # --ws split at commas; sockets spread round-robin
    users: int = 100
    messages: int = 200
    concurrency: int = 16
    rate: float = 40.0
    sockets_per_user: int = 1
    floor_batch: int = 1
    client_procs: int = 1
    source_ips: list[str] = field(default_factory=list)
    connect_concurrency: int = 64
    register_concurrency: int = 8
    hold: float = 5.0
    idle_messages: int = 0
    drain_timeout: float = 10.0
    max_seconds: float = 300.0
    run_id: str = ""
    room_id: int = 0
    progress: bool = True
    plot: str = ""
    output: str = ""
    label: str = ""
    metrics: list[str] = field(default_factory=list)  # [name=]URL of each /metrics to scrape; empty = none
    join_since: bool = False  # joins carry "since": "" (frames with ids, as clients of kept messages get)
    history: list[str] = field(default_factory=list)  # "on"/"off": run against systems started with each
    send: list[str] = field(default_factory=lambda: ["http"])  # "http"/"socket"; several: compared like history
    protocol: str = ""  # the sockets' protocol: "v1", "v2", or "" (v2 for --send socket and several rooms)
    rooms_per_socket: int = 1  # idle mode, v2: rooms each socket subscribes to
    repeat: int = 1  # with history or several sends: rounds of the whole list
    extra: dict[str, str] = field(default_factory=dict)


def bounded_number(kind: type, low: float, high: float | None = None, low_open: bool = False) -> Any:
    """An argparse type: ``kind`` (int or float) within ``low`` (excluded when ``low_open``) and
    ``high``; argparse names the type when the text is not a number at all."""

    def convert(text: str) -> Any:
        value = kind(text)
        if value < low or (low_open and value == low) or (high is not None and value > high):
            bound = f"{'>' if low_open else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    convert.__name__ = kind.__name__
    return convert


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    default_api = env.get("GOCHAT_BENCH_API", "http://127.0.0.1:7070")
    default_ws = env.get("GOCHAT_BENCH_WS", "ws://127.0.0.1:7000/ws")
    pos_int, pos_float = bounded_number(int, 0, low_open=True), bounded_number(float, 0, low_open=True)
    target = parser.add_argument_group("targets (loopback only)")
    target.add_argument("--api", default=default_api, help="api base URL (default %(default)s)")
    target.add_argument(
        "--ws",
        default=default_ws,
        help="websocket URL, or several comma-separated (connect nodes; sockets dealt round-robin) "
        "(default %(default)s)",
    )
    target.add_argument("--tcp", default="127.0.0.1:7001", help="connect_tcp address (default %(default)s)")
    target.add_argument("--transport", choices=TRANSPORTS, default="ws", help="client sockets: ws, tcp or mixed")
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=pos_int, default=100, help="users (one socket each by default)")
    load.add_argument("--messages", type=int, default=200, help="messages to push (room, private, rate, floor)")
    load.add_argument("--concurrency", type=pos_int, default=16, help="push requests in flight at once")
    load.add_argument("--rate", type=pos_float, default=40.0, help="rate mode: messages per second")
    load.add_argument("--sockets-per-user", type=pos_int, default=1, help="sockets per user (idle mode mostly)")
    load.add_argument("--floor-batch", type=pos_int, default=1, help="floor mode: frames per socket write")
    load.add_argument("--room-id", type=int, default=0, help="room to use (default: a fresh one per run)")
    load.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="",
        help="the sockets' protocol (default v1; v2 with --send socket or --rooms-per-socket over 1)",
    )
    load.add_argument(
        "--rooms-per-socket",
        type=pos_int,
        default=1,
        help="idle mode: rooms each socket subscribes to (protocol v2); user n's sockets take rooms n..n+R-1",
    )
    load.add_argument(
        "--join-since",
        action="store_true",
        help='joins carry "since": "" so frames carry message ids (what clients of kept messages get)',
    )
    compare = parser.add_argument_group("kept messages on and off, side by side")
    compare.add_argument(
        "--history",
        default="",
        metavar="on,off",
        help="start a system of this checkout for each setting in turn (GOCHAT_HISTORY__ENABLED, fresh state "
        "folder, default ports), run the scenario against it, stop it; print the runs side by side",
    )
    compare.add_argument(
        "--send",
        default="http",
        metavar="http,socket",
        help="how messages are sent: http (POST /push/pushRoom, /push/push) or socket (protocol v2 publish or "
        "send on the sender's own socket, each answered); both (e.g. http,socket): a system per setting in "
        "turn, as --history does, side by side",
    )
    compare.add_argument(
        "--repeat", type=pos_int, default=1, help="with --history or several --send: rounds of the whole list"
    )
    scale = parser.add_argument_group("client scale")
    scale.add_argument("--client-procs", type=pos_int, default=1, help="client processes holding the sockets")
    scale.add_argument("--source-ips", default="", help="comma-separated 127.x.y.z local addresses for the sockets")
    scale.add_argument("--connect-concurrency", type=pos_int, default=64, help="handshakes in flight per process")
    scale.add_argument("--register-concurrency", type=pos_int, default=8, help="registrations in flight")
    timing = parser.add_argument_group("time bounds")
    timing.add_argument("--hold", type=float, default=5.0, help="idle mode: seconds to hold the sockets")
    timing.add_argument(
        "--idle-messages",
        type=int,
        default=0,
        help="idle mode: after the hold, push this many messages into every user's room; each socket must get all",
    )
    timing.add_argument("--drain-timeout", type=pos_float, default=10.0, help="give up after this long without news")
    timing.add_argument("--max-seconds", type=pos_float, default=300.0, help="hard limit for the whole run")
    out = parser.add_argument_group("output")
    out.add_argument("--run-id", default="", help="[0-9a-z] id used in user names and stamps (default random)")
    out.add_argument("--label", default="", help="free text stored in the summary")
    out.add_argument("--output", "-o", default="", help="also write the JSON summary to this file")
    out.add_argument("--plot", default="", metavar="DIR", help="also draw PNG plots of this run into DIR")
    out.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from gochat_py.bench.metrics_scrape import default_entries  # here: metrics_scrape imports this module

    scraped = parser.add_argument_group("the system's Prometheus metrics (loopback only)")
    scraped.add_argument(
        "--metrics",
        default=",".join(default_entries()),
        metavar="URL,URL,...",
        help="/metrics to read before and after the window, each optionally name=URL; unreachable ones "
        "are skipped (default: the modules' default ports, %(default)s)",
    )
    scraped.add_argument("--no-metrics", action="store_true", help="read no metrics")


OptionsT = TypeVar("OptionsT")


def fields_from_args(cls: type[OptionsT], args: argparse.Namespace, **converted: Any) -> OptionsT:
    """The options dataclass from the parsed arguments of the same names; ``converted`` gives the
    ones that need more than copying (a flag's opposite, a comma-separated list)."""
    names = {field.name for field in dataclasses.fields(cls)}  # type: ignore[arg-type]
    copied = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return cls(**{**copied, **converted})


def protocol_of(opts: BenchOptions) -> str:
    """The protocol a run's sockets speak: ``--protocol``, else v2 where v1 cannot do the job."""
    if opts.protocol:
        return opts.protocol
    return "v2" if opts.send == ["socket"] or opts.rooms_per_socket > 1 else "v1"


def comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    opts = fields_from_args(
        BenchOptions,
        args,
        api=args.api.rstrip("/"),
        source_ips=parse_source_ips(args.source_ips),
        progress=not args.no_progress,
        metrics=[] if args.no_metrics else comma_list(args.metrics),
        history=comma_list(args.history),
        send=comma_list(args.send),
    )
    if any(setting not in ("on", "off") for setting in opts.history):
        raise TargetError("--history takes on and off, comma-separated (e.g. on,off)")
    if not opts.send or any(setting not in SENDS for setting in opts.send):
        raise TargetError("--send takes http and socket, comma-separated (e.g. http,socket)")
    if "socket" in opts.send:
        if opts.mode not in ("room", "rate", "private"):
            raise TargetError("--send socket applies to the room, rate and private modes")
        if opts.protocol == "v1":
            raise TargetError("--send socket needs protocol v2 (v1 sockets only receive)")
    if opts.rooms_per_socket > 1:
        if opts.mode != "idle" or opts.protocol == "v1":
            raise TargetError("--rooms-per-socket over 1 is for idle mode with protocol v2")
        if opts.idle_messages:
            raise TargetError("--idle-messages counts one room per socket: not with --rooms-per-socket")
    if opts.mode == "floor" and opts.protocol == "v2":
        raise TargetError("floor mode runs no gochat: --protocol does not apply")
    if opts.history and opts.mode == "floor":
        raise TargetError("floor mode runs no gochat: --history does not apply")
    if opts.messages < 0:
        raise TargetError("--messages must be >= 0")
    if opts.idle_messages < 0:
        raise TargetError("--idle-messages must be >= 0")
    if opts.mode != "floor":
        check_loopback_url(opts.api, ("http",))
    if opts.mode == "floor" and opts.transport != "ws":
        raise TargetError("floor mode holds websocket sockets only (--transport ws)")
    if opts.transport in ("ws", "mixed") and opts.mode != "floor":
        opts.ws_urls = parse_ws_urls(opts.ws)
    if opts.transport in ("tcp", "mixed"):
        check_loopback_address(opts.tcp)
    from gochat_py.bench.metrics_scrape import parse_targets

    parse_targets(opts.metrics)  # refuses a non-loopback URL before anything is sent
    return opts
