"""Kept messages under faults: a connect node, a task process (delivery and history writer) killed
with SIGKILL, Redis restarted without its data, and bad ``since`` values.

Every fault test runs a sender throughout and resuming websocket clients that rejoin with ``since``
= the id of the last message they saw, whenever their socket drops and every fraction of a second
anyway.  At the end (a marker arrived) each has every accepted message exactly once, in order.

This module runs on its own Redis and etcd, so restarting Redis disturbs no other test.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis
import websockets

from gochat_py.launcher import ManagedProcess
from gochat_py.protocol.tcp_frame import FrameDecoder, encode_frame
from tests.e2e.harness import (
    ApiClient,
    Cluster,
    Infra,
    consumer_of,
    eventually,
    free_port,
    lease_holder,
    running_infra,
)

CLUSTER_ENV = {
    "GOCHAT_TASK__CLAIM_IDLE": "1",
    "GOCHAT_ETCD__LEASE_TTL": "3",
    "GOCHAT_LOGIC__NODE_GRACE": "1",
}
CLUSTER_MODULES = ("logic", "connect_websocket", "connect_tcp", "task", "api")
PASSWORD = "pw-123456"
STREAM, TASK_GROUP, HISTORY_GROUP = "gochat_stream", "gochat_task", "gochat_history"


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """This module's own Redis and etcd (the ``cluster`` fixture picks this one up)."""
    with running_infra(tmp_path_factory, "infra_history_faults") as running:
        yield running


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def id_key(message_id: str) -> tuple[int, int]:
    ms, _, seq = message_id.partition("-")
    return int(ms), int(seq)


FREEZE_ATTEMPTS = 10


def held_by(db: redis.Redis, group: str, consumer: str) -> int:
    """Entries the consumer has read in the group and not acknowledged."""
    for row in db.xinfo_consumers(STREAM, group):
        if row["name"].decode() == consumer:
            return int(row["pending"])
    return 0


def group_info(db: redis.Redis, group: str) -> dict[str, Any] | None:
    try:
        groups = {g["name"].decode(): g for g in db.xinfo_groups(STREAM)}
    except redis.ResponseError:
        return None
    return groups.get(group)


def caught_up(db: redis.Redis, group: str) -> bool:
    info = group_info(db, group)
    return bool(info) and info["pending"] == 0 and info.get("lag") == 0


class Account:
    """A user with a password: logs in again when Redis lost the sessions."""

    def __init__(self, api: ApiClient, name: str) -> None:
        self.api, self.name, self.token = api, name, ""

    async def register(self) -> Account:
        self.token = await self.api.register(self.name, PASSWORD)
        return self

    async def login(self) -> None:
        while True:
            reply = await self.api.post("/user/login", {"userName": self.name, "passWord": PASSWORD})
            if reply["code"] == 0:
                self.token = reply["data"]
                return
            await asyncio.sleep(0.2)  # Redis down: code 1


@dataclass
class Sender:
    """Sends room messages (and every fourth a private one to ``to_user``) one at a time until
    stopped; keeps what was accepted (code 0), in order, and every other answer with its time."""

    api: ApiClient
    account: Account
    room: int
    to_user: int = 0
    room_accepted: list[str] = field(default_factory=list)
    private_accepted: list[str] = field(default_factory=list)
    accepted_at: list[float] = field(default_factory=list)
    refused: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)  # (start, end, reply)
    accepted_spans: list[tuple[float, float]] = field(default_factory=list)
    go: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: bool = False

    def __post_init__(self) -> None:
        self.go.set()

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            await self.go.wait()
            private = self.to_user and n % 4 == 3
            text = f"{'p' if private else 'r'}{n}"
            n += 1
            start = time.monotonic()
            if private:
                body = {"authToken": self.account.token, "toUserId": str(self.to_user), "roomId": 1, "msg": text}
                reply = await self.api.post("/push/push", body)
            else:
                reply = await self.api.post(
                    "/push/pushRoom", {"authToken": self.account.token, "roomId": self.room, "msg": text}
                )
            end = time.monotonic()
            if reply["code"] == 0:
                (self.private_accepted if private else self.room_accepted).append(text)
                self.accepted_at.append(end)
                self.accepted_spans.append((start, end))
            else:
                self.refused.append((start, end, reply))
                if reply["code"] == 40000:
                    await self.account.login()
                else:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(0.003)

    async def finish(self, task: asyncio.Task[None], clients: list[Resumer]) -> None:
        """Stops sending; a room and a private marker after everything else reach every client."""
        self.stopping = True
        await task
        marker = unique("end")
        reply = await self.api.post(
            "/push/pushRoom", {"authToken": self.account.token, "roomId": self.room, "msg": marker}
        )
        assert reply["code"] == 0, reply
        self.room_accepted.append(marker)
        if self.to_user:
            body = {"authToken": self.account.token, "toUserId": str(self.to_user), "roomId": 1, "msg": marker + "p"}
            reply = await self.api.post("/push/push", body)
            assert reply["code"] == 0, reply
            self.private_accepted.append(marker + "p")
        for client in clients:
            await eventually(lambda c=client: marker in c.texts(3), 60, f"the marker at {client.account.name}")
            if self.to_user and client.private:
                await eventually(lambda c=client: marker + "p" in c.texts(2), 60, "the private marker")


