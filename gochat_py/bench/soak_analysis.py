"""What a soak run counts: stamps, and lost / duplicated / reordered deliveries, as pure functions.

Every soak message text is a stamp ``<run id>|<sender>|<seq>|<send time ns>``: the sender is the
user's slot in the run (0 … N-1), ``seq`` counts that sender's messages (room and private alike,
from 0), and the send time is ``time.monotonic_ns()`` taken just before the HTTP request (the
clock is machine-wide, so client processes can subtract it).  Like the benchmark's stamp it holds
only ``[0-9a-z|]`` and is found in a frame body with :func:`gochat_py.bench.stamp.frame_msg`.

Which deliveries are *expected* (so that a missing one is *lost*):

- a room message, accepted by the api, by every connection in its room whose join was confirmed
  (the client saw an op-5 member list naming its user) before the push was sent, and that stayed
  open until ``grace`` after the api's answer (or to the end of the run);
- a private message, under the same condition, by every connection of its target user.

Anything else a connection receives is not counted either way (``delivered_outside_window``),
unless it is plainly wrong: a room message in another room, or a private message at another
user's connection (``misdelivered``).  Duplicates (the same stamp twice on one connection) and
reorders (for one connection and one sender, a lower ``seq`` after a higher one) are counted by
the client processes as the frames arrive.

With ``--resume`` a user's clients rejoin with ``since`` (the id of the last message they got), so
what was sent while they were away must reach them too: the unit that counts is then not one
connection but a *span*, one user's connections from a join without an id (``since ""``) through
every rejoin that resumed (:func:`resume_spans`).  A span expects every accepted message of its
room, and every private message to its user, sent after its first confirmed join and until its
last connection closed (less the grace), whether a connection was open at the time or not.
Duplicates and reorders are then counted per user, across its connections.
"""

from __future__ import annotations

import array
import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from gochat_py.bench.stamp import frame_msg

SEQ_BITS = 32
SEQ_MASK = (1 << SEQ_BITS) - 1
NS_PER_S = 1_000_000_000
ID_KEY = b'"id":"'
GAP_PREFIX = b'{"op":7,'


class SoakStamp(NamedTuple):
    run_id: bytes
    sender: int
    seq: int
    sent_ns: int


def make_soak_stamp(run_id: str, sender: int, seq: int, sent_ns: int) -> str:
    return f"{run_id}|{sender}|{seq}|{sent_ns}"


def parse_soak_stamp(text: bytes) -> SoakStamp | None:
    """The stamp in a message text, or None when it is not a soak stamp."""
    parts = text.split(b"|")
    if len(parts) != 4 or not (parts[1].isdigit() and parts[2].isdigit() and parts[3].isdigit()):
        return None
    return SoakStamp(parts[0], int(parts[1]), int(parts[2]), int(parts[3]))


def frame_soak_stamp(body: bytes) -> SoakStamp | None:
    msg = frame_msg(body)
    return None if msg is None else parse_soak_stamp(msg)


def frame_id(body: bytes) -> str | None:
    """The ``id`` an op-2 / op-3 frame carries as its last key (a socket that joined with ``since``
    gets them), or None.  Ids are digits and a dash; a stamp never holds a quote."""
    if not body.endswith(b'"}'):
        return None
    start = body.rfind(ID_KEY)
    return None if start < 0 else body[start + len(ID_KEY) : -2].decode("ascii", "replace")


def gap_reason(body: bytes) -> str | None:
    """The reason of an op-7 frame (``{"op":7,"reason":"unknown"|"too_old"}``), else None."""
    if not body.startswith(GAP_PREFIX):
        return None
    start = body.find(b'"reason":"')
    return body[start + 10 : body.find(b'"', start + 10)].decode("ascii", "replace") if start > 0 else ""


def message_key(sender: int, seq: int) -> int:
    """One integer per message: sender in the high bits, its sequence number in the low 32."""
    return sender << SEQ_BITS | seq


def split_key(key: int) -> tuple[int, int]:
    return key >> SEQ_BITS, key & SEQ_MASK


@dataclass(slots=True)
class SentMessage:
    """One push the coordinator made: who, which of their messages, to where, and when."""

    sender: int  # user slot
    seq: int
    kind: str  # "room" or "private"
    room: int  # the room (room messages); the roomId passed along (private)
    target: int  # user slot of the recipient (private); -1 for room messages
    send_ns: int  # just before the request
    reply_ns: int  # when the api's answer arrived
    accepted: bool  # api code 0

    @property
    def key(self) -> int:
        return message_key(self.sender, self.seq)


