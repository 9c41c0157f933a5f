"""``gochat-py bench soak``: a long, bounded run with churn, counting every message.

    gochat-py bench soak --users 200 --duration 600 --rate 20

N users (registered through the api, as ``soak_<run id>_<n>``) hold one connection each,
websocket or TCP (``--transport mixed`` alternates), spread over a few fresh rooms.  For
``--duration`` seconds the coordinator pushes messages at ``--rate`` per second through the api:
room messages (``POST /push/pushRoom``) to a random room, and a ``--private-share`` of private
messages (``POST /push/push``, ``toUserId`` as a JSON string) to a random other user.  Each
message comes from a random user that has no push in flight, so every sender sends its messages
one after another and each carries a per-sender sequence number (see
:mod:`gochat_py.bench.soak_analysis` for the stamp and for what counts as lost).  Meanwhile the
client processes (:mod:`gochat_py.bench.soak_clients`) close connections at random and join
again, so joins and leaves run all the time.

After the load the churn stops, the coordinator waits until nothing new arrives
(``--drain-quiet`` seconds, at most ``--drain-timeout``), and prints one JSON summary: messages
sent, deliveries expected / delivered / lost / duplicated / reordered, latency, churn counts, and
the RSS and CPU of every gochat process before, at the start, during (every
``--sample-interval`` seconds) and at the end of the run.  Exit status 0 when nothing was lost,
duplicated, reordered or misdelivered and no push failed; 1 otherwise; 2 for bad arguments.
Targets must be loopback addresses.

``--resume``: users rejoin their room with ``since`` (the id of the last message they received),
every message of the room (and every private message to them) sent while they were away counts as
expected, and ``resume`` in the summary says how long a rejoin took to catch up.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gochat_py.bench import procstats
from gochat_py.bench.api import Api, ApiError
from gochat_py.bench.children import (
    bench_pids,
    results_of,
    spread,
    start_child,
    stop_children,
    wait_connected,
)
from gochat_py.bench.coordinator import RunCoordinator
from gochat_py.bench.options import (
    TargetError,
    bounded_number,
    check_loopback_address,
    check_loopback_url,
    comma_list,
    fields_from_args,
)
from gochat_py.bench.soak_analysis import (
    NS_PER_S,
    ConnectionRecord,
    SentMessage,
    count_deliveries,
    make_soak_stamp,
)
from gochat_py.bench.soak_clients import SoakPlan, SoakUser, soak_client_main
from gochat_py.bench.stamp import check_run_id
from gochat_py.bench.stats import summarize

TRANSPORTS = ("mixed", "ws", "tcp")


class SoakError(RuntimeError):
    """The run could not be set up or carried out (the summary says how far it got)."""


@dataclass
class SoakOptions:
    api: str = "http://127.0.0.1:7070"
    ws: str = "ws://127.0.0.1:7000/ws"
    tcp: list[str] = field(default_factory=lambda: ["127.0.0.1:7001", "127.0.0.1:7002"])
    transport: str = "mixed"
    users: int = 100
    rooms: int = 4
    duration: float = 60.0
    rate: float = 10.0
    private_share: float = 0.3
    churn_interval: float = 30.0
    min_lifetime: float = 1.0
    reconnect_delay: tuple[float, float] = (0.5, 2.0)
    switch_transport: float = 0.1
    grace: float = 5.0
    join_timeout: float = 30.0
    settle_timeout: float = 5.0
    client_procs: int = 1
    connect_concurrency: int = 64
    register_concurrency: int = 8
    sample_interval: float = 10.0
    watch: list[str] = field(default_factory=list)
    drain_quiet: float = 3.0
    drain_timeout: float = 60.0
    max_seconds: float = 0.0  # 0: duration + 600
    run_id: str = ""
    label: str = ""
    output: str = ""
    progress: bool = True
    resume: bool = False


# ---------------------------------------------------------------------- options


def _delay_range(text: str) -> tuple[float, float]:
    try:
        low, _, high = text.partition(",")
        pair = (float(low), float(high or low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX seconds, got {text!r}") from None
    if not 0 <= pair[0] <= pair[1]:
        raise argparse.ArgumentTypeError(f"expected 0 <= MIN <= MAX, got {text!r}")
    return pair


def add_soak_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ
    positive_int, positive = bounded_number(int, 0, low_open=True), bounded_number(float, 0, low_open=True)
    non_negative, share = bounded_number(float, 0), bounded_number(float, 0, 1)
    target = parser.add_argument_group("targets (loopback only)")
    target.add_argument("--api", default=env.get("GOCHAT_BENCH_API", "http://127.0.0.1:7070"), help="api base URL")
    target.add_argument("--ws", default=env.get("GOCHAT_BENCH_WS", "ws://127.0.0.1:7000/ws"), help="websocket URL")
    target.add_argument(
        "--tcp", default="127.0.0.1:7001,127.0.0.1:7002", help="connect_tcp addresses, comma-separated (round robin)"
    )
    target.add_argument("--transport", choices=TRANSPORTS, default="mixed", help="mixed: users alternate ws / tcp")
    target.add_argument(
        "--watch",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="also report RSS/CPU of the process listening there (e.g. Redis, etcd); repeatable",
    )
    load = parser.add_argument_group("load")
    load.add_argument("--users", type=positive_int, default=100, help="users, one connection each (default 100)")
    load.add_argument(
        "--rooms",
        type=positive_int,
        default=4,
        help="rooms the users are spread over (default 4); keep users per room within the server's "
        "[logic] member_list_auto_limit, whose member lists confirm the joins",
    )
    load.add_argument("--duration", type=positive, default=60.0, help="seconds of load (default 60)")
    load.add_argument("--rate", type=positive, default=10.0, help="messages per second in all (default 10)")
    load.add_argument("--private-share", type=share, default=0.3, help="fraction of private messages (default 0.3)")
    churn = parser.add_argument_group("churn")
    churn.add_argument(
        "--churn-interval",
        type=non_negative,
        default=30.0,
        help="mean seconds a connection is held before the client closes it and joins again; 0: no churn",
    )
    churn.add_argument("--min-lifetime", type=non_negative, default=1.0, help="shortest hold (default 1 s)")
    churn.add_argument(
        "--reconnect-delay", type=_delay_range, default=(0.5, 2.0), metavar="MIN,MAX", help="seconds before rejoining"
    )
    churn.add_argument(
        "--switch-transport", type=share, default=0.1, help="chance a rejoin uses the other transport (mixed only)"
    )
    churn.add_argument(
        "--resume",
        action="store_true",
        help="joins carry since; a rejoin stays in its room and resumes from the last id received, and what "
        "was sent while the user was away counts as expected (catch-up time in the summary's resume section)",
    )
    rules = parser.add_argument_group("counting")
    rules.add_argument(
        "--grace",
        type=non_negative,
        default=5.0,
        help="a connection must stay open this long after the api's answer for a message to be expected (default 5)",
    )
    rules.add_argument("--join-timeout", type=positive, default=30.0, help="seconds for a join to be confirmed")
    rules.add_argument(
        "--settle-timeout", type=non_negative, default=5.0, help="seconds to wait for an earlier leave to show"
    )
    scale = parser.add_argument_group("client scale")
    scale.add_argument("--client-procs", type=positive_int, default=1, help="client processes holding the connections")
    scale.add_argument("--connect-concurrency", type=positive_int, default=64, help="handshakes in flight per process")
    scale.add_argument("--register-concurrency", type=positive_int, default=8, help="registrations in flight")
    timing = parser.add_argument_group("time bounds and output")
    timing.add_argument(
        "--sample-interval", type=non_negative, default=10.0, help="seconds between RSS samples; 0: start and end only"
    )
    timing.add_argument("--drain-quiet", type=positive, default=3.0, help="end when nothing arrived for this long")
    timing.add_argument("--drain-timeout", type=positive, default=60.0, help="longest wait after the load")
    timing.add_argument(
        "--max-seconds", type=non_negative, default=0.0, help="hard limit for the whole run (default: duration + 600)"
    )
    timing.add_argument("--run-id", default="", help="[0-9a-z] id used in user names and stamps (default random)")
    timing.add_argument("--label", default="", help="free text stored in the summary")
    timing.add_argument("--output", "-o", default="", help="also write the JSON summary to this file")
    timing.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def soak_options_from_args(args: argparse.Namespace) -> SoakOptions:
    opts = fields_from_args(
        SoakOptions, args, api=args.api.rstrip("/"), tcp=comma_list(args.tcp), progress=not args.no_progress
    )
    check_soak_options(opts)
    return opts


def check_soak_options(opts: SoakOptions) -> None:
    """Raises TargetError for a non-loopback target or an impossible combination."""
    check_loopback_url(opts.api, ("http",))
    if opts.transport in ("mixed", "ws"):
        check_loopback_url(opts.ws, ("ws",))
    if opts.transport in ("mixed", "tcp"):
        if not opts.tcp:
            raise TargetError("--tcp: at least one address is needed")
        for address in opts.tcp:
            check_loopback_address(address)
    for address in opts.watch:
        check_loopback_address(address)
    if opts.run_id:
        try:
            check_run_id(opts.run_id)
        except ValueError as exc:
            raise TargetError(str(exc)) from None


# ---------------------------------------------------------------------- processes


def watched_processes(addresses: list[str], proc: Path = procstats.PROC) -> dict[int, str]:
    """pid -> name (``comm``) of the processes listening on ``addresses`` (any program)."""
    if not addresses:
        return {}
    every: dict[int, str] = {}
    for entry in proc.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                every[int(entry.name)] = (entry / "comm").read_text().strip()
    found: dict[int, str] = {}
    for address in addresses:
        _, port = check_loopback_address(address)
        for pid in procstats.listening_pids(port, every, proc):
            found[pid] = every[pid]
    return found


def process_rows(
    names: dict[int, str],
    snapshots: dict[str, dict[int, procstats.Sample]],
    samples: list[tuple[float, dict[int, procstats.Sample]]],
    window_s: float,
) -> list[dict[str, Any]]:
    """Per process: RSS before the users came, when the load started, when it ended (connections
    still open) and after they closed; its growth over the window and over the window's second half
    (from the samples); CPU over the window (load and drain)."""
    rows = []
    start, end = snapshots.get("start", {}), snapshots.get("end", {})
    for pid, name in sorted(names.items(), key=lambda item: (item[1], item[0])):

        def rss(snapshot: str, pid: int = pid) -> int | None:
            taken = snapshots.get(snapshot, {}).get(pid)
            return taken.rss_kib if taken else None

        series = [snap[pid].rss_kib for _, snap in samples if pid in snap]
        half = [snap[pid].rss_kib for t, snap in samples if pid in snap and t >= window_s / 2]
        cpu = end[pid].cpu_s - start[pid].cpu_s if pid in start and pid in end else None
        row: dict[str, Any] = {
            "pid": pid,
            "name": name,
            "rss_kib_before": rss("before"),
            "rss_kib_start": rss("start"),
            "rss_kib_end": rss("end"),
            "rss_kib_after": rss("after"),
            "rss_growth_kib": rss("end") - rss("start") if pid in start and pid in end else None,
            "rss_growth_second_half_kib": half[-1] - half[0] if len(half) >= 2 else None,
            "rss_kib_min": min(series) if series else None,
            "rss_kib_max": max(series) if series else None,
            "cpu_s": None if cpu is None else round(cpu, 2),
            "cpu_pct": None if cpu is None or window_s <= 0 else round(100 * cpu / window_s, 1),
            "alive_at_end": pid in end,
        }
        rows.append(row)
    return rows


# ---------------------------------------------------------------------- the run


class SoakCoordinator(RunCoordinator):
    max_errors = 20

    def __init__(self, opts: SoakOptions) -> None:
        super().__init__(opts, opts.max_seconds or opts.duration + 600)
        self.opts = opts
        self.rooms = [self.rng.randrange(10_000_000, 1_000_000_000) for _ in range(opts.rooms)]
        self.stats: dict[str, dict[str, Any]] = {}
        self.messages: list[SentMessage] = []
        self.push_failed = 0
        self.push_skipped = 0
        self.push_us = array.array("q")
        self.t0_ns = 0
        self.summary = self.head(
            "gochat-py bench soak", {"mode": "soak"}, {"rooms": self.rooms}, ("progress", "output")
        )

    def target_ports(self) -> list[int]:
        ports = [urlsplit(self.opts.api).port or 80]
        if self.opts.transport != "tcp":
            ports.append(urlsplit(self.opts.ws).port or 80)
        return ports

    # ------------------------------------------------------------------ set-up

    def plans(self, tokens: list[str], user_ids: list[int]) -> list[SoakPlan]:
        opts = self.opts
        users = []
        for slot, (token, user_id) in enumerate(zip(tokens, user_ids, strict=True)):
            transport = ("tcp" if slot % 2 else "ws") if opts.transport == "mixed" else opts.transport
            users.append(SoakUser(slot, user_id, token, transport, self.rooms[slot % len(self.rooms)]))
        tcp = [check_loopback_address(a) for a in opts.tcp] if opts.transport != "ws" else []
        plans = []
        for number, indices in enumerate(spread(users, min(opts.client_procs, len(users)))):
            plans.append(
                SoakPlan(
                    index=number,
                    run_id=self.run_id,
                    ws_url=opts.ws if opts.transport != "tcp" else "",
                    tcp=tcp,
                    rooms=self.rooms,
                    users=[users[i] for i in indices],
                    churn_interval=opts.churn_interval,
                    min_lifetime=opts.min_lifetime,
                    reconnect_delay=opts.reconnect_delay,
                    switch_transport=opts.switch_transport if opts.transport == "mixed" else 0.0,
                    join_timeout=opts.join_timeout,
                    settle_timeout=opts.settle_timeout,
                    connect_concurrency=opts.connect_concurrency,
                    max_seconds=self.remaining() + 60,
                    seed=self.rng.randrange(1 << 30),
                    resume=opts.resume,
                )
            )
        return plans

    async def connect(self, plans: list[SoakPlan]) -> None:
        for plan in plans:
            self.links.append(start_child(self.context, f"soak-client-{plan.index}", soak_client_main, (plan,)))
        total = self.opts.users
        infos = await wait_connected(self.links, total, self.progress, self.remaining, self._error, SoakError)
        ready = sum(i["ready"] for i in infos)
        self.summary["connect"] = {"users": total, "ready": ready, "client_procs": len(infos)}
        if ready < total:
            per_room = -(-total // len(self.rooms))
            raise SoakError(
                f"only {ready} of {total} users got their first join confirmed (a join is confirmed by the "
                f"automatic member list, which the server skips for rooms over [logic] member_list_auto_limit "
                f"members; these rooms have up to {per_room}: more --rooms may help)"
            )

    def broadcast(self, message: tuple) -> None:
        for link in self.links:
            link.send(message)

    # ------------------------------------------------------------------ load

    def _collect_stats(self) -> None:
        for link in self.links:
            while not link.messages.empty():
                message = link.messages.get_nowait()
                if message[0] == "stats":
                    self.stats[link.name] = message[1]

    def _stat(self, key: str) -> int:
        return sum(stats.get(key, 0) for stats in self.stats.values())

    def show(self, phase: str, done: int, total: int) -> None:
        self._collect_stats()
        unique = sum(link.unique for link in self.links)
        dup = sum(link.duplicated for link in self.links)
        extra = (
            f"sent {len(self.messages)} delivered {unique} dup {dup} live {self._stat('live_confirmed')}"
            f" rejoins {self._stat('reconnects')} server-closed {self._stat('server_closes')}"
        )
        self.progress.update(phase, done, total, extra)

    async def push_one(self, api: Api, tokens: list[str], sender: int, seq: int, kind: str, to: int) -> None:
        room = to if kind == "room" else self.rooms[0]
        target = to if kind == "private" else -1
        send_ns = time.monotonic_ns()
        msg = make_soak_stamp(self.run_id, sender, seq, send_ns)
        accepted = False
        try:
            if kind == "room":
                reply = await api.push_room(tokens[sender], room, msg)
            else:
                reply = await api.push(tokens[sender], self.user_ids[target], room, msg)
            accepted = reply["code"] == 0
            if not accepted:
                self._error(f"push {sender}/{seq} ({kind}): code {reply['code']} {reply.get('message')!r}")
        except Exception as exc:  # counted, never fatal to the run
            self._error(f"push {sender}/{seq} ({kind}): {type(exc).__name__}: {exc}")
        reply_ns = time.monotonic_ns()
        self.push_us.append((reply_ns - send_ns) // 1000)
        self.push_failed += not accepted
        self.messages.append(SentMessage(sender, seq, kind, room, target, send_ns, reply_ns, accepted))

    async def push_loop(self, api: Api, tokens: list[str]) -> None:
        opts, rng = self.opts, self.rng
        users = len(tokens)
        busy = bytearray(users)
        seqs = [0] * users
        tasks: set[asyncio.Task[None]] = set()
        end = time.monotonic() + opts.duration
        due = time.monotonic()
        next_show = 0.0

        def release(sender: int) -> Any:
            def done(task: asyncio.Task[None]) -> None:
                busy[sender] = 0
                tasks.discard(task)

            return done

        while True:
            due += rng.expovariate(opts.rate)
            now = time.monotonic()
            if due >= end or self.remaining() <= 0:
                break
            if due > now:
                await asyncio.sleep(due - now)
            if now >= next_show:
                next_show = now + 0.5
                self.show("soak", int(now - (end - opts.duration)), int(opts.duration))
            sender = next((s for s in (rng.randrange(users) for _ in range(16)) if not busy[s]), None)
            if sender is None:
                self.push_skipped += 1
                continue
            if users > 1 and rng.random() < opts.private_share:
                kind, to = "private", rng.randrange(users - 1)
                to += to >= sender  # anyone but the sender
            else:
                kind, to = "room", rng.choice(self.rooms)
            busy[sender] = 1
            seq, seqs[sender] = seqs[sender], seqs[sender] + 1
            task = asyncio.create_task(self.push_one(api, tokens, sender, seq, kind, to))
            tasks.add(task)
            task.add_done_callback(release(sender))
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, min(60.0, self.remaining())))

    async def sample(self, pids: dict[int, str], samples: list[tuple[float, dict[int, procstats.Sample]]]) -> None:
        interval = self.opts.sample_interval
        while True:
            samples.append(((time.monotonic_ns() - self.t0_ns) / NS_PER_S, procstats.snapshot(pids)))
            await asyncio.sleep(interval)

    async def drain(self) -> float:
        """Waits until nothing new arrived for ``--drain-quiet`` seconds; returns the seconds waited."""
        started = time.monotonic()
        last, quiet_since = -1, started
        while time.monotonic() - started < self.opts.drain_timeout and self.remaining() > 0:
            unique = sum(link.unique for link in self.links)
            if unique != last:
                last, quiet_since = unique, time.monotonic()
            elif time.monotonic() - quiet_since >= self.opts.drain_quiet:
                break
            if all(link.eof for link in self.links):
                break
            self.show("drain", int(time.monotonic() - started), int(self.opts.drain_timeout))
            await asyncio.sleep(0.1)
        else:
            self._error(f"deliveries still arriving after --drain-timeout {self.opts.drain_timeout} s")
        return time.monotonic() - started

    async def run(self) -> dict[str, Any]:
        opts, summary = self.opts, self.summary
        gochat, how = procstats.system_processes(self.target_ports())
        self.gochat = gochat
        watched = watched_processes(opts.watch)
        observed = {**gochat, **watched}
        summary["gochat_processes"] = {"found": len(gochat), "how": how, "watched": len(watched)}
        summary["load_average_before"] = procstats.load_average()
        snapshots: dict[str, dict[int, procstats.Sample]] = {"before": procstats.snapshot(observed)}
        samples: list[tuple[float, dict[int, procstats.Sample]]] = []
        bench_start: dict[int, procstats.Sample] = {}
        bench_end: dict[int, procstats.Sample] = {}
        window_s = 0.0
        self.user_ids: list[int] = []
        async with Api(opts.api, connections=64, timeout=30.0) as api:
            try:
                tokens, self.user_ids = await self.register(api, "soak", opts.register_concurrency)
                await self.connect(self.plans(tokens, self.user_ids))
                bench = bench_pids(self.links)
                bench_start = procstats.snapshot(bench)
                snapshots["start"] = procstats.snapshot(observed)
                busy_start = procstats.machine_busy_jiffies()
                self.t0_ns = time.monotonic_ns()
                self.broadcast(("go",))
                sampler = asyncio.create_task(self.sample(observed, samples)) if opts.sample_interval else None
                await self.push_loop(api, tokens)
                push_end_ns = time.monotonic_ns()
                self.broadcast(("quiesce",))
                drained = await self.drain()
                if sampler is not None:
                    sampler.cancel()
                snapshots["end"] = procstats.snapshot(observed)
                bench_end = procstats.snapshot(bench)
                busy_end = procstats.machine_busy_jiffies()
                window_s = (time.monotonic_ns() - self.t0_ns) / NS_PER_S
                samples.append((window_s, snapshots["end"]))
                total = busy_end[1] - busy_start[1]
                summary["load_s"] = round((push_end_ns - self.t0_ns) / NS_PER_S, 3)
                summary["drain_s"] = round(drained, 3)
                summary["window_s"] = round(window_s, 3)
                summary["machine_busy_pct"] = round(100 * (busy_end[0] - busy_start[0]) / total, 1) if total else None
            except (SoakError, ApiError, OSError, TimeoutError) as exc:
                self._error(f"{type(exc).__name__}: {exc}")
                summary["aborted"] = True
            finally:
                self.progress.end()
                await stop_children(self.links, self.links, 60)
        await asyncio.sleep(2)  # let the server record the last leaves
        snapshots["after"] = procstats.snapshot(observed)
        summary["load_average_after"] = procstats.load_average()
        summary["processes"] = process_rows(observed, snapshots, samples, window_s)
        summary["bench_processes"] = procstats.compare(bench_start, bench_end, window_s) if bench_end else []
        summary["rss_samples"] = {
            "t_s": [round(t, 1) for t, _ in samples],
            "kib": {f"{name}:{pid}": [snap.get(pid).rss_kib if pid in snap else None for _, snap in samples]
                    for pid, name in sorted(observed.items(), key=lambda item: (item[1], item[0]))},
        }  # fmt: skip
        if not summary.get("aborted"):
            self.merge()
        summary["errors"] = self.errors
        summary["ok"] = self.ok()
        return summary

    # ------------------------------------------------------------------ the summary

    def merge(self) -> None:
        summary, opts = self.summary, self.opts
        results = results_of(self.links, self._error)
        connections = [ConnectionRecord.from_wire(item) for r in results for item in r["connections"]]
        counts: dict[str, int] = {}
        for r in results:
            for key, value in r["counts"].items():
                counts[key] = counts.get(key, 0) + value
        tally = count_deliveries(self.messages, connections, int(opts.grace * NS_PER_S), self.t0_ns, resume=opts.resume)
        latencies = sorted(array.array("q", b"".join(r["latencies_us"] for r in results)))
        room = sum(1 for m in self.messages if m.kind == "room")
        lifetimes = sorted(
            (c.closed_ns - c.confirmed_ns) / 1e6 for c in connections if c.confirmed_ns and c.closed_ns and c.planned
        )
        confirms = sorted((c.confirmed_ns - c.opened_ns) / 1e6 for c in connections if c.confirmed_ns)
        by_transport: dict[str, int] = {}
        for c in connections:
            by_transport[c.transport] = by_transport.get(c.transport, 0) + 1
        summary.update(
            {
                "users": opts.users,
                "sent": {
                    "total": len(self.messages),
                    "room": room,
                    "private": len(self.messages) - room,
                    "accepted": len(self.messages) - self.push_failed,
                    "failed": self.push_failed,
                    "skipped_all_senders_busy": self.push_skipped,
                    "per_s": round(len(self.messages) / summary["load_s"], 2) if summary.get("load_s") else None,
                    "api_latency_ms": summarize(sorted(self.push_us), 1000),
                },
                "expected": tally["expected"],
                "delivered": tally["delivered"],
                "delivered_expected": tally["delivered_expected"],
                "lost": tally["lost"],
                "duplicated": counts.get("duplicated", 0),
                "reordered": counts.get("reordered", 0),
                "reordered_pairs": sum(r["reordered_pairs"] for r in results),
                "misdelivered": tally["misdelivered"],
                "delivered_outside_window": tally["delivered_outside_window"],
                "delivered_unaccepted": tally["delivered_unaccepted"],
                "foreign": counts.get("foreign", 0),
                "latency_ms": summarize(latencies, 1000),
                "churn": {
                    "connections": counts.get("connections", 0),
                    "by_transport": by_transport,
                    "confirmed_joins": counts.get("confirmed", 0),
                    "rejoins": counts.get("reconnects", 0),
                    "room_changes": counts.get("room_changes", 0),
                    "transport_switches": counts.get("transport_switches", 0),
                    "planned_closes": counts.get("planned_closes", 0),
                    "server_closes": counts.get("server_closes", 0),
                    "connect_failures": counts.get("connect_failures", 0),
                    "join_timeouts": counts.get("join_timeouts", 0),
                    "settle_waits": counts.get("settle_waits", 0),
                    "settle_timeouts": counts.get("settle_timeouts", 0),
                    "member_lists_received": counts.get("member_lists", 0),
                    "join_confirm_ms": summarize(confirms, 1),
                    "held_s": summarize(lifetimes, 1000, 1),
                },
                "lost_by_kind_and_transport": tally["lost_by_kind_and_transport"],
                "lost_samples": tally["lost_samples"],
                "misdelivered_samples": tally["misdelivered_samples"],
                "duplicate_samples": [s for r in results for s in r["dup_samples"]][:10],
                "reorder_samples": [s for r in results for s in r["reorder_samples"]][:10],
            }
        )
        if opts.resume:
            summary["resume"] = resume_figures(connections, counts)
        gochat_rows = [row for row in summary["processes"] if row["pid"] in self.gochat]
        summary["memory"] = {
            "rss_growth_kib_total": sum(row["rss_growth_kib"] or 0 for row in summary["processes"]),
            "rss_growth_second_half_kib_max": max(
                (row["rss_growth_second_half_kib"] or 0 for row in summary["processes"]), default=None
            ),
            "gochat_processes_alive_at_end": sum(1 for row in gochat_rows if row["alive_at_end"]),
        }

    def ok(self) -> bool:
        s = self.summary
        if s.get("aborted") or "lost" not in s:
            return False
        died = any(not row["alive_at_end"] for row in s.get("processes", []))
        return (
            s["lost"] == 0
            and s["duplicated"] == 0
            and s["reordered"] == 0
            and s["misdelivered"] == 0
            and s["sent"]["failed"] == 0
            and not died
        )


def resume_figures(connections: list[ConnectionRecord], counts: dict[str, int]) -> dict[str, Any]:
    """How rejoins with ``since`` went: how many, the op-7 gaps, the messages each got that were sent
    while the user was away, and the time from opening the connection to the last of them
    (``catch_up_ms``; rejoins that missed nothing have no catch-up and are left out)."""
    resumed = [c for c in connections if c.resumed]
    caught = [c for c in resumed if c.missed]
    return {
        "rejoins_with_since": len(resumed),
        "rejoins_without_since": counts.get("reconnects", 0) - len(resumed),
        "gaps": {k[4:]: v for k, v in sorted(counts.items()) if k.startswith("gap_")},
        "rejoins_that_missed_messages": len(caught),
        "missed_per_rejoin": summarize(sorted(c.missed for c in caught), 1),
        "missed_total": sum(c.missed for c in resumed),
        "catch_up_ms": summarize(sorted((c.caught_up_ns - c.opened_ns) / 1e6 for c in caught), 1),
        "catch_up_after_confirm_ms": summarize(
            sorted((c.caught_up_ns - c.confirmed_ns) / 1e6 for c in caught if c.confirmed_ns), 1
        ),
    }


async def run_soak(opts: SoakOptions) -> dict[str, Any]:
    return await SoakCoordinator(opts).run()


def soak_main(args: argparse.Namespace) -> int:
    """``gochat-py bench soak``: parses, runs, prints the summary; the exit status."""
    try:
        opts = soak_options_from_args(args)
    except TargetError as exc:
        print(f"gochat-py bench soak: {exc}", file=sys.stderr)
        return 2
    from gochat_py.bench.coordinator import run_to_summary

    summary, text = run_to_summary(run_soak(opts), opts.output)
    print(text, flush=True)
    return 0 if summary.get("ok") else 1