class Resumer:
    """A websocket client that keeps every op-2/op-3 frame with its id and rejoins with ``since``
    = the last id it saw: whenever its socket drops (on the next address of ``urls`` if the one it
    used refuses) and every ``cycle`` seconds anyway."""

    def __init__(self, urls: list[str], account: Account, room: int, cycle: float = 0.6, private: bool = False) -> None:
        self.urls, self.account, self.room, self.cycle, self.private = urls, account, room, cycle, private
        self.url = urls[0]
        self.received: list[dict[str, Any]] = []  # op-2 and op-3 bodies, in arrival order
        self.gaps: list[dict[str, Any]] = []
        self.joined = asyncio.Event()  # the first op-5 arrived: the first join is in
        self.joins: list[tuple[float, str, str]] = []  # (when, url, since) of each join that got in
        self.drops: list[float] = []  # sockets closed by the server side or by a dead node
        self.stopping = False
        self.since = ""

    def texts(self, op: int) -> list[str]:
        return [b["msg"] for b in self.received if b["op"] == op]

    async def run(self) -> None:
        while not self.stopping:
            try:
                ws = await websockets.connect(self.url, open_timeout=10)
            except (OSError, TimeoutError, websockets.InvalidHandshake):
                self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
                await asyncio.sleep(0.1)
                continue
            since = self.since
            dropped = False
            try:
                await ws.send(json.dumps({"authToken": self.account.token, "roomId": self.room, "since": since}))
                await self._read(ws, since)
            except websockets.ConnectionClosed:
                dropped = True  # by the server, or by a dead node; not by this client
            finally:
                await ws.close()
            if dropped:
                self.drops.append(time.monotonic())
                if ws.close_code == 1008 and "auth" in (ws.close_reason or ""):
                    await self.account.login()  # Redis lost the session
                await asyncio.sleep(0.3)  # away a little: messages pile up for the backlog
            else:
                await asyncio.sleep(random.uniform(0.02, 0.15))

    async def _read(self, ws: websockets.ClientConnection, since: str) -> None:
        deadline = time.monotonic() + random.uniform(self.cycle / 2, self.cycle * 1.5)
        counted = False
        while not self.stopping and time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            body = json.loads(message)
            if not counted:
                counted = True
                self.joins.append((time.monotonic(), self.url, since))
            if body.get("op") == 5:
                self.joined.set()
            elif body.get("op") == 7:
                self.gaps.append(body)
            elif body.get("op") in (2, 3):
                self.received.append(body)
                self.since = body["id"]

    def check_exactly_once(self, sender: Sender) -> None:
        for op, accepted in ((3, sender.room_accepted), (2, sender.private_accepted if self.private else [])):
            got = self.texts(op)
            lost = [t for t in accepted if t not in set(got)]
            repeated = sorted({t for t in got if got.count(t) > 1})
            assert not lost, f"{self.account.name}: {len(lost)} op-{op} messages lost, e.g. {lost[:5]}"
            assert not repeated, f"{self.account.name}: op-{op} messages repeated: {repeated[:5]}"
            assert got == accepted, f"{self.account.name}: op-{op} messages out of order"
        ids = [id_key(b["id"]) for b in self.received]
        assert ids == sorted(ids), f"{self.account.name}: ids out of order"
        assert not self.gaps, self.gaps


