"""The coordinator: sets a scenario up, runs it, and builds the JSON summary.

Every mode follows the same steps, each bounded in time:

1. users ``bench_<run id>_<n>`` are registered through the api (not in floor mode);
2. client processes open and join the sockets and report once every socket is in its room;
3. CPU and RSS of every gochat process (and of the bench's own processes) are sampled;
4. the load runs: room messages at a concurrency (``room``), at a rate (``rate``), private
   messages to random online users (``private``), nothing for a while (``idle``), or the floor
   server's own fan-out (``floor``);
5. the coordinator waits until every expected delivery arrived, or nothing arrived for
   ``--drain-timeout`` seconds, or ``--max-seconds`` ran out; it samples the processes again,
   stops the clients and merges what they counted.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from gochat_py.bench import metrics_scrape, procstats
from gochat_py.bench.api import Api, ApiError, bounded_map
from gochat_py.bench.children import (
    ChildLink,
    bench_pids,
    results_of,
    spread,
    start_child,
    stop_children,
    wait_connected,
)
from gochat_py.bench.clients import ClientPlan, SocketSpec, client_main
from gochat_py.bench.coordinator import RunCoordinator
from gochat_py.bench.floor import floor_main
from gochat_py.bench.options import BenchOptions, check_loopback_address, protocol_of
from gochat_py.bench.stamp import make_stamp
from gochat_py.bench.stats import cdf_sample, rate, summarize

ROOM_ASK_FIRST = 0.5  # seconds after the start of the connect phase before rooms are first asked for their count
ROOM_ASK_EVERY = 2.0  # seconds between /push/count rounds while sockets are not yet known to be in their rooms


# one push: (seq, the api call that sends a message text, where it goes for the errors)
Push = tuple[int, Callable[[str], Awaitable[dict[str, Any]]], str]


class BenchError(RuntimeError):
    """The run could not be set up or carried out (the summary says how far it got)."""


class Coordinator(RunCoordinator):
    def __init__(self, opts: BenchOptions) -> None:
        super().__init__(opts, opts.max_seconds)
        self.opts = opts
        self.room_id = opts.room_id or self.rng.randrange(10_000_000, 1_000_000_000)
        self.floor: ChildLink | None = None
        self.protocol = protocol_of(opts)
        self.send = opts.send[0]
        self.summary = self.head(
            "gochat-py bench",
            {"mode": opts.mode, "transport": opts.transport, "protocol": self.protocol, "send": self.send},
            {"room_id": self.room_id},
            ("progress", "plot", "output", "extra"),
        )

    # ---------------------------------------------------------------- helpers

    def take_sample(self) -> None:
        self.samples.append((time.monotonic_ns(), procstats.snapshot(self.everyone), procstats.machine_busy_jiffies()))

    async def sample_processes(self) -> None:
        """CPU samples every 0.25 s, so the figures can end right after the last delivery."""
        while True:
            self.take_sample()
            await asyncio.sleep(0.25)

    @staticmethod
    def other_load(summary: dict[str, Any]) -> float | None:
        """CPU % (of one core) that processes outside the system and the bench used in the window:
        a benchmark on a busy machine says so."""
        busy = summary.get("machine_busy_pct")
        if busy is None:
            return None
        ours = sum(row["cpu_pct"] or 0 for row in summary["processes"] + summary["bench_processes"])
        return round(max(0.0, busy * (os.cpu_count() or 1) - ours), 1)

    def target_ports(self) -> list[int]:
        ports = [urlsplit(url).port or 80 for url in (self.opts.api, *(self.opts.ws_urls or [self.opts.ws]))]
        if self.opts.transport != "ws":
            ports.append(check_loopback_address(self.opts.tcp)[1])
        return ports

    # ---------------------------------------------------------------- phases

    def socket_specs(self, tokens: list[str], user_ids: list[int]) -> list[SocketSpec]:
        opts = self.opts
        specs = []
        per_user_rooms = opts.mode in ("private", "idle")
        v2 = self.protocol == "v2"
        users = opts.users
        nodes = max(1, len(opts.ws_urls))
        ws_sockets = 0
        for user in range(users):
            for _ in range(opts.sockets_per_user):
                index = len(specs)
                transport = ("tcp" if index % 2 else "ws") if opts.transport == "mixed" else opts.transport
                node = ws_sockets % nodes if transport == "ws" else 0
                ws_sockets += transport == "ws"
                specs.append(
                    SocketSpec(
                        token=tokens[user] if tokens else "floor",
                        room_id=self.room_id + user if per_user_rooms else self.room_id,
                        user_id=user_ids[user] if user_ids else 0,
                        transport=transport,
                        ready_count=1 if per_user_rooms else (users * opts.sockets_per_user if not tokens else users),
                        node=node,
                        since="" if opts.join_since else None,
                        rooms=self.v2_rooms(user) if v2 else (),
                    )
                )
        return specs

    def v2_rooms(self, user: int) -> tuple[int, ...]:
        """The rooms a v2 socket of ``user`` subscribes to: the shared room; none for private
        messages (a v2 socket gets them in no room); in idle mode its own room and the next
        ``rooms_per_socket - 1`` users' rooms, so every room has that many users."""
        opts = self.opts
        if opts.mode in ("room", "rate"):
            return (self.room_id,)
        if opts.mode == "private":
            return ()
        return tuple(self.room_id + (user + k) % opts.users for k in range(opts.rooms_per_socket))

    def planned_sends(self, specs: list[SocketSpec], targets: list[int] | None) -> list[tuple[int, int, int, int]]:
        """``--send socket``: (seq, sender socket, room, to) of every message, from the same
        sender HTTP would push it as (the first socket of that user)."""
        opts = self.opts
        per_user = opts.sockets_per_user
        sends = []
        for seq in range(opts.messages):
            if targets is not None:
                sender = (self.target_index[seq] + 1) % opts.users
                sends.append((seq, sender * per_user, 0, targets[seq]))
            else:
                sends.append((seq, (seq % opts.users) * per_user, specs[0].room_id, 0))
        return sends

    async def open_sockets(
        self,
        specs: list[SocketSpec],
        ws_urls: list[str],
        targets: list[int] | None,
        ask_counts: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Starts the client processes and waits until every socket is in its room.

        ``ask_counts`` asks the server for the online count of every room (``/push/count``):
        its op 4 frame reaching a socket is the wire's own proof that the socket is in the room,
        for any server (one that sends no member list on join, or one a room too big for it), so
        once every socket is open it is asked for, and again every ``ROOM_ASK_EVERY`` seconds
        while sockets are missing.
        """
        opts = self.opts
        tcp = check_loopback_address(opts.tcp) if opts.transport != "ws" else ("127.0.0.1", 0)
        procs = min(opts.client_procs, max(1, len(specs)))
        dealt = spread(specs, procs)
        sends: list[list[tuple[int, int, int, int]]] = [[] for _ in dealt]
        if self.send == "socket":
            place = {
                socket: (number, local) for number, indices in enumerate(dealt) for local, socket in enumerate(indices)
            }
            for seq, socket, room, to in self.planned_sends(specs, targets):
                number, local = place[socket]
                sends[number].append((seq, local, room, to))
        for number, indices in enumerate(dealt):
            plan = ClientPlan(
                index=number,
                run_id=self.run_id,
                ws_urls=ws_urls,
                tcp=tcp,
                sockets=[specs[i] for i in indices],
                messages=opts.messages if opts.mode != "idle" else opts.idle_messages,
                source_ips=opts.source_ips,
                targets=targets,
                connect_concurrency=opts.connect_concurrency,
                connect_timeout=min(60.0, self.remaining()),
                # v1: op-4 rounds keep frames coming, so only this bound ends a wait for a lost join
                ready_timeout=min(120.0, self.remaining()) if self.protocol == "v1" else self.remaining(),
                max_seconds=self.remaining() + 30,
                protocol=self.protocol,
                sends=sends[number],
                send_concurrency=max(1, opts.concurrency // len(dealt)),
                send_rate=opts.rate if opts.mode == "rate" else 0.0,
                answer_timeout=opts.drain_timeout,
            )
            self.links.append(start_child(self.context, f"client-{number}", client_main, (plan,)))
        if self.floor is not None:
            self.floor.send(("announce", min(120.0, self.remaining())))
        total = len(specs)
        next_ask = time.monotonic() + ROOM_ASK_FIRST

        async def nudge(opened: int, ready: int) -> None:
            nonlocal next_ask
            if ask_counts and opened == total and ready < total and time.monotonic() >= next_ask:
                try:
                    await ask_counts()
                except Exception as exc:  # the clients' own timeout decides; this is only a nudge
                    self._error(f"/push/count: {type(exc).__name__}: {exc}")
                next_ask = time.monotonic() + ROOM_ASK_EVERY

        infos = await wait_connected(self.links, total, self.progress, self.remaining, self._error, BenchError, nudge)
        handshakes = sorted(array.array("q", b"".join(i["handshake_us"] for i in infos)))
        joins = sorted(array.array("q", b"".join(i["join_us"] for i in infos)))
        started = min(i["started_ns"] for i in infos)
        self.summary["connect"] = {
            "sockets": total,
            "opened": sum(i["opened"] for i in infos),
            "failed": sum(i["failed"] for i in infos),
            "ready": sum(i["ready"] for i in infos),
            "client_procs": len(infos),
            "source_ips": opts.source_ips,
            "file_limit": min(i["file_limit"] for i in infos),
            "ws_urls": ws_urls,
            "opened_by_node": self.by_node(i["opened_by_node"] for i in infos),
            "time_s": round((max(i["connected_ns"] for i in infos) - started) / 1e9, 3),
            "ready_time_s": round((max(i["ready_ns"] for i in infos) - started) / 1e9, 3),
            "per_s": rate(sum(i["opened"] for i in infos), (max(i["connected_ns"] for i in infos) - started) / 1e9),
            "handshake_ms": summarize(handshakes, 1000),
            "join_ms": summarize(joins, 1000),
        }
        limits = next((i["v2_limits"] for i in infos if i.get("v2_limits")), None)
        if limits:
            self.summary["connect"]["v2_limits"] = limits
            self.summary["connect"]["resubscribed"] = sum(i["resubscribed"] for i in infos)
        if self.summary["connect"]["ready"] < total and opts.mode != "idle":
            # pushing into an incomplete room would only measure the failure: stop here
            # (idle mode goes on with the sockets it has, and reports the refused ones)
            disconnected = sum(link.disconnected for link in self.links)
            raise BenchError(
                f"only {self.summary['connect']['ready']} of {total} sockets got into their room "
                f"({self.summary['connect']['failed']} failed to open, {disconnected} closed by the server)"
            )

    async def ask_counts(self, api: Api, tokens: list[str]) -> None:
        """One ``/push/count`` for each room of the run (the shared one, or every user's own)."""
        if self.opts.mode in ("room", "rate"):
            rooms = [(tokens[0], self.room_id)]
        else:
            rooms = [(token, self.room_id + user) for user, token in enumerate(tokens)]

        async def ask(room: tuple[str, int]) -> None:
            reply = await api.post("/push/count", {"authToken": room[0], "roomId": room[1]})
            if reply["code"] != 0:
                self._error(f"/push/count room {room[1]}: code {reply['code']} {reply.get('message')!r}")

        await bounded_map(self.opts.concurrency, rooms, ask)

    async def push_all(self, jobs: list[Push]) -> None:
        """Pushes every job at most ``--concurrency`` at once (``--rate`` per second in rate mode)
        and records the push figures; a refused or failed push is counted, never fatal."""
        opts = self.opts
        accepted = failed = 0
        push_us = array.array("q")
        limit = asyncio.Semaphore(opts.concurrency)

        async def push(seq: int, call: Callable[[str], Awaitable[dict[str, Any]]], where: str) -> None:
            nonlocal accepted, failed
            try:
                sent = time.monotonic_ns()
                reply = await call(make_stamp(self.run_id, seq, sent))
                push_us.append((time.monotonic_ns() - sent) // 1000)
                if reply["code"] == 0:
                    accepted += 1
                else:
                    failed += 1
                    self._error(f"push {seq}{where}: code {reply['code']} {reply.get('message')!r}")
            except Exception as exc:  # any failure is counted, never fatal to the run
                failed += 1
                self._error(f"push {seq}{where}: {type(exc).__name__}: {exc}")
            finally:
                limit.release()

        self.push_started_ns = time.monotonic_ns()
        tasks = set()
        for number, job in enumerate(jobs):
            if self.remaining() <= 0:
                break
            if opts.mode == "rate":
                delay = (self.push_started_ns + int(number * 1e9 / opts.rate) - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            await limit.acquire()
            task = asyncio.create_task(push(*job))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self._show_delivery()
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, self.remaining()))
        self._record_pushes(accepted, failed, push_us)

    def message_pushes(self, api: Api, tokens: list[str], targets: list[int] | None) -> list[Push]:
        """The messages of the room, rate and private modes: seq n from user n (a private one from
        the user after its target) into the run's room, or to its target."""
        users, room = len(tokens), self.room_id
        per_message = self.opts.sockets_per_user if targets is not None else self.summary["connect"]["sockets"]
        self.expected_total = self.opts.messages * per_message
        if targets is None:
            return [(seq, partial(api.push_room, tokens[seq % users], room), "") for seq in range(self.opts.messages)]
        senders = [tokens[(self.target_index[seq] + 1) % users] for seq in range(self.opts.messages)]
        return [(seq, partial(api.push, senders[seq], targets[seq], room), "") for seq in range(self.opts.messages)]

    async def send_over_sockets(self) -> None:
        """``--send socket``: every client process sends its share of the messages from the
        senders' own sockets and reports once every reply came; the figures are the push
        phase's, with each message's reply in place of the HTTP response."""
        self.expected_total = self.opts.messages * (
            self.opts.sockets_per_user if self.opts.mode == "private" else self.summary["connect"]["sockets"]
        )
        self.push_started_ns = time.monotonic_ns()
        for link in self.links:
            link.send(("go", self.push_started_ns))
        reports: list[dict[str, Any]] = []
        waiting = list(self.links)
        while waiting and self.remaining() > 0:
            for link in list(waiting):
                while not link.messages.empty():
                    message = link.messages.get_nowait()
                    if message[0] == "sent":
                        reports.append(message[1])
                        waiting.remove(link)
                if link in waiting and link.eof:
                    waiting.remove(link)
                    self._error(f"{link.name} ended before reporting its sends")
            self._show_delivery()
            await asyncio.sleep(0.05)
        if waiting:
            self._error(f"{len(waiting)} client process(es) did not finish sending within --max-seconds")
        failed = sum(r["failed"] for r in reports) + self.opts.messages - sum(r["sent"] for r in reports)
        ack_us = array.array("q", b"".join(r["ack_us"] for r in reports))
        last_ns = max((r["last_ns"] for r in reports), default=0)
        self._record_pushes(sum(r["accepted"] for r in reports), failed, ack_us, last_ns or None)

    def _record_pushes(self, accepted: int, failed: int, push_us: array.array, ended_ns: int | None = None) -> None:
        """The push phase's figures, once it is over (``ended_ns``: when its last reply came)."""
        self.push_ended_ns = ended_ns or time.monotonic_ns()
        push_s = (self.push_ended_ns - self.push_started_ns) / 1e9
        self.summary["push"] = {
            "requests": accepted + failed,
            "accepted": accepted,
            "failed": failed,
            "time_s": round(push_s, 3),
            "requests_per_s": rate(accepted + failed, push_s),
            "latency_ms": summarize(sorted(push_us), 1000),
        }

    def idle_pushes(self, api: Api, tokens: list[str]) -> list[Push]:
        """``--idle-messages K``: K room messages into every user's room, after the hold (so the
        RSS figures are not touched).  Round k carries seq k in every room, so each socket
        expects seqs 0..K-1 exactly once and keeps K bytes of bookkeeping, not users × K."""
        rooms = [(token, self.room_id + user) for user, token in enumerate(tokens)]
        self.expected_total = self.opts.idle_messages * len(rooms) * self.opts.sockets_per_user
        return [
            (seq, partial(api.push_room, token, room), f" to room {room}")
            for seq in range(self.opts.idle_messages)
            for token, room in rooms
        ]

    @staticmethod
    def by_node(lists: Any) -> list[int]:
        """Per-node counts of several client processes added up (each list is one per ws URL)."""
        totals: list[int] = []
        for counts in lists:
            if len(totals) < len(counts):
                totals += [0] * (len(counts) - len(totals))
            for node, count in enumerate(counts):
                totals[node] += count
        return totals

    def expected_deliveries(self) -> int:
        opts = self.opts
        accepted = self.summary.get("push", {}).get("accepted", 0)
        if opts.mode == "private":
            return accepted * opts.sockets_per_user
        if opts.mode == "idle":  # --idle-messages: every user's room, sockets_per_user sockets each
            return accepted * opts.sockets_per_user
        return accepted * self.summary["connect"]["sockets"]

    def _show_delivery(self) -> None:
        total = getattr(self, "expected_total", 0)
        unique = sum(link.unique for link in self.links)
        dups = sum(link.duplicated for link in self.links)
        lost_socks = sum(link.disconnected for link in self.links)
        extra = f"dup {dups}" + (f" disconnected {lost_socks}" if lost_socks else "")
        self.progress.update("deliver", unique, total, extra)

    async def drain(self) -> None:
        """Waits for every expected delivery, for silence, or for the deadline."""
        self.expected_total = self.expected_deliveries()
        last_seen = -1
        quiet_since = time.monotonic()
        while self.remaining() > 0:
            unique = sum(link.unique for link in self.links)
            if unique >= self.expected_total:
                break
            if unique != last_seen:
                last_seen, quiet_since = unique, time.monotonic()
            elif time.monotonic() - quiet_since > self.opts.drain_timeout:
                self._error(f"gave up waiting: nothing arrived for {self.opts.drain_timeout} s")
                break
            if all(link.eof for link in self.links):
                break
            self._show_delivery()
            await asyncio.sleep(0.05)
        # let the clients' next progress report arrive so their counters are final
        await asyncio.sleep(0.15)
        self._show_delivery()

    # ---------------------------------------------------------------- the run

    async def run(self) -> dict[str, Any]:
        opts = self.opts
        summary = self.summary
        gochat: dict[int, str] = {}
        if opts.mode != "floor":
            gochat, how = procstats.system_processes(self.target_ports())
            summary["gochat_processes"] = {"found": len(gochat), "how": how}
        # the system's own counters, read around the same window as the CPU figures (not in floor mode:
        # no gochat process takes part)
        watch = metrics_scrape.Watch(opts.metrics, gochat) if opts.metrics and opts.mode != "floor" else None
        summary["load_average_before"] = procstats.load_average()
        tokens: list[str] = []
        user_ids: list[int] = []
        targets: list[int] | None = None
        ws_urls = opts.ws_urls
        async with Api(opts.api, connections=max(opts.concurrency, opts.register_concurrency) + 4) as api:
            try:
                if opts.mode == "floor":
                    self.floor = start_child(
                        self.context,
                        "floor-server",
                        floor_main,
                        (
                            (
                                opts.users * opts.sockets_per_user,
                                self.room_id,
                                self.run_id,
                                self.remaining() + 30,
                                opts.floor_batch,
                            ),
                        ),
                    )
                    while self.floor.messages.empty():
                        if self.floor.eof or self.remaining() <= 0:
                            raise BenchError("the floor server did not start")
                        await asyncio.sleep(0.02)
                    _, port = await self.floor.messages.get()
                    ws_urls = [f"ws://127.0.0.1:{port}/ws"]
                else:
                    ids = opts.concurrency if opts.mode == "private" else 0  # private messages go to user ids
                    tokens, user_ids = await self.register(api, "bench", ids)
                if opts.mode == "private":
                    self.target_index = [self.rng.randrange(len(user_ids)) for _ in range(opts.messages)]
                    targets = [user_ids[i] for i in self.target_index]
                before_connect = procstats.snapshot(gochat)
                specs = self.socket_specs(tokens, user_ids)
                await self.open_sockets(
                    specs,
                    ws_urls,
                    targets,
                    (lambda: self.ask_counts(api, tokens)) if tokens and self.protocol == "v1" else None,
                )
                after_connect = procstats.snapshot(gochat)
                if opts.mode == "idle":
                    if watch is not None:
                        await watch.begin()
                    await self.hold(before_connect, after_connect, gochat)
                    if watch is not None:
                        summary["metrics"] = await watch.end()
                    if opts.idle_messages:  # room delivery still working with every socket held
                        await self.push_all(self.idle_pushes(api, tokens))
                        await self.drain()
                else:
                    everyone = {**gochat, **bench_pids(self.links + ([self.floor] if self.floor else []))}
                    if watch is not None:
                        await watch.begin()
                    start = procstats.snapshot(everyone)
                    busy_start = procstats.machine_busy_jiffies()
                    started_ns = time.monotonic_ns()
                    self.everyone = everyone
                    self.samples = []
                    sampler = asyncio.create_task(self.sample_processes())
                    if opts.mode == "floor":
                        await self.floor_fan_out()
                    elif self.send == "socket":
                        await self.send_over_sockets()
                    else:
                        await self.push_all(self.message_pushes(api, tokens, targets))
                    await self.drain()
                    sampler.cancel()
                    self.take_sample()
                    if watch is not None:
                        summary["metrics"] = await watch.end()
                    # the window ends with the first sample taken after the last delivery
                    last_ns = max((link.last_ns for link in self.links), default=0)
                    end_ns, end, busy_end = self.samples[-1]
                    for taken_ns, snap, busy in self.samples:
                        if taken_ns >= last_ns:
                            end_ns, end, busy_end = taken_ns, snap, busy
                            break
                    wall = (end_ns - started_ns) / 1e9
                    summary["window_s"] = round(wall, 3)
                    total = busy_end[1] - busy_start[1]
                    summary["machine_busy_pct"] = (
                        round(100 * (busy_end[0] - busy_start[0]) / total, 1) if total > 0 else None
                    )
                    summary["processes"] = procstats.compare(start, {p: s for p, s in end.items() if p in gochat}, wall)
                    summary["bench_processes"] = procstats.compare(
                        start, {p: s for p, s in end.items() if p not in gochat}, wall
                    )
                    summary["other_load_pct"] = self.other_load(summary)
            except (BenchError, ApiError, OSError) as exc:
                self._error(f"{type(exc).__name__}: {exc}")
                summary["aborted"] = True
            finally:
                if watch is not None:
                    watch.cancel()
                self.progress.end()
                await stop_children(self.links + ([self.floor] if self.floor else []), self.links, 20)
        if (opts.mode != "idle" or opts.idle_messages) and not summary.get("aborted"):
            self.merge_results()
        summary["errors"] = self.errors
        summary["ok"] = self.ok()
        return summary

    async def floor_fan_out(self) -> None:
        assert self.floor is not None
        # the announce reply came before the clients reported ready
        while not self.floor.messages.empty():
            self.floor.messages.get_nowait()
        self.floor.send(("go", self.opts.messages))
        self.push_started_ns = time.monotonic_ns()
        self.summary["push"] = {"accepted": self.opts.messages}
        self.expected_total = self.expected_deliveries()
        while self.remaining() > 0:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(self.floor.messages.get(), 0.1)
                if message[0] == "sent":
                    started, ended = message[1], message[2]
                    seconds = (ended - started) / 1e9
                    self.summary["push"] = {
                        "requests": self.opts.messages,
                        "accepted": self.opts.messages,
                        "failed": 0,
                        "time_s": round(seconds, 3),
                        "requests_per_s": rate(self.opts.messages, seconds),
                    }
                    self.push_started_ns = started
                    return
            if self.floor.eof:
                raise BenchError("the floor server died")
            self._show_delivery()
        raise BenchError("the floor server did not finish within --max-seconds")

    async def hold(self, before: dict, after_connect: dict, gochat: dict[int, str]) -> None:
        opts = self.opts
        started = time.monotonic()
        while time.monotonic() - started < opts.hold and self.remaining() > 0:
            self.progress.update("hold", int(time.monotonic() - started), int(opts.hold))
            await asyncio.sleep(0.2)
        end = procstats.snapshot(gochat)
        opened = self.summary["connect"]["opened"]
        rows = procstats.compare(before, end, time.monotonic() - started)
        for row in rows:
            start = before.get(row["pid"])
            connected = after_connect.get(row["pid"])
            row["rss_kib_connected"] = connected.rss_kib if connected else None
            row["rss_delta_kib"] = row["rss_kib"] - start.rss_kib if start else None
        self.summary["processes"] = rows
        modules = {"ws": ("connect_websocket",), "tcp": ("connect_tcp",)}.get(
            opts.transport, ("connect_websocket", "connect_tcp")
        )
        connect_rows = [r for r in rows if r["name"] in modules and r["rss_delta_kib"] is not None]
        delta = sum(r["rss_delta_kib"] for r in connect_rows)
        disconnected = sum(link.disconnected for link in self.links)
        opened -= sum(link.disconnected for link in self.links)  # refused joins hold no memory
        self.summary["idle"] = {
            "connections": opened,
            "held_s": round(time.monotonic() - started, 1),
            "disconnected": disconnected,
            "connect_processes": len(connect_rows),
            "connect_rss_delta_kib": delta,
            "rss_per_connection_kib": round(delta / opened, 2) if opened else None,
            "nodes": self.idle_nodes(rows, gochat),
        }

    def idle_nodes(self, rows: list[dict[str, Any]], gochat: dict[int, str]) -> list[dict[str, Any]]:
        """Idle memory per websocket node: the RSS growth of the process listening on that URL's
        port ÷ the connections that went to it and stayed (the overall figure mixes the nodes)."""
        opened = self.by_node(link.connected["opened_by_node"] for link in self.links if link.connected)
        dropped = self.by_node(link.disconnected_by_node for link in self.links)
        by_pid = {row["pid"]: row for row in rows}
        nodes = []
        for node, url in enumerate(self.opts.ws_urls):
            pids = procstats.listening_pids(urlsplit(url).port or 80, gochat)
            row = by_pid.get(next(iter(pids))) if len(pids) == 1 else None
            connections = (opened[node] if node < len(opened) else 0) - (dropped[node] if node < len(dropped) else 0)
            delta = row["rss_delta_kib"] if row else None
            per_connection = round(delta / connections, 2) if delta is not None and connections > 0 else None
            nodes.append(
                {
                    "url": url,
                    "pid": row["pid"] if row else None,
                    "connections": connections,
                    "rss_kib": row["rss_kib"] if row else None,
                    "rss_delta_kib": delta,
                    "rss_per_connection_kib": per_connection,
                }
            )
        return nodes

    def merge_results(self) -> None:
        summary = self.summary
        results = results_of(self.links, self._error)
        latencies = sorted(array.array("q", b"".join(r["latencies_us"] for r in results)))
        unique = sum(r["unique"] for r in results)
        last_ns = max((r["last_ns"] for r in results), default=0)
        expected = self.expected_deliveries()
        started = getattr(self, "push_started_ns", 0)
        seconds = (last_ns - started) / 1e9 if last_ns and started else 0.0
        summary.update(
            {
                "users": self.opts.users,
                "sockets": summary["connect"]["sockets"],
                "messages": self.opts.idle_messages if self.opts.mode == "idle" else self.opts.messages,
                "expected_deliveries": expected,
                "deliveries": unique,
                "lost": max(0, expected - unique),
                "duplicated": sum(r["duplicated"] for r in results),
                "misdelivered": sum(r["misdelivered"] for r in results),
                "foreign": sum(r["foreign"] for r in results),
                "disconnected": sum(r["disconnected"] for r in results),
                "delivery_time_s": round(seconds, 3),
                "deliveries_per_s": rate(unique, seconds),
                "push_requests_per_s": summary["push"].get("requests_per_s"),
                "latency_ms": summarize(latencies, 1000),
                "latency_cdf_ms": cdf_sample(latencies, 201, 1000),
                "latency_by_client_ms": [{"client": n, **_p50_p99(r["latencies_us"])} for n, r in enumerate(results)],
            }
        )
        if self.opts.ws_urls and self.opts.transport != "tcp":
            delivered = self.by_node(r.get("unique_by_node", []) for r in results)
            dropped = self.by_node(r.get("disconnected_by_node", []) for r in results)
            opened = summary["connect"].get("opened_by_node", [])
            summary["ws_nodes"] = [
                {
                    "url": url,
                    "opened": opened[n] if n < len(opened) else 0,
                    "disconnected": dropped[n] if n < len(dropped) else 0,
                    "deliveries": delivered[n] if n < len(delivered) else 0,
                }
                for n, url in enumerate(self.opts.ws_urls)
            ]
        if self.opts.mode != "idle":  # idle's process rows cover the hold, not the pushes
            summary["cpu_us_per_delivery"] = self.cpu_per_delivery(summary, unique)

    @staticmethod
    def cpu_per_delivery(summary: dict[str, Any], deliveries: int) -> dict[str, float]:
        """CPU microseconds per delivery, per process and for the whole system: unlike rates, this
        hardly changes when other work shares the machine."""
        if not deliveries:
            return {}
        out: dict[str, float] = {}
        total = 0.0
        for row in summary.get("processes", []) + summary.get("bench_processes", []):
            if row["cpu_s"] is None:
                continue
            name = str(row["name"])
            out[name] = round(out.get(name, 0.0) + row["cpu_s"] * 1e6 / deliveries, 2)
            if not name.startswith("bench:"):
                total += row["cpu_s"]
        out["gochat_total"] = round(total * 1e6 / deliveries, 2)
        return out

    def ok(self) -> bool:
        s = self.summary
        if s.get("aborted") or s.get("connect", {}).get("failed"):
            return False
        if s["mode"] == "idle":
            held = s.get("idle", {}).get("disconnected", 1) == 0
            if not s["params"].get("idle_messages"):
                return held
            return (
                held
                and s.get("lost") == 0
                and s.get("duplicated") == 0
                and s.get("disconnected") == 0
                and s.get("push", {}).get("failed", 1) == 0
            )
        return (
            s.get("lost") == 0
            and s.get("duplicated") == 0
            and s.get("misdelivered") == 0
            and s.get("push", {}).get("failed", 1) == 0
        )


async def run_bench(opts: BenchOptions) -> dict[str, Any]:
    return await Coordinator(opts).run()


def _p50_p99(latencies_us: bytes) -> dict[str, float | int | None]:
    """One client process's share: when one process's p99 stands far above the others', the lag
    is on the client side (that process waited for a core), not in the server."""
    values = sorted(array.array("q", latencies_us))
    figures = summarize(values, 1000)
    return {"count": len(values), "p50": figures["p50"], "p99": figures["p99"], "max": figures["max"]}
