"""A soak client process: its users' connections, churned at random, and what each one receives.

Started by the soak coordinator (``multiprocessing``, spawn) with a :class:`SoakPlan` and a pipe.
Each user runs one loop: open a connection (websocket, or TCP spread over the given addresses),
send the join, wait until the join is *confirmed* (an op-5 member list naming the user arrives
on that connection: a join has no reply, and the list is broadcast after logic recorded the
join), hold it for a random time (exponential, mean ``churn_interval``), close it, wait a
random delay and join again, in a random room (and now and then over the other transport).

Before a user rejoins a room its previous connection was in, the client waits (at most
``settle_timeout``) until some other connection of this process in that room has received a
member list *without* the user: only then is the old connection's leave recorded, so the new
join's confirmation cannot come from a stale list that still named the user because of the old
connection.

With ``resume`` (``--resume``) every join carries ``since``: ``""`` on a user's first join (ids in
the frames from then on), the id of the last message the user received on every rejoin, which
stays in the same room; the user's dedup and order state then spans its connections, and each
connection notes how many messages sent before it opened it received (its backlog) and when the
last of them arrived (caught up).

Protocol on the pipe (coordinator → client): ``("go",)`` starts the churn, ``("quiesce",)``
stops it (connections stay open, pending rejoins finish), ``("stop",)`` ends the run.  Client →
coordinator: ``("opening", opened, confirmed)`` while the first joins run, ``("connected",
info)`` once every user's first join is confirmed (or timed out), ``("progress", unique,
duplicated, server_closes, last_ns)`` and ``("stats", counts)`` a few times a second, and
``("result", info)`` after the stop, with every connection's record (see
:class:`~gochat_py.bench.soak_analysis.ConnectionRecord`).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import random
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

from gochat_py.bench.children import PipeCommands, run_child
from gochat_py.bench.soak_analysis import ConnectionRecord, ReceiverState, frame_id, frame_soak_stamp, gap_reason
from gochat_py.bench.sockets import close_all, open_socket

OP5_PREFIX = b'{"op":5,'
PROGRESS_INTERVAL = 0.25
MAX_SAMPLES = 10
MAX_ERRORS_KEPT = 10


@dataclass
class SoakUser:
    slot: int
    user_id: int
    token: str
    transport: str  # "ws" or "tcp": where the first connection goes
    first_room: int


@dataclass
class SoakPlan:
    index: int
    run_id: str
    ws_url: str
    tcp: list[tuple[str, int]]
    rooms: list[int]
    users: list[SoakUser]
    churn_interval: float = 30.0  # mean seconds a connection is held; 0: no churn
    min_lifetime: float = 1.0
    reconnect_delay: tuple[float, float] = (0.5, 2.0)
    switch_transport: float = 0.1
    join_timeout: float = 30.0
    settle_timeout: float = 5.0
    connect_timeout: float = 30.0
    connect_concurrency: int = 64
    max_seconds: float = 3600.0
    seed: int = 0
    resume: bool = False  # joins carry since; rejoins resume from the last id, in the same room


@dataclass(eq=False)
class LiveConnection:
    record: ConnectionRecord
    user_id: int
    state: ReceiverState = field(default_factory=ReceiverState)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    closing: bool = False
    handle: Any = None


class SoakWorker(PipeCommands):
    def __init__(self, plan: SoakPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.run_id = plan.run_id.encode()
        self.rng = random.Random(f"{plan.seed}-{plan.index}")
        self.live: dict[int, LiveConnection] = {}
        self.done: list[ConnectionRecord] = []
        self.next_conn = 0
        self.go = asyncio.Event()
        self.quiesce = asyncio.Event()
        self.stop = asyncio.Event()
        self.connect_limit = asyncio.Semaphore(plan.connect_concurrency)
        self.latencies_us = array.array("q")
        # settle tracking: rooms -> users whose last connection there closed and whose leave has
        # not yet been seen in a member list of that room
        self.unsettled: dict[int, dict[int, asyncio.Event]] = {}
        self.last_op5: dict[int, bytes] = {}
        self.first_confirmed = 0
        self.first_done = 0
        self.errors: list[str] = []
        self.counts = {
            "connections": 0,
            "confirmed": 0,
            "reconnects": 0,
            "planned_closes": 0,
            "server_closes": 0,
            "connect_failures": 0,
            "join_timeouts": 0,
            "transport_switches": 0,
            "room_changes": 0,
            "settle_waits": 0,
            "settle_timeouts": 0,
            "unique": 0,
            "duplicated": 0,
            "reordered": 0,
            "foreign": 0,
            "member_lists": 0,
            "other_frames": 0,
        }
        self.reordered_pairs: set[tuple[int, int]] = set()
        self.dup_samples: list[dict[str, Any]] = []
        self.reorder_samples: list[dict[str, Any]] = []
        self.last_ns = 0
        # --resume: per user slot, the id of the last message received and the dedup/order state
        self.last_id: dict[int, str] = {}
        self.user_states: dict[int, ReceiverState] = {}

    # ------------------------------------------------------------------ frames

    def on_frames(self, conn_id: int, bodies: list[bytes]) -> None:
        """Every payload a connection received at once (one websocket frame, or a TCP chunk's);
        the soak's churn, not frame cost, is what it measures, so each is counted on its own."""
        for body in bodies:
            self.on_frame(conn_id, body)

    def on_frame(self, conn_id: int, body: bytes) -> None:
        live = self.live.get(conn_id)
        if live is None:
            return
        if body.startswith(OP5_PREFIX):
            self.counts["member_lists"] += 1
            self._on_member_list(live, body)
            return
        stamp = frame_soak_stamp(body)
        if stamp is None:
            reason = gap_reason(body)
            if reason is None:
                self.counts["other_frames"] += 1
            else:
                self.counts[f"gap_{reason}"] = self.counts.get(f"gap_{reason}", 0) + 1
                live.record.gap = reason
            return
        if stamp.run_id != self.run_id:
            self.counts["foreign"] += 1
            return
        now = time.monotonic_ns()
        first, in_order = live.state.receive(stamp.sender, stamp.seq)
        record = live.record
        if not first:
            self.counts["duplicated"] += 1
            if len(self.dup_samples) < MAX_SAMPLES:
                self.dup_samples.append(
                    {"connection": record.conn_id, "user": record.user, "sender": stamp.sender, "seq": stamp.seq}
                )
            return
        record.received.append((stamp.sender << 32) | stamp.seq)
        self.counts["unique"] += 1
        self.last_ns = now
        if self.plan.resume:
            message_id = frame_id(body)
            if message_id is not None:
                self.last_id[record.user] = message_id
            if stamp.sent_ns < record.opened_ns:  # sent while the user was away: catch-up, not latency
                record.missed += 1
                record.caught_up_ns = now
            else:
                self.latencies_us.append((now - stamp.sent_ns) // 1000)
        else:
            self.latencies_us.append((now - stamp.sent_ns) // 1000)
        if not in_order:
            self.counts["reordered"] += 1
            self.reordered_pairs.add((record.conn_id, stamp.sender))
            if len(self.reorder_samples) < MAX_SAMPLES:
                self.reorder_samples.append(
                    {
                        "connection": record.conn_id,
                        "user": record.user,
                        "sender": stamp.sender,
                        "seq": stamp.seq,
                        "after_seq": live.state.highest[stamp.sender],
                    }
                )

    def _on_member_list(self, live: LiveConnection, body: bytes) -> None:
        room = live.record.room
        waiting = self.unsettled.get(room)
        needs_confirm = not live.confirmed.is_set()
        if not waiting and not needs_confirm:
            return
        if not needs_confirm and self.last_op5.get(room) == body:
            return  # the same list, already looked at through another connection
        self.last_op5[room] = body
        try:
            frame = orjson.loads(body)
            members = frame.get("roomUserInfo") or {}
            if frame.get("roomId", 0) != room:
                return
        except (orjson.JSONDecodeError, AttributeError):
            self.counts["other_frames"] += 1
            return
        if needs_confirm and str(live.user_id) in members:
            live.record.confirmed_ns = time.monotonic_ns()
            live.confirmed.set()
        if waiting:
            for user_id in [u for u in waiting if str(u) not in members]:
                waiting.pop(user_id).set()

    # ------------------------------------------------------------------ connections

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def _lost(self, conn_id: int, reason: str) -> None:
        live = self.live.get(conn_id)
        if live is None or live.closing:
            return
        live.closing = True
        live.record.closed_ns = time.monotonic_ns()
        live.record.planned = False
        live.record.reason = reason
        self.counts["server_closes"] += 1
        self._error(f"connection {conn_id} (user {live.record.user}, {live.record.transport}): {reason}")
        live.lost.set()

    async def _open(self, user: SoakUser, room: int, transport: str) -> LiveConnection | None:
        conn_id = (self.plan.index << 24) | self.next_conn
        self.next_conn += 1
        record = ConnectionRecord(conn_id, user.slot, transport, room, time.monotonic_ns())
        live = LiveConnection(record, user.user_id)
        join: dict[str, Any] = {"authToken": user.token, "roomId": room}
        if self.plan.resume:
            join["since"] = self.last_id.get(user.slot, "")
            record.resumed = bool(join["since"])
            live.state = self.user_states.setdefault(user.slot, ReceiverState())
        self.live[conn_id] = live
        self.counts["connections"] += 1
        if transport == "tcp":
            address: str | tuple[str, int] = self.plan.tcp[conn_id % len(self.plan.tcp)]
            join["op"] = 6
        else:
            address = self.plan.ws_url
        try:
            async with self.connect_limit:
                live.handle = await open_socket(
                    "tcp" if transport == "tcp" else "websockets",
                    address,
                    conn_id,
                    orjson.dumps(join),
                    self.on_frames,
                    self._lost,
                    timeout=self.plan.connect_timeout,
                )
        except Exception as exc:
            self.counts["connect_failures"] += 1
            self._error(f"open {transport} for user {user.slot}: {type(exc).__name__}: {exc}")
            del self.live[conn_id]
            return None
        return live

    async def _close(self, live: LiveConnection) -> None:
        """A planned close: the connection stops counting from this moment."""
        if not live.closing:
            live.closing = True
            live.record.closed_ns = time.monotonic_ns()
            live.record.reason = "closed by the soak"
            self.counts["planned_closes"] += 1
        with contextlib.suppress(Exception):
            await asyncio.wait_for(live.handle.close(), 5)
        self._retire(live)

    def _retire(self, live: LiveConnection) -> None:
        if self.live.pop(live.record.conn_id, None) is not None:
            if not self.plan.resume:
                live.state = ReceiverState()  # the dedup set is not needed any more (with resume: the user's)
            self.done.append(live.record)

    # ------------------------------------------------------------------ users

    async def _wait_any(self, *events: asyncio.Event, timeout: float | None = None) -> None:
        waits = [asyncio.ensure_future(e.wait()) for e in events]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _settle(self, user: SoakUser, room: int) -> None:
        """Waits until the user's earlier leave of ``room`` shows in a member list (bounded)."""
        event = self.unsettled.get(room, {}).get(user.user_id)
        if event is None:
            return
        self.counts["settle_waits"] += 1
        await self._wait_any(event, self.stop, timeout=self.plan.settle_timeout)
        if not event.is_set() and not self.stop.is_set():
            self.counts["settle_timeouts"] += 1
            self.unsettled.get(room, {}).pop(user.user_id, None)

    async def user_loop(self, user: SoakUser) -> None:
        plan, rng = self.plan, self.rng
        room, transport, first = user.first_room, user.transport, True
        while not self.stop.is_set():
            if not first:
                self.counts["reconnects"] += 1
                new_room = room if plan.resume else rng.choice(plan.rooms)
                self.counts["room_changes"] += new_room != room
                room = new_room
                if rng.random() < plan.switch_transport and plan.tcp and plan.ws_url:
                    transport = "tcp" if transport == "ws" else "ws"
                    self.counts["transport_switches"] += 1
                await self._settle(user, room)
                if self.stop.is_set():
                    break
            live = await self._open(user, room, transport)
            if live is None:
                await self._wait_any(self.stop, timeout=rng.uniform(*plan.reconnect_delay))
                first = self._first_done(first)
                continue
            await self._wait_any(live.confirmed, live.lost, self.stop, timeout=plan.join_timeout)
            if not live.confirmed.is_set():
                if not live.lost.is_set() and not self.stop.is_set():
                    self.counts["join_timeouts"] += 1
                    self._error(f"user {user.slot}: join of room {room} not confirmed in {plan.join_timeout} s")
                if self.stop.is_set():
                    break  # the result is being sent; the connection is left as it is
                await self._close(live)
                await self._wait_any(self.stop, timeout=rng.uniform(*plan.reconnect_delay))
                first = self._first_done(first)
                continue
            self.counts["confirmed"] += 1
            if first:
                self.first_confirmed += 1
                first = self._first_done(first)
                await self._wait_any(self.go, self.stop)
            if plan.churn_interval > 0:
                lifetime = max(plan.min_lifetime, rng.expovariate(1 / plan.churn_interval))
                await self._wait_any(live.lost, self.quiesce, self.stop, timeout=lifetime)
            if self.quiesce.is_set() or plan.churn_interval <= 0:
                await self._wait_any(live.lost, self.stop)
            if self.stop.is_set():
                break
            if not live.lost.is_set():
                # remember the leave before closing: a member list without the user may come fast
                self.unsettled.setdefault(room, {})[user.user_id] = asyncio.Event()
                await self._close(live)
            else:
                self._retire(live)
            delay = plan.reconnect_delay[0] if self.quiesce.is_set() else rng.uniform(*plan.reconnect_delay)
            await self._wait_any(self.stop, timeout=delay)

    def _first_done(self, first: bool) -> bool:
        if first:
            self.first_done += 1
        return False

    # ------------------------------------------------------------------ the run

    def on_command(self, command: tuple) -> None:
        if command[0] == "go":
            self.go.set()
        elif command[0] == "quiesce":
            self.quiesce.set()
        elif command[0] == "stop":
            self.quiesce.set()
            self.stop.set()

    def _stats(self) -> dict[str, Any]:
        return {**self.counts, "live": len(self.live), "live_confirmed": self._live_confirmed()}

    def _live_confirmed(self) -> int:
        return sum(1 for live in self.live.values() if live.confirmed.is_set() and not live.closing)

    async def run(self) -> None:
        self.listen()
        deadline = time.monotonic() + self.plan.max_seconds
        users = [asyncio.create_task(self.user_loop(user)) for user in self.plan.users]
        while self.first_done < len(self.plan.users) and not self.stop.is_set() and time.monotonic() < deadline:
            self.pipe.send(("opening", len(self.live), self.first_confirmed))
            await self._wait_any(self.stop, timeout=0.25)
        self.pipe.send(
            (
                "connected",
                {
                    "users": len(self.plan.users),
                    "opened": self.counts["connections"],
                    "failed": self.counts["connect_failures"],
                    "ready": self.first_confirmed,
                    "errors": list(self.errors),
                },
            )
        )
        c = self.counts
        while not self.stop.is_set() and time.monotonic() < deadline:
            self.pipe.send(("progress", c["unique"], c["duplicated"], c["server_closes"], self.last_ns))
            self.pipe.send(("stats", self._stats()))
            await self._wait_any(self.stop, timeout=PROGRESS_INTERVAL)
        self.stop.set()
        self.quiesce.set()
        ended_ns = time.monotonic_ns()
        records = self.done + [live.record for live in self.live.values()]
        result = {
            "ended_ns": ended_ns,
            "counts": self._stats(),
            "reordered_pairs": len(self.reordered_pairs),
            "dup_samples": self.dup_samples,
            "reorder_samples": self.reorder_samples,
            "latencies_us": self.latencies_us.tobytes(),
            "connections": [record.to_wire() for record in records],
            "errors": list(self.errors),
        }
        self.pipe.send(("result", result))
        await asyncio.wait(users, timeout=10)
        for live in self.live.values():
            live.closing = True
        await close_all([live.handle for live in self.live.values()])
        for task in users:
            task.cancel()


def soak_client_main(plan: SoakPlan, pipe: Connection) -> None:
    """Entry point of a soak client process."""
    run_child(SoakWorker(plan, pipe).run, pipe)