@dataclass(slots=True)
class ConnectionRecord:
    """One client connection of a soak run, from open to close, and what it received."""

    conn_id: int
    user: int  # user slot
    transport: str  # "ws" or "tcp"
    room: int
    opened_ns: int
    confirmed_ns: int = 0  # op 5 naming the user seen; 0: never
    closed_ns: int = 0  # when the client decided to close, or saw the server close; 0: open at the end
    planned: bool = True  # closed by the soak (churn, end of run), not by the server
    reason: str = ""
    received: array.array = field(default_factory=lambda: array.array("Q"))  # message keys, each once
    resumed: bool = False  # joined with the id of the last message received (--resume)
    missed: int = 0  # messages sent before this connection opened that it received (its backlog)
    caught_up_ns: int = 0  # when the last of them arrived
    gap: str = ""  # reason of an op-7 frame the server sent first, if any

    def to_wire(self) -> tuple:
        return (
            self.conn_id,
            self.user,
            self.transport,
            self.room,
            self.opened_ns,
            self.confirmed_ns,
            self.closed_ns,
            self.planned,
            self.reason,
            self.received.tobytes(),
            self.resumed,
            self.missed,
            self.caught_up_ns,
            self.gap,
        )

    @classmethod
    def from_wire(cls, item: Sequence[Any]) -> ConnectionRecord:
        received = array.array("Q")
        received.frombytes(item[9])
        return cls(*item[:9], received, *item[10:])  # type: ignore[misc]


def expected_window(conn: ConnectionRecord, message: SentMessage, grace_ns: int) -> bool:
    """True when ``conn`` must receive ``message`` (if it is addressed to it)."""
    if not message.accepted or not conn.confirmed_ns or message.send_ns <= conn.confirmed_ns:
        return False
    return not conn.closed_ns or message.reply_ns + grace_ns < conn.closed_ns


def addressed_to(conn: ConnectionRecord, message: SentMessage) -> bool:
    if message.kind == "room":
        return message.room == conn.room
    return message.target == conn.user


class _Index:
    """Accepted messages per room and per target, ordered by send time."""

    def __init__(self, messages: Iterable[SentMessage]) -> None:
        by_room: dict[int, list[SentMessage]] = defaultdict(list)
        by_target: dict[int, list[SentMessage]] = defaultdict(list)
        self.by_key: dict[int, SentMessage] = {}
        for message in messages:
            self.by_key[message.key] = message
            if not message.accepted:
                continue
            (by_room[message.room] if message.kind == "room" else by_target[message.target]).append(message)
        self.by_room = {room: self._sorted(items) for room, items in by_room.items()}
        self.by_target = {target: self._sorted(items) for target, items in by_target.items()}

    @staticmethod
    def _sorted(items: list[SentMessage]) -> tuple[list[SentMessage], list[int]]:
        items.sort(key=lambda m: m.send_ns)
        return items, [m.send_ns for m in items]

    def expected_for(self, conn: ConnectionRecord, grace_ns: int) -> set[int]:
        if not conn.confirmed_ns:
            return set()
        keys = set()
        for found in (self.by_room.get(conn.room), self.by_target.get(conn.user)):
            if found is None:
                continue
            items, sends = found
            for message in items[bisect.bisect_right(sends, conn.confirmed_ns) :]:
                if conn.closed_ns and message.send_ns >= conn.closed_ns:
                    break
                if expected_window(conn, message, grace_ns):
                    keys.add(message.key)
        return keys


def resume_spans(connections: Iterable[ConnectionRecord]) -> list[list[ConnectionRecord]]:
    """Each user's connections in the order opened, cut where one did not resume (or changed room)."""
    by_user: dict[int, list[ConnectionRecord]] = defaultdict(list)
    for conn in connections:
        by_user[conn.user].append(conn)
    spans: list[list[ConnectionRecord]] = []
    for conns in by_user.values():
        conns.sort(key=lambda c: c.opened_ns)
        current: list[ConnectionRecord] = []
        for conn in conns:
            if current and not (conn.resumed and conn.room == current[0].room):
                spans.append(current)
                current = []
            current.append(conn)
        spans.append(current)
    return spans


