"""Client processes: each holds its share of the sockets, joins, and counts what arrives.

A client process is started by the coordinator (``multiprocessing``, spawn) with a
:class:`ClientPlan` and a pipe.  It raises its soft file limit to the hard one, opens its sockets
(websocket or TCP, bound to the given 127.x source addresses in turn), sends each join, and
reports ``("connected", info)`` once every socket is in its room.  From then on it sends
``("progress", unique, duplicated, disconnected)`` a few times a second until the coordinator
says ``("stop",)``; then it closes its sockets and answers ``("result", info)`` with the
latencies.  A socket counts as in its room once it has received an op 4 count frame (the
coordinator asks ``/push/count`` for every room once every join is sent, and again while sockets
are missing), or an op 5 member list with at least ``ready_count`` members (gochat-py broadcasts
one on every join into a room of up to ``member_list_auto_limit``), so no message is pushed
before every receiver can get it.

With ``protocol="v2"`` a socket sends a v2 hello instead of the join, subscribes to its rooms once
welcomed, and is in them once every subscribe is answered (``v2_session.py``).  With ``sends`` in
the plan (``--send socket``), the coordinator's ``("go", start ns)`` makes the process send those
messages from their senders' own sockets (publish or send, each answered by a reply) and report
``("sent", info)`` once every reply came.

Websocket sockets go to ``ws_urls[spec.node]`` (several connect nodes in one run) and use the
lean client (``sockets.py``).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import orjson

from gochat_py.bench.children import PipeCommands, run_child
from gochat_py.bench.sockets import close_all, open_socket
from gochat_py.bench.stamp import OP_ROOM_COUNT, frame_stamp, make_stamp, room_frame, stamp_matcher
from gochat_py.bench.v2_session import OTHER, READY, WELCOMED, Ack, Retry, V2Session

PROGRESS_INTERVAL = 0.1
MAX_ERRORS_KEPT = 5
READY_SETTLE = 10.0
JOINS_SETTLE = 1.0  # seconds without a join event after which a v2 socket's room counts as complete
SUBSCRIBE_RETRY_DELAY = 1.0  # seconds before a subscribe answered "unavailable" is sent again


@dataclass
class SocketSpec:
    token: str
    room_id: int
    user_id: int = 0
    transport: str = "ws"
    ready_count: int = 1  # an op 5 member list this long proves the room complete for this socket
    node: int = 0  # websocket sockets: index into ClientPlan.ws_urls
    since: str | None = None  # sent in the join when set: frames then carry message ids
    rooms: tuple[int, ...] = ()  # protocol v2: the rooms the socket subscribes to


@dataclass
class ClientPlan:
    index: int
    run_id: str
    ws_urls: list[str]
    tcp: tuple[str, int]
    sockets: list[SocketSpec]
    messages: int
    source_ips: list[str] = field(default_factory=list)
    targets: list[int] | None = None  # private mode: target user id of each seq
    connect_concurrency: int = 64
    connect_timeout: float = 60.0
    ready_timeout: float = 60.0
    max_seconds: float = 300.0
    protocol: str = "v1"  # "v2": hello and subscribes instead of a join (lean websocket or TCP)
    # --send socket: (seq, socket index, room, to user) of each message this process's sockets
    # send (a publish into room, or a send to the user), started by ("go", start ns)
    sends: list[tuple[int, int, int, int]] = field(default_factory=list)
    send_concurrency: int = 16  # messages of this process waiting for their reply at once
    send_rate: float = 0.0  # rate mode: messages per second of the whole run (seq n due at n / rate)
    answer_timeout: float = 10.0  # how long after its last reply a process waits for the rest


def join_body(spec: SocketSpec) -> dict[str, Any]:
    """The join a socket sends; with ``since`` the server appends ``"id"`` to op-2 and op-3 bodies,
    after the stamp, so counting is the same."""
    body: dict[str, Any] = {"authToken": spec.token, "roomId": spec.room_id}
    if spec.since is not None:
        body["since"] = spec.since
    return body


class Counter:
    """What one client process has received.

    The hot path is :meth:`on_frames`: the sockets hand it every payload of one received chunk
    at once, so the per-chunk work (the clock, the socket's state, writing the totals back) is
    paid once per chunk and the per-frame work is one regex match, two ``int``, and the checks.
    Every frame is still checked on its own: run id, seq range, private-message target,
    duplicates per socket.  All frames of one chunk arrived at the same instant, so they share
    one receive time.
    """

    def __init__(self, plan: ClientPlan, on_control: Callable[[int, bytes], None] | None = None) -> None:
        self.run_id = plan.run_id.encode()
        self.messages = plan.messages
        self.targets = plan.targets
        self.specs = plan.sockets
        self.seen = [bytearray(plan.messages) for _ in plan.sockets] if plan.messages else []
        self.ready = bytearray(len(plan.sockets))
        self.first_frame_ns = [0] * len(plan.sockets)
        self.ready_count = 0
        self.all_ready = asyncio.Event()
        self.latencies_us = array.array("q")
        self.unique = 0
        self.duplicated = 0
        self.foreign = 0
        self.misdelivered = 0
        self.other_frames = 0
        self.first_ns = 0
        self.last_ns = 0
        self._match = stamp_matcher(self.run_id, plan.protocol)
        self.on_control = on_control  # v2: every frame but a stamped message goes there

    def on_frames(self, index: int, bodies: list[bytes]) -> None:
        """Counts every frame body that socket ``index`` received in one chunk."""
        if not bodies:
            return
        now = time.monotonic_ns()
        if not self.first_frame_ns[index]:
            self.first_frame_ns[index] = now
        match = self._match
        messages = self.messages
        targets = self.targets
        user_id = self.specs[index].user_id if targets is not None else 0
        seen = self.seen[index] if self.seen else bytearray()  # no messages: every stamp is out of range
        sent: list[int] = []  # send times of the first copies
        duplicated = foreign = misdelivered = 0
        for body in bodies:
            found = match(body)
            if found is not None:
                seq = int(found[1])
                sent_ns = int(found[2])
            else:
                stamp = frame_stamp(body)  # not a plain frame of this run: read it the slow way
                if stamp is None:
                    self._on_unstamped(index, body)
                    continue
                if stamp.run_id != self.run_id:
                    foreign += 1
                    continue
                seq, sent_ns = stamp.seq, stamp.sent_ns
            if seq >= messages:
                foreign += 1
            elif targets is not None and targets[seq] != user_id:
                misdelivered += 1
            elif seen[seq]:
                duplicated += 1
            else:
                seen[seq] = 1
                sent.append(sent_ns)
        if sent:
            if len(sent) == 1:  # a lone frame: cheaper than building a list to extend with
                self.latencies_us.append((now - sent[0]) // 1000)
            else:
                self.latencies_us.extend([(now - ns) // 1000 for ns in sent])
            self.unique += len(sent)
            if not self.first_ns:
                self.first_ns = now
            self.last_ns = now
        if duplicated:
            self.duplicated += duplicated
        if foreign:
            self.foreign += foreign
        if misdelivered:
            self.misdelivered += misdelivered

    def _on_unstamped(self, index: int, body: bytes) -> None:
        """A frame without a stamp: one that makes the socket ready, or other.

        Any op 4 count frame proves the socket is in its room: it can only come from a
        ``/push/count`` broadcast to that room, which the coordinator asks for once every join is
        sent, so it works with any server of the v1 wire.  An op 5 member list listing at least
        ``ready_count`` members proves it too, earlier, where a server sends one on every join.
        A v2 socket's frames go to ``on_control`` (the subscribe results make it ready).
        """
        if self.on_control is not None:
            self.on_control(index, body)
            return
        frame = room_frame(body)
        if (
            frame is not None
            and not self.ready[index]
            and (frame[0] == OP_ROOM_COUNT or frame[1] >= self.specs[index].ready_count)
        ):
            self.mark_ready(index)
        else:
            self.other_frames += 1

    def mark_ready(self, index: int) -> None:
        if not self.ready[index]:
            self.ready[index] = 1
            self.ready_count += 1
            if self.ready_count == len(self.ready):
                self.all_ready.set()


class ClientWorker(PipeCommands):
    def __init__(self, plan: ClientPlan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        v2 = plan.protocol == "v2"
        self.sessions = [V2Session(spec.rooms, spec.ready_count) for spec in plan.sockets] if v2 else []
        self.counter = Counter(plan, self._on_v2 if v2 else None)
        self.handles: list[Any] = [None] * len(plan.sockets)
        self.handshake_us = array.array("q")
        self.join_sent_ns = [0] * len(plan.sockets)
        self.failed = 0
        self.disconnected = 0
        self.errors: list[str] = []
        self.stopping = False
        self.stop_event = asyncio.Event()
        self.disconnected_by_node = [0] * len(plan.ws_urls)
        # --send socket: the messages this process sends and their replies
        self.in_flight: asyncio.Semaphore | None = None
        self.sending: asyncio.Task[None] | None = None
        self.accepted = 0
        self.refused = 0
        self.answers = 0
        self.ack_us = array.array("q")
        self.last_answer_ns = 0
        self.resubscribed = 0

    def _error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(text)

    def _lost(self, index: int, reason: str) -> None:
        if not self.stopping:
            self.disconnected += 1
            spec = self.plan.sockets[index]
            if spec.transport == "ws":
                self.disconnected_by_node[spec.node] += 1
            self._error(f"socket {index}: {reason}")
            if self.sessions and self.sessions[index].sends:  # their replies will never come
                for seq, sent_ns in self.sessions[index].unanswered():
                    self._answered(Ack(seq, sent_ns, -1, f"socket closed: {reason}"))
                self.sessions[index].sends.clear()

    def _on_v2(self, index: int, body: bytes) -> None:
        """A v2 socket's frame that is not a stamped message: the welcome (then the subscribes
        go), a subscribe's result (the last one makes the socket ready), a reply to a message sent,
        or an event only counted."""
        outcome = self.sessions[index].receive(body)
        if outcome == OTHER:
            self.counter.other_frames += 1
        elif type(outcome) is Ack:
            self._answered(outcome)
        elif outcome == READY:
            self.counter.mark_ready(index)
        elif outcome == WELCOMED:
            handle = self.handles[index]
            if handle is None:
                self._error(f"socket {index}: welcomed before it was open")
                return
            for data in self.sessions[index].subscribes():
                handle.send_text(data)
        elif type(outcome) is Retry:
            self.resubscribed += 1
            asyncio.get_running_loop().call_later(SUBSCRIBE_RETRY_DELAY, self._resubscribe, index, outcome.room)
        else:
            self._error(f"socket {index}: {outcome.text}")  # type: ignore[union-attr]

    def _resubscribe(self, index: int, room: int) -> None:
        handle = self.handles[index]
        if handle is not None and not self.stopping:
            with contextlib.suppress(ConnectionError):
                handle.send_text(self.sessions[index].subscribe(room))

    def _answered(self, ack: Ack) -> None:
        now = time.monotonic_ns()
        self.answers += 1
        self.last_answer_ns = now
        if ack.code == 0:
            self.accepted += 1
            self.ack_us.append((now - ack.sent_ns) // 1000)
        else:
            self.refused += 1
            self._error(f"message {ack.seq}: error {ack.code} {ack.message}")
        if self.in_flight is not None:
            self.in_flight.release()

    async def _send_all(self, start_ns: int) -> None:
        """``--send socket``: every planned message from its sender's socket, at most
        ``send_concurrency`` waiting for their replies (at ``send_rate`` in rate mode); then waits
        for the missing replies until none came for ``answer_timeout`` seconds, and reports
        ``("sent", info)``."""
        plan = self.plan
        in_flight = self.in_flight = asyncio.Semaphore(plan.send_concurrency)
        first_ns = 0
        sent = 0
        for seq, index, room, to in plan.sends:
            if self.stop_event.is_set():
                break
            if plan.send_rate:
                delay = (start_ns + seq * 1e9 / plan.send_rate - time.monotonic_ns()) / 1e9
                if delay > 0:
                    await asyncio.sleep(delay)
            await in_flight.acquire()
            handle = self.handles[index]
            sent_ns = time.monotonic_ns()
            first_ns = first_ns or sent_ns
            try:
                if handle is None:
                    raise ConnectionError("the socket did not open")
                stamp = make_stamp(plan.run_id, seq, sent_ns)
                handle.send_text(self.sessions[index].message(seq, sent_ns, stamp, room=room, to=to))
            except Exception as exc:  # counted as refused, never fatal
                self._answered(Ack(seq, sent_ns, -1, f"{type(exc).__name__}: {exc}"))
            sent += 1
        quiet_since, answers = time.monotonic(), -1
        while self.answers < sent and not self.stop_event.is_set():
            if self.answers != answers:
                quiet_since, answers = time.monotonic(), self.answers
            elif time.monotonic() - quiet_since > plan.answer_timeout:
                missing = sent - self.answers
                self.refused += missing
                self._error(f"{missing} message(s) got no reply within {plan.answer_timeout} s")
                break
            await asyncio.sleep(0.02)
        self.pipe.send(
            (
                "sent",
                {
                    "sent": sent,
                    "accepted": self.accepted,
                    "failed": self.refused,
                    "first_ns": first_ns,
                    "last_ns": self.last_answer_ns,
                    "ack_us": self.ack_us.tobytes(),
                },
            )
        )

    def _ready_without_joins(self) -> bool:
        """Makes ready the v2 sockets whose subscribes are all answered but which did not see every
        user of their room: a server sends no join events for rooms over its member-list limit.
        Called once no frame came for JOINS_SETTLE seconds; True when it made any ready."""
        waiting = [i for i, session in enumerate(self.sessions) if session.answered and not self.counter.ready[i]]
        for index in waiting:
            self.counter.mark_ready(index)
        return bool(waiting)

    def _by_node(self, count: Callable[[int], int]) -> list[int]:
        """``count(socket index)`` summed per websocket node (what each connect node got)."""
        totals = [0] * len(self.plan.ws_urls)
        for index, spec in enumerate(self.plan.sockets):
            if spec.transport == "ws":
                totals[spec.node] += count(index)
        return totals

    def _source(self, index: int) -> tuple[str, int] | None:
        ips = self.plan.source_ips
        return (ips[index % len(ips)], 0) if ips else None

    def _first_message(self, index: int, spec: SocketSpec) -> bytes:
        """The v2 hello, or the v1 join (with op 6 on TCP)."""
        if self.sessions:
            return self.sessions[index].hello(spec.token)
        if spec.transport == "tcp":
            return orjson.dumps({**join_body(spec), "op": 6})
        return orjson.dumps(join_body(spec))

    async def _open(self, index: int, limit: asyncio.Semaphore) -> None:
        spec = self.plan.sockets[index]
        first = self._first_message(index, spec)
        kind = "tcp" if spec.transport == "tcp" else "lean"
        address = self.plan.tcp if kind == "tcp" else self.plan.ws_urls[spec.node]
        async with limit:
            started = time.monotonic_ns()
            try:
                self.handles[index] = await open_socket(
                    kind,
                    address,
                    index,
                    first,
                    self.counter.on_frames,
                    self._lost,
                    local_addr=self._source(index),
                    timeout=self.plan.connect_timeout,
                )
            except Exception as exc:
                self.failed += 1
                self._error(f"socket {index}: {type(exc).__name__}: {exc}")
                return
            self.handshake_us.append((time.monotonic_ns() - started) // 1000)
            self.join_sent_ns[index] = time.monotonic_ns()

    def on_command(self, command: tuple) -> None:
        if command[0] == "go":  # --send socket: the sends start at this monotonic instant
            self.sending = asyncio.ensure_future(self._send_all(command[1]))
        elif command[0] == "stop":
            self.stop_event.set()

    async def run(self) -> None:
        self.listen()
        deadline = time.monotonic() + self.plan.max_seconds
        limit = asyncio.Semaphore(self.plan.connect_concurrency)
        started = time.monotonic_ns()
        opening = [asyncio.create_task(self._open(i, limit)) for i in range(len(self.plan.sockets))]
        while True:
            done, pending = await asyncio.wait(opening, timeout=0.5)
            if not pending:
                break
            self.pipe.send(("opening", len(done), self.counter.ready_count))
        connected_ns = time.monotonic_ns()
        opened = len(self.plan.sockets) - self.failed
        if opened and self.counter.ready_count < opened:
            # every socket in its room; or every one either in it or closed by the server; or no
            # progress for READY_SETTLE seconds (a refused join keeps a room from ever being
            # complete).  Progress is any socket ready, or any frame while they get there: a v2
            # socket is ready only after its last subscribe, and a busy server answers the first
            # subscribe of every socket before the second of any.
            ready_deadline = time.monotonic() + self.plan.ready_timeout
            last_moved: tuple[int, ...] = ()
            changed = time.monotonic()
            counter = self.counter
            while not self.stop_event.is_set() and time.monotonic() < ready_deadline:
                ready = counter.ready_count
                if ready + self.disconnected >= opened:
                    break
                moved = (ready, counter.other_frames, self.resubscribed, sum(map(bool, counter.first_frame_ns)))
                if moved != last_moved:
                    last_moved, changed = moved, time.monotonic()
                elif time.monotonic() - changed > JOINS_SETTLE and self._ready_without_joins():
                    continue
                elif time.monotonic() - changed > READY_SETTLE:
                    break
                self.pipe.send(("opening", opened, ready))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.counter.all_ready.wait(), 0.5)
        ready_ns = time.monotonic_ns()
        joins = array.array(
            "q",
            sorted(
                (first - sent) // 1000
                for first, sent in zip(self.counter.first_frame_ns, self.join_sent_ns, strict=True)
                if first and sent
            ),
        )
        self.pipe.send(
            (
                "connected",
                {
                    "sockets": len(self.plan.sockets),
                    "opened": opened,
                    "failed": self.failed,
                    "ready": self.counter.ready_count,
                    "started_ns": started,
                    "connected_ns": connected_ns,
                    "ready_ns": ready_ns,
                    "handshake_us": self.handshake_us.tobytes(),
                    "join_us": joins.tobytes(),
                    "file_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
                    "opened_by_node": self._by_node(lambda i: self.handles[i] is not None),
                    "v2_limits": next((s.limits.model_dump() for s in self.sessions if s.limits), None),
                    "resubscribed": self.resubscribed,
                    "errors": list(self.errors),
                },
            )
        )
        counter = self.counter
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            self.pipe.send(
                (
                    "progress",
                    counter.unique,
                    counter.duplicated,
                    self.disconnected,
                    counter.last_ns,
                    list(self.disconnected_by_node),
                )
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_event.wait(), PROGRESS_INTERVAL)
        self.stopping = True
        result = {
            "unique": counter.unique,
            "duplicated": counter.duplicated,
            "foreign": counter.foreign,
            "misdelivered": counter.misdelivered,
            "other_frames": counter.other_frames,
            "disconnected": self.disconnected,
            "first_ns": counter.first_ns,
            "last_ns": counter.last_ns,
            "latencies_us": counter.latencies_us.tobytes(),
            "unique_by_node": self._by_node(lambda i: sum(counter.seen[i]) if counter.seen else 0),
            "disconnected_by_node": list(self.disconnected_by_node),
            "errors": list(self.errors),
        }
        self.pipe.send(("result", result))
        await self._close_all()

    async def _close_all(self) -> None:
        if self.sending is not None:
            self.sending.cancel()
        await close_all(self.handles)


def client_main(plan: ClientPlan, pipe: Connection) -> None:
    """Entry point of a client process."""
    run_child(ClientWorker(plan, pipe).run, pipe)