async def start_clients(clients: list[Resumer]) -> list[asyncio.Task[None]]:
    tasks = [asyncio.create_task(c.run()) for c in clients]
    for client in clients:
        await asyncio.wait_for(client.joined.wait(), 15)
    return tasks


async def stop_clients(clients: list[Resumer], tasks: list[asyncio.Task[None]]) -> None:
    for client in clients:
        client.stopping = True
    await asyncio.wait_for(asyncio.gather(*tasks), 30)


def alive(cluster: Cluster, *killed: ManagedProcess) -> None:
    """No process died that a test did not kill (ManagedProcess.kill marks its exit expected)."""
    dead = [p.name for p in cluster.system.modules if p not in killed and not p.running() and not p.expected_exit]
    assert not dead, f"processes died: {dead}\n{cluster.tails()}"


async def test_sigkill_of_the_connect_node_clients_resume_through(cluster: Cluster) -> None:
    victim_ws = free_port()
    victim = cluster.start_module(
        "connect_websocket",
        name="connect_websocket_victim",
        GOCHAT_CONNECT_WEBSOCKET__BIND=f"127.0.0.1:{victim_ws}",
        GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=f"127.0.0.1:{free_port()}",
    )
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        readers = [await Account(api, unique(f"bob{n}")).register() for n in range(3)]
        bob_id = await api.user_id(readers[0].token)
        urls = [f"ws://127.0.0.1:{victim_ws}/ws", cluster.ws_url]
        clients = [Resumer(urls, a, room, private=(n == 0)) for n, a in enumerate(readers)]
        tasks = await start_clients(clients)
        sender = Sender(api, alice, room, to_user=bob_id)
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: all(len(c.received) >= 60 for c in clients), 60, "traffic before the kill")
        assert all(c.url == urls[0] for c in clients)
        victim.kill()
        killed, before = time.monotonic(), len(sender.accepted_at)
        await eventually(lambda: all(any(t > killed for t, *_ in c.joins) for c in clients), 60, "clients back")
        await eventually(lambda: len(sender.accepted_at) > before + 150, 60, "more traffic")
        await sender.finish(sending, clients)
        await stop_clients(clients, tasks)
    for client in clients:
        # not vacuous: the client was on the killed node, rejoined on the other with a since, and
        # messages were accepted while it was away
        assert [j[1] for j in client.joins if j[0] < killed][-1] == urls[0]
        t_back, url, since = next(j for j in client.joins if j[0] > killed)
        assert url == cluster.ws_url and since
        assert any(killed < t < t_back for t in sender.accepted_at), "nothing was sent while the client was away"
        client.check_exactly_once(sender)
    alive(cluster, victim)


def held_chat(db: redis.Redis, group: str, consumer: str, room: int) -> int:
    """Room messages of ``room`` among the entries the consumer holds unacknowledged."""
    held = db.xpending_range(STREAM, group, "-", "+", 1000, consumername=consumer)
    count = 0
    for row in held:
        for _, fields in db.xrange(STREAM, row["message_id"], row["message_id"]):
            message = json.loads(fields[b"m"])
            count += message.get("op") == 3 and message.get("roomId") == room and message.get("msg") is not None
    return count


async def _freeze_the_holder_holding(
    cluster: Cluster, db: redis.Redis, group: str, room: int
) -> tuple[ManagedProcess, int]:
    """Freezes the task process that holds the lease until it holds unacknowledged room messages
    of ``room`` in ``group``; returns it and how many.  A process frozen while blocked in
    XREADGROUP is still handed entries by Redis; one frozen between two reads never is, and its
    lease passes to the standby: then it is let go on and the holder of the moment is frozen again."""
    for _ in range(FREEZE_ATTEMPTS):
        await eventually(lambda: db.get("gochat_task_lease"), 10, "a task process holding the lease")
        process = lease_holder(cluster, db)
        process.signal(signal.SIGSTOP)
        consumer = consumer_of(process)
        try:
            # well within the lease time: the standby must not have taken its entries over yet
            await eventually(
                lambda c=consumer: held_chat(db, group, c, room) > 0, 1.5, f"the frozen task holding {group} entries"
            )
            return process, held_chat(db, group, consumer, room)
        except AssertionError:
            process.signal(signal.SIGCONT)
            await asyncio.sleep(1.0)
    raise AssertionError(f"no frozen task process held {group} entries in {FREEZE_ATTEMPTS} attempts")