def span_record(span: Sequence[ConnectionRecord]) -> ConnectionRecord:
    """One record standing for a span: confirmed at its first confirmed join, closed when its last
    connection closed, holding everything its connections received."""
    first, last = span[0], span[-1]
    confirmed = min((c.confirmed_ns for c in span if c.confirmed_ns), default=0)
    record = ConnectionRecord(
        first.conn_id, first.user, last.transport, first.room, first.opened_ns, confirmed, last.closed_ns,
        last.planned, last.reason,
    )  # fmt: skip
    for conn in span:
        record.received.extend(conn.received)
    return record


def count_deliveries(
    messages: Sequence[SentMessage],
    connections: Sequence[ConnectionRecord],
    grace_ns: int,
    t0_ns: int = 0,
    max_samples: int = 20,
    resume: bool = False,
) -> dict[str, Any]:
    """Expected, delivered, lost and misdelivered counts over a whole run, with lost samples;
    with ``resume`` per span of each user's connections (:func:`resume_spans`), not per connection."""
    index = _Index(messages)
    expected = delivered = delivered_expected = outside = misdelivered = unaccepted = unknown = 0
    lost_by: dict[str, int] = defaultdict(int)
    lost_pairs: list[tuple[ConnectionRecord, int]] = []
    misdelivered_samples: list[dict[str, Any]] = []
    units = [span_record(span) for span in resume_spans(connections)] if resume else connections
    for conn in units:
        received = set(conn.received)
        delivered += len(received)
        wanted = index.expected_for(conn, grace_ns)
        expected += len(wanted)
        hit = wanted & received
        delivered_expected += len(hit)
        for key in sorted(wanted - hit):
            message = index.by_key[key]
            lost_by[f"{message.kind}_to_{conn.transport}"] += 1
            if len(lost_pairs) < max_samples:
                lost_pairs.append((conn, key))
        for key in received - hit:
            message = index.by_key.get(key)
            if message is None:
                unknown += 1
            elif not addressed_to(conn, message):
                misdelivered += 1
                if len(misdelivered_samples) < max_samples:
                    misdelivered_samples.append(_describe(message, conn, t0_ns))
            elif not message.accepted:
                unaccepted += 1
            else:
                outside += 1
    lost_samples = []
    for conn, key in lost_pairs:
        sample = _describe(index.by_key[key], conn, t0_ns)
        # did the message reach anyone? (a message lost everywhere is a different bug from one
        # lost at one socket)
        sample["received_by_connections"] = sum(1 for other in units if key in other.received)
        lost_samples.append(sample)
    return {
        "expected": expected,
        "delivered": delivered,
        "delivered_expected": delivered_expected,
        "lost": expected - delivered_expected,
        "lost_by_kind_and_transport": dict(sorted(lost_by.items())),
        "delivered_outside_window": outside,
        "delivered_unaccepted": unaccepted,
        "misdelivered": misdelivered,
        "unknown_stamps": unknown,
        "lost_samples": lost_samples,
        "misdelivered_samples": misdelivered_samples,
    }


def _seconds(ns: int, t0_ns: int) -> float | None:
    return round((ns - t0_ns) / NS_PER_S, 3) if ns else None


def _describe(message: SentMessage, conn: ConnectionRecord, t0_ns: int) -> dict[str, Any]:
    return {
        "sender": message.sender,
        "seq": message.seq,
        "kind": message.kind,
        "room": message.room if message.kind == "room" else None,
        "target": message.target if message.kind == "private" else None,
        "send_s": _seconds(message.send_ns, t0_ns),
        "reply_ms": round((message.reply_ns - message.send_ns) / 1e6, 3),
        "connection": {
            "id": conn.conn_id,
            "user": conn.user,
            "transport": conn.transport,
            "room": conn.room,
            "opened_s": _seconds(conn.opened_ns, t0_ns),
            "confirmed_s": _seconds(conn.confirmed_ns, t0_ns),
            "closed_s": _seconds(conn.closed_ns, t0_ns),
            "planned": conn.planned,
            "reason": conn.reason,
        },
    }


class ReceiverState:
    """Per connection, as frames arrive: the stamps seen (duplicates) and, per sender, the highest
    ``seq`` so far (reorders)."""

    __slots__ = ("highest", "seen")

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.highest: dict[int, int] = {}

    def receive(self, sender: int, seq: int) -> tuple[bool, bool]:
        """(first time, in order) for one arriving message."""
        key = message_key(sender, seq)
        if key in self.seen:
            return False, True
        self.seen.add(key)
        top = self.highest.get(sender, -1)
        if seq < top:
            return True, False
        self.highest[sender] = seq
        return True, True