async def test_sigkill_of_a_task_mid_batch_resuming_clients_get_everything_once(cluster: Cluster, infra: Infra) -> None:
    """The task process that delivers (it holds the task lease) dies holding entries; a standby
    takes over and delivers them before anything newer, so resuming clients miss nothing."""
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    standby = cluster.start_module("task", name="task_standby")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        readers = [await Account(api, unique(f"bob{n}")).register() for n in range(2)]
        bob_id = await api.user_id(readers[0].token)
        # one client rejoins every fraction of a second (it may rejoin past a held message and lose
        # it), the other only when its socket drops (it gets the held messages late, out of order)
        clients = [
            Resumer([cluster.ws_url], readers[0], room, private=True),
            Resumer([cluster.ws_url], readers[1], room, cycle=3600),
        ]
        tasks = await start_clients(clients)
        sender = Sender(api, alice, room, to_user=bob_id)
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: all(len(c.received) >= 40 for c in clients), 60, "traffic before the kill")
        assert lease_holder(cluster, db) is not standby  # the first task holds the lease
        victim, held = await _freeze_the_holder_holding(cluster, db, TASK_GROUP, room)
        victim.kill()
        before = len(sender.accepted_at)
        await eventually(lambda: len(sender.accepted_at) > before + 150, 60, "more traffic after the kill")
        await eventually(lambda: held_by(db, TASK_GROUP, consumer_of(victim)) == 0, 30, "entries taken over")
        await sender.finish(sending, clients)
        await stop_clients(clients, tasks)
    assert held > 0
    for client in clients:
        client.check_exactly_once(sender)
    alive(cluster, victim)


async def _history_pages(api: ApiClient, token: str, room: int) -> list[str]:
    """Every message of the room through POST /push/history, oldest first."""
    texts: list[str] = []
    request: dict[str, Any] = {"authToken": token, "roomId": room, "limit": 100}
    while True:
        page = await api.post("/push/history", request)
        assert page["code"] == 0, page
        texts += [m["msg"] for m in page["data"]["messages"]]
        if not page["data"]["more"]:
            return texts[::-1]
        request["before"] = page["data"]["messages"][-1]["id"]


def _database_rows(path: Path, conversation: str) -> list[tuple[str, dict[str, Any]]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT id, body FROM message WHERE conversation = ? ORDER BY ms, seq", (conversation,)
        ).fetchall()
    return [(i, json.loads(b)) for i, b in rows]


async def test_sigkill_of_the_history_writer_mid_batch_loses_nothing_from_the_database(
    cluster: Cluster, infra: Infra
) -> None:
    """The writer is held inside a batch by a write lock on the database (it has read entries and
    cannot commit them), killed there, and the database ends with every message exactly once."""
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    database = cluster.settings.state_path / "gochat.sqlite3"
    victim = cluster.start_module("task", name="task_writer_victim")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        reader = await Account(api, unique("bob")).register()
        clients = [Resumer([cluster.ws_url], reader, room)]
        tasks = await start_clients(clients)
        sender = Sender(api, alice, room)
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: len(sender.room_accepted) >= 40, 60, "traffic before the kill")
        lock = sqlite3.connect(database, timeout=30, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # writers wait (busy_timeout), readers go on (WAL)
        try:
            # Both writers are inside a batch once entries stay unread in their group: a writer
            # waiting in XREADGROUP would have taken them.
            def stuck() -> bool:
                info = group_info(db, HISTORY_GROUP)
                return bool(info) and (info.get("lag") or 0) >= 30

            await eventually(stuck, 30, "history writers stuck in a batch")
            held = held_by(db, HISTORY_GROUP, consumer_of(victim))
            victim.kill()
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        before = len(sender.accepted_at)
        await eventually(lambda: len(sender.accepted_at) > before + 100, 60, "more traffic after the kill")
        await sender.finish(sending, clients)
        await stop_clients(clients, tasks)
        await eventually(lambda: caught_up(db, HISTORY_GROUP), 60, "the history writer caught up")
        rows = _database_rows(database, f"room:{room}")
        stored = [body["msg"] for _, body in rows]
        lost = [t for t in sender.room_accepted if t not in set(stored)]
        assert not lost, f"{len(lost)} accepted messages missing from the database, e.g. {lost[:5]}"
        assert stored == sender.room_accepted, "the database holds repeats or an other order"
        for key in db.scan_iter("gochat_hist_*"):  # the history endpoint now reads the database only
            db.delete(key)
        assert await _history_pages(api, alice.token, room) == sender.room_accepted
    # not vacuous: the killed writer held a batch it had read and not acknowledged
    assert held > 0, "the killed writer held no unacknowledged history entries"
    clients[0].check_exactly_once(sender)
    alive(cluster, victim)


async def test_redis_restart_without_its_data_history_and_resume_come_from_the_database(
    cluster: Cluster, infra: Infra
) -> None:
    db = redis.Redis.from_url(f"redis://{infra.redis_address}/{cluster.db}")
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        reader = await Account(api, unique("bob")).register()
        bob_id = await api.user_id(reader.token)
        clients = [Resumer([cluster.ws_url], reader, room, private=True)]
        tasks = await start_clients(clients)
        sender = Sender(api, alice, room, to_user=bob_id)
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: len(clients[0].received) >= 60, 60, "traffic before the restart")
        # The hot store and queue go with Redis's data: what was accepted must be in the database first.
        sender.go.clear()
        await eventually(lambda: caught_up(db, HISTORY_GROUP) and caught_up(db, TASK_GROUP), 60, "writers caught up")
        accepted_before = len(sender.accepted_at)
        infra.stop_redis()
        down = time.monotonic()
        sender.go.set()
        await eventually(lambda: any(s > down for s, _, _ in sender.refused), 30, "a push refused while Redis is down")
        await asyncio.sleep(0.5)
        for path in (infra.root / "redis").iterdir():  # no data: a new, empty Redis
            if path.is_dir():
                for inner in path.iterdir():
                    inner.unlink()
                path.rmdir()
            else:
                path.unlink()
        up = time.monotonic()
        infra.start_redis()
        await eventually(lambda: len(sender.accepted_at) > accepted_before + 150, 90, "traffic after the restart")
        await sender.finish(sending, clients)
        await stop_clients(clients, tasks)
        await eventually(lambda: caught_up(db, HISTORY_GROUP), 60, "the history writer caught up")
        assert await _history_pages(api, alice.token, room) == sender.room_accepted
        private = await api.post(
            "/push/privateHistory", {"authToken": reader.token, "userId": await api.user_id(alice.token)}
        )
        assert private["code"] == 0, private
    # no push answered code 0 while Redis was down (it would be lost), and some were refused
    assert not [s for s in sender.accepted_spans if s[0] > down and s[1] < up], "accepted while Redis was down"
    refused_down = [r for s, e, r in sender.refused if s > down and e < up]
    assert refused_down and all(r["code"] == 1 and r["message"] for r in refused_down), refused_down[:3]
    # not vacuous: the client resumed across the restart with an id from before it
    client = clients[0]
    assert any(
        t > up and since and id_key(since) <= id_key(client.received[accepted_before - 1]["id"])
        for t, _, since in client.joins
    )
    client.check_exactly_once(sender)
    alive(cluster)


BAD_SINCE: list[Any] = [
    42,
    None,
    True,
    1.5,
    [],
    {"id": "1-1"},
    "garbage",
    "-",
    "1-2-3",
    "-1",
    "١-١",  # Arabic-Indic digits
    "9" * 40 + "-1",
    "x" * 300,
    "9" * 30000,  # huge
]


# Ids of the right shape that Redis cannot take: numbers past 64 bits, or the very last id (no
# id comes after it).  Logic passes them to XREVRANGE, whose error it reports as "redis unavailable".
OUT_OF_RANGE_SINCE = ["1-" + "9" * 39, "18446744073709551615-18446744073709551615", "99999999999999999999-0"]


async def test_bad_since_values_are_unknown_or_refused_never_a_crash(cluster: Cluster) -> None:
    await _bad_since(cluster, BAD_SINCE)


async def test_since_ids_out_of_redis_range_are_unknown(cluster: Cluster) -> None:
    await _bad_since(cluster, OUT_OF_RANGE_SINCE)


async def _bad_since(cluster: Cluster, values: list[Any]) -> None:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_url) as api:
        alice = await Account(api, unique("alice")).register()
        for n in range(3):
            reply = await api.post("/push/pushRoom", {"authToken": alice.token, "roomId": room, "msg": f"k{n}"})
            assert reply["code"] == 0, reply
        outcomes: dict[str, list[str]] = {}
        for bad in values:
            label = f"{repr(bad)[:40]} ({len(repr(bad))} characters)"
            for join in (_ws_join, _tcp_join):
                try:
                    outcome = await join(cluster, api, alice, room, bad)
                except AssertionError as exc:
                    outcome = f"WRONG: {exc}"
                outcomes.setdefault(label, []).append(outcome)
        print("bad since outcomes:", json.dumps(outcomes, indent=1))
        alive(cluster)
        wrong = {k: v for k, v in outcomes.items() if any(o.startswith("WRONG") for o in v)}
        # and the system still works: a good resume
        client = Resumer([cluster.ws_url], alice, room)
        tasks = await start_clients(client_list := [client])
        reply = await api.post("/push/pushRoom", {"authToken": alice.token, "roomId": room, "msg": "still here"})
        assert reply["code"] == 0
        await eventually(lambda: "still here" in client.texts(3), 15, "a live message")
        await stop_clients(client_list, tasks)
    alive(cluster)
    assert not wrong, json.dumps(wrong, indent=1)


async def _ws_join(cluster: Cluster, api: ApiClient, account: Account, room: int, since: Any) -> str:
    """'unknown' (an op-7 frame, the kept messages, then live) or 'refused <code> <reason>'."""
    join = json.dumps({"authToken": account.token, "roomId": room, "since": since})
    async with websockets.connect(cluster.ws_url, open_timeout=10) as ws:
        await ws.send(join)
        try:
            first = json.loads(await asyncio.wait_for(_first_not_5(ws), 15))
        except websockets.ConnectionClosed:
            assert ws.close_code in (1007, 1008, 1009) and (ws.close_code == 1009 or ws.close_reason), (
                since,
                ws.close_code,
                ws.close_reason,
            )
            return f"refused {ws.close_code} {ws.close_reason}"
        assert first == {"op": 7, "reason": "unknown"}, (repr(since)[:50], first)
        text = unique("live")
        assert (await api.post("/push/pushRoom", {"authToken": account.token, "roomId": room, "msg": text}))[
            "code"
        ] == 0
        while True:
            body = json.loads(await asyncio.wait_for(ws.recv(), 15))
            if body.get("op") == 3 and body["msg"] == text:
                return "unknown"


async def _first_not_5(ws: websockets.ClientConnection) -> str | bytes:
    while True:
        message = await ws.recv()
        if json.loads(message).get("op") != 5:
            return message


async def _tcp_join(cluster: Cluster, api: ApiClient, account: Account, room: int, since: Any) -> str:
    """The same over TCP op 6: 'unknown' or 'refused' (the server closed the connection)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.tcp_ports[0])
    try:
        payload = json.dumps({"op": 6, "authToken": account.token, "roomId": room, "since": since}).encode()
        try:
            writer.write(encode_frame(payload))
        except ValueError:
            return "refused: larger than a frame"
        decoder = FrameDecoder()
        frames: list[dict[str, Any]] = []
        text = unique("live")

        async def until(predicate: Any) -> bool:
            while not any(predicate(f) for f in frames):
                data = await reader.read(65536)
                if not data:
                    return False
                frames.extend(json.loads(p) for p in decoder.feed(data) if p != b"ping msg")
            return True

        if not await asyncio.wait_for(until(lambda f: f.get("op") in (3, 7)), 15):
            return "refused (closed)"
        first = next(f for f in frames if f.get("op") in (3, 7))
        assert first == {"op": 7, "reason": "unknown"}, (repr(since)[:50], first)
        assert (await api.post("/push/pushRoom", {"authToken": account.token, "roomId": room, "msg": text}))[
            "code"
        ] == 0
        assert await asyncio.wait_for(until(lambda f: f.get("msg") == text), 15), "closed before the live message"
        return "unknown"
    finally:
        writer.close()
