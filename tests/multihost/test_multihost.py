"""gochat-py over several hosts: three etcd members, a Redis primary and two replicas with a
Sentinel on each host, PostgreSQL on a host of its own, mutual TLS between the layers, and the
modules spread out over network namespaces (tests/multihost/cluster.py has the layout); the
clients run on a host of their own.  Nothing here dials 127.0.0.1: every address is a test host's.

The fault tests run under steady load and print their recovery figures (docs/deploy.md, "When a
host goes down", quotes them)."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import grpc
import redis as redis_client
import websockets

from gochat_py.client.tcp import TcpClient
from gochat_py.config import EtcdSettings
from gochat_py.discovery import make_etcd_client
from gochat_py.logic.sessions import user_nodes_key
from gochat_py.rpc import connect_pb2, connect_pb2_grpc
from tests.e2e.certs import Authority
from tests.e2e.harness import ApiClient, TcpReader, WsClient, eventually, op_is
from tests.multihost.cluster import LAYOUT, MultiHostCluster, etcd_healthy
from tests.multihost.netns import Host

T = TypeVar("T")
STABLE = 10.0  # seconds a socket stays open before the page's backoff starts again at 1 s


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def on_client(cluster: MultiHostCluster, scenario: Callable[..., Awaitable[T]], *args: Any) -> T:
    """Runs the async ``scenario(*args)`` on the client host, in an event loop of its own."""
    return cluster.on_client(lambda: asyncio.run(scenario(*args)))


async def registered_nodes(cluster: MultiHostCluster) -> dict[str, str]:
    """{etcd key: value} under the deployment's base path, read through the etcd cluster."""
    settings = EtcdSettings(endpoint=cluster.etcd_endpoint, base_path=cluster.env["GOCHAT_ETCD__BASE_PATH"])
    client = make_etcd_client(settings)
    try:
        return {item.key.decode(): item.value.decode() for item in await client.get_prefix(settings.base_path.encode())}
    finally:
        await client.close()


def addresses_of(keys: dict[str, str]) -> set[str]:
    return {key.rpartition("tcp@")[2] for key in keys}


async def site_config(cluster: MultiHostCluster) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{cluster.site_url}/config.json") as response:
        assert response.status == 200
        return await response.json()


def test_every_module_registers_its_hosts_address(cluster: MultiHostCluster) -> None:
    keys = on_client(cluster, registered_nodes, cluster)
    h1, h2 = cluster.hosts["h1"].address, cluster.hosts["h2"].address
    assert addresses_of(keys) == {
        f"{h1}:6900", f"{h2}:6900", f"{h1}:6912", f"{h2}:6912", f"{h2}:6914"
    }, keys  # fmt: skip
    # the page (served from h3) is handed both websocket nodes, as their hosts' addresses
    config = on_client(cluster, site_config, cluster)
    assert config["wsUrls"] == sorted(cluster.ws_urls) and config["wsUrl"] in cluster.ws_urls, config
    assert config["apiUrl"] == cluster.api_urls[0], config
    assert not cluster.died(), cluster.tails()


async def _round_trip(cluster: MultiHostCluster) -> dict[str, Any]:
    room = random.randint(10**6, 10**9)
    api_1, api_2 = ApiClient(cluster.api_urls[0]), ApiClient(cluster.api_urls[1])
    async with api_1, api_2:
        names = {who: unique(who) for who in ("alice", "bob", "carol", "dave")}
        # users register and log in through either api
        tokens = {
            "alice": await api_1.register(names["alice"]),
            "bob": await api_2.register(names["bob"]),
            "carol": await api_1.register(names["carol"]),
            "dave": await api_2.register(names["dave"]),
        }
        login = await api_2.post("/user/login", {"userName": names["alice"], "passWord": "pw-123456"})
        assert login["code"] == 0, login
        tokens["alice"] = login["data"]
        ids = {who: await api_1.user_id(token) for who, token in tokens.items()}
        ws_1, ws_2 = cluster.ws_urls
        alice = await WsClient(ws_1).join(tokens["alice"], room)
        bob = await WsClient(ws_2).join(tokens["bob"], room)
        carol = await WsClient(ws_1).join(tokens["carol"], room)
        tcp_client = await TcpClient.connect(cluster.tcp_addresses[0])
        dave = TcpReader(tcp_client)
        await tcp_client.join(tokens["dave"], room)
        try:
            everyone = {str(ids[w]): names[w] for w in names}
            for ws in (alice, bob, carol):
                await ws.next_frame(op_is(5, roomUserInfo=everyone), timeout=20)
            sockets = {
                "alice": alice.ws.local_address[0],
                "bob": bob.ws.local_address[0],
                "dave": tcp_client.writer.get_extra_info("sockname")[0],
                "bob_peer": bob.ws.remote_address[0],
            }
            # room messages through each api, from a websocket user and from the TCP user
            for api, sender in ((api_1, "bob"), (api_2, "alice")):
                text = unique(f"room-from-{sender}-")
                reply = await api.post("/push/pushRoom", {"authToken": tokens[sender], "msg": text, "roomId": room})
                assert reply["code"] == 0, reply
                frames = [await ws.next_frame(op_is(3, msg=text)) for ws in (alice, bob, carol)]
                frames.append(await dave.next(op_is(3, msg=text)))
                assert len(set(frames)) == 1, frames  # the same bytes on every node
                assert json.loads(frames[0])["fromUserName"] == names[sender]
            await tcp_client.send_room("from tcp")
            for ws in (alice, bob, carol):
                body = json.loads(await ws.next_frame(op_is(3, msg="from tcp")))
                assert body["fromUserName"] == names["dave"]
            # private messages across hosts: to a user on the other websocket node, and to TCP
            privates = (
                (api_1, "bob", "alice", alice),  # through h1's api, from a user on h2 to one on h1
                (api_2, "alice", "bob", bob),
                (api_1, "carol", "dave", None),
            )
            for api, sender, to, receiver in privates:
                text = unique(f"private-{sender}-{to}-")
                body = {"authToken": tokens[sender], "msg": text, "toUserId": str(ids[to]), "roomId": room}
                reply = await api.post("/push/push", body)
                assert reply["code"] == 0, reply
                frame = await (receiver.next_frame(op_is(2, msg=text)) if receiver else dave.next(op_is(2, msg=text)))
                got = json.loads(frame)
                assert (got["fromUserName"], got["toUserName"]) == (names[sender], names[to])
            return sockets
        finally:
            await tcp_client.close()
            for ws in (alice, bob, carol):
                await ws.close()


def test_a_round_trip_across_hosts(cluster: MultiHostCluster) -> None:
    sockets = on_client(cluster, _round_trip, cluster)
    # the clients really spoke from their own host to the others
    client = cluster.client.address
    assert (sockets["alice"], sockets["bob"], sockets["dave"]) == (client, client, client)
    assert sockets["bob_peer"] == cluster.hosts["h2"].address
    assert not cluster.died(), cluster.tails()


async def _room_message_reaches(cluster: MultiHostCluster, ws_url: str) -> float:
    room = random.randint(10**6, 10**9)
    async with ApiClient(cluster.api_urls[0]) as api:
        token = await api.register(unique("wild"))
        ws = await WsClient(ws_url).join(token, room)
        try:
            await ws.next_frame(op_is(5), timeout=20)
            text = unique("to-the-wildcard-node-")
            start = time.monotonic()
            reply = await api.post("/push/pushRoom", {"authToken": token, "msg": text, "roomId": room})
            assert reply["code"] == 0, reply
            await ws.next_frame(op_is(3, msg=text), timeout=20)
            return time.monotonic() - start
        finally:
            await ws.close()


def test_a_wildcard_bind_registers_a_routable_address_that_task_on_another_host_reaches(
    cluster: MultiHostCluster,
) -> None:
    """A connect node on h3 (no task there) binds 0.0.0.0 with no rpc_advertise: it registers
    h3's address, and a task process on h1 or h2 delivers to it."""
    h3 = cluster.hosts["h3"]
    node = cluster.start_module(
        h3,
        "connect_websocket",
        "ws_wildcard_3",
        GOCHAT_CONNECT_WEBSOCKET__BIND="0.0.0.0:7100",
        GOCHAT_CONNECT_WEBSOCKET__RPC_BIND="0.0.0.0:6920",
        GOCHAT_CONNECT_WEBSOCKET__RPC_ADVERTISE="",
    )
    try:
        keys = on_client(cluster, registered_nodes, cluster)
        mine = [k for k in keys if k.endswith(":6920")]
        assert mine and addresses_of({k: "" for k in mine}) == {f"{h3.address}:6920"}, keys
        assert all(not a.startswith(("127.", "0.0.0.0", "localhost")) for a in addresses_of(keys)), keys
        on_client(cluster, _room_message_reaches, cluster, f"ws://{h3.address}:7100/ws")
        assert not cluster.died(), cluster.tails()
    finally:
        node.stop()


def registrations(cluster: MultiHostCluster) -> dict[str, int]:
    """How many times each running logic and connect node has registered in etcd (once, unless
    its lease ran out)."""
    return {
        p.name: sum("registered in etcd" in line for line in p.lines)
        for p in cluster.processes
        if p.running() and p.name.startswith(("logic", "ws", "tcp"))
    }


def test_one_etcd_member_killed_quorum_holds_and_the_system_goes_on(cluster: MultiHostCluster) -> None:
    """e1 is the first member in every module's endpoint list, so every etcd connection is on it
    when it dies: each must move to e2 or e3 before its lease (3 s) runs out."""
    before = registrations(cluster)
    assert set(before.values()) == {1}, before
    member = cluster.process("etcd_h1")
    member.kill()
    killed = time.monotonic()
    try:
        survivors = [f"{h.address}:2379" for h in cluster.etcd_hosts[1:]]
        # if e1 led, the others elect a new leader first (etcd's election timeout: 1 s)
        while not all(cluster.on_client(etcd_healthy, address) for address in survivors):
            assert time.monotonic() < killed + 10, "e2 and e3 have no quorum"
            time.sleep(0.1)
        print(f"\netcd: e2 and e3 healthy {time.monotonic() - killed:.2f} s after e1 was killed")
        on_client(cluster, _round_trip, cluster)
        # two lease times with e1 gone: a module that had lost etcd would have had to register again
        time.sleep(max(0.0, killed + 6.5 - time.monotonic()))
        assert registrations(cluster) == before, registrations(cluster)
        keys = on_client(cluster, registered_nodes, cluster)
        assert len(keys) == len(before), keys
        on_client(cluster, _round_trip, cluster)
        # a module started now registers through the members that are left
        h3 = cluster.hosts["h3"]
        late = cluster.start_module(
            h3,
            "connect_websocket",
            "ws_late_3",
            GOCHAT_CONNECT_WEBSOCKET__BIND=f"{h3.address}:7200",
            GOCHAT_CONNECT_WEBSOCKET__RPC_BIND=f"{h3.address}:6930",
        )
        try:
            keys = on_client(cluster, registered_nodes, cluster)
            assert f"{h3.address}:6930" in addresses_of(keys), keys
            on_client(cluster, _room_message_reaches, cluster, f"ws://{h3.address}:7200/ws")
        finally:
            late.stop()
        assert not cluster.died("etcd_h1"), cluster.tails()
    finally:
        restarted = cluster.start_etcd_member(cluster.hosts["h1"])  # same data: it rejoins
        restarted.wait_ready(60)


class PageLikeClient:
    """A websocket client that reconnects as the chat page does: after a drop, wait 1 s (doubling
    per attempt, at most 30 s, with jitter; a socket that stayed open 10 s starts again at 1 s),
    ask the site which websocket nodes are live (``/config.json``'s ``wsUrls``), move to another
    one than the node it was on, and join with ``since`` = the last id seen.  Keeps every
    op-2/op-3 body with when and where it came."""

    def __init__(self, site_url: str, url: str, token: str, room: int) -> None:
        self.site_url, self.url, self.token, self.room = site_url, url, token, room
        self.urls = [url]
        self.since = ""
        self.received: list[tuple[float, str, dict[str, Any]]] = []  # (when, url, body)
        self.joined = asyncio.Event()
        self.drops: list[float] = []
        self.joins: list[tuple[float, str, str]] = []  # (when, url, since) of every join sent
        self.why: list[str] = []  # why each connection ended
        self.gaps: list[tuple[float, str, dict[str, Any]]] = []  # op-7 frames: a since not honoured
        self.without_id: list[tuple[float, str, dict[str, Any]]] = []
        self.stopping = False
        self.ws: websockets.ClientConnection | None = None

    async def drop(self) -> None:
        """Closes the socket from the client's side (a page reloaded, a network blip): it then
        reconnects and resumes as after any drop."""
        if self.ws is not None:
            await self.ws.close()

    async def move_to_another_node(self) -> None:
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
                session.get(f"{self.site_url}/config.json") as response,
            ):
                self.urls = (await response.json())["wsUrls"] or self.urls
        except (OSError, TimeoutError, aiohttp.ClientError, ValueError, KeyError):
            pass  # the site is away too: keep the list it had
        others = [url for url in self.urls if url != self.url]
        if others:
            self.url = random.choice(others)

    def texts(self, op: int) -> list[str]:
        return [body["msg"] for _, _, body in self.received if body["op"] == op]

    def describe(self, start: float) -> str:
        """Its history for a failure message, times in seconds from ``start``."""
        return (
            f"joins {[(round(t - start, 2), url, since) for t, url, since in self.joins]}, ends {self.why},"
            f" gaps {self.gaps}, without an id {self.without_id[:3]},"
            f" last {[(round(t - start, 2), b['msg']) for t, _, b in self.received[-3:]]}"
        )

    async def run(self) -> None:
        attempt = 0
        while not self.stopping:
            try:
                async with websockets.connect(self.url, open_timeout=5, ping_interval=None) as ws:
                    self.ws = ws
                    await ws.send(json.dumps({"authToken": self.token, "roomId": self.room, "since": self.since}))
                    opened = time.monotonic()
                    self.joins.append((opened, self.url, self.since))
                    try:
                        await self._read(ws)
                    finally:
                        if time.monotonic() - opened >= STABLE:
                            attempt = 0
            except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
                self.why.append(f"{self.url}: {exc!r}")
            if self.stopping:
                return
            self.drops.append(time.monotonic())
            await asyncio.sleep(min(1.0 * 2**attempt, 30.0) * random.uniform(0.8, 1.2))
            attempt += 1
            await self.move_to_another_node()

    async def _read(self, ws: websockets.ClientConnection) -> None:
        while not self.stopping:
            try:
                message = await asyncio.wait_for(ws.recv(), 0.2)
            except TimeoutError:
                continue
            body = json.loads(message)
            if body.get("op") == 5:
                self.joined.set()
            elif body.get("op") == 7:
                self.gaps.append((time.monotonic(), self.url, body))
            elif body.get("op") in (2, 3):
                self.received.append((time.monotonic(), self.url, body))
                if "id" in body:
                    self.since = body["id"]
                else:  # every join sends a since: every frame must carry its id
                    self.without_id.append((time.monotonic(), self.url, body))


class Sender:
    """Sends room messages, every fourth a private one to ``to_user``, one at a time through the
    apis in turn, until stopped; keeps what was accepted (code 0), in order."""

    def __init__(self, apis: list[ApiClient], token: str, room: int, to_user: int) -> None:
        self.apis, self.token, self.room, self.to_user = apis, token, room, to_user
        self.room_accepted: list[str] = []
        self.private_accepted: list[str] = []
        self.refused: list[dict[str, Any]] = []  # replies, with the text they refused
        self.room_attempted: list[str] = []  # every text sent, accepted or not, in order
        self.private_attempted: list[str] = []
        self.accepted_at: list[float] = []
        self.stopping = False

    async def send(self, n: int, text: str, private: bool) -> bool:
        api = self.apis[n % len(self.apis)]
        if private:
            body = {"authToken": self.token, "toUserId": str(self.to_user), "roomId": self.room, "msg": text}
            reply = await api.post("/push/push", body)
        else:
            reply = await api.post("/push/pushRoom", {"authToken": self.token, "roomId": self.room, "msg": text})
        (self.private_attempted if private else self.room_attempted).append(text)
        if reply["code"] != 0:
            self.refused.append({**reply, "text": text, "at": time.monotonic()})
            return False
        (self.private_accepted if private else self.room_accepted).append(text)
        self.accepted_at.append(time.monotonic())
        return True

    async def run(self) -> None:
        n = 0
        while not self.stopping:
            private = n % 4 == 3
            if not await self.send(n, f"{'p' if private else 'r'}{n}", private):
                await asyncio.sleep(0.05)
            n += 1
            await asyncio.sleep(0.01)


def check_exactly_once(client: PageLikeClient, sender: Sender, private: bool) -> int:
    """Every accepted message exactly once, in order.  A message the api answered with an error
    may have been queued all the same (the logic that took it died before answering): it may
    arrive, at most once and in its place.  Returns how many of those arrived."""
    assert not client.gaps, f"gaps: {client.gaps}; joins (url, since): {[j[1:] for j in client.joins]}"
    assert not client.without_id, f"frames without an id: {client.without_id[:3]}; joins: {client.joins}"
    refused = {r["text"] for r in sender.refused}
    delivered_anyway = 0
    for op, accepted, attempted in (
        (3, sender.room_accepted, sender.room_attempted),
        (2, *((sender.private_accepted, sender.private_attempted) if private else ([], []))),
    ):
        got = client.texts(op)
        lost = [t for t in accepted if t not in set(got)]
        repeated = sorted({t for t in got if got.count(t) > 1})
        assert not lost, f"{len(lost)} op-{op} messages lost, e.g. {lost[:5]}"
        assert not repeated, (
            f"op-{op} messages repeated: {repeated[:5]}; joins (url, since): {[j[1:] for j in client.joins]};"
            f" received (url, op, msg, id): {[(u, b['op'], b['msg'], b.get('id')) for _, u, b in client.received]}"
        )
        extra = [t for t in got if t not in set(accepted)]
        assert set(extra) <= refused, f"op-{op} messages nobody sent: {sorted(set(extra) - refused)[:5]}"
        order = {text: n for n, text in enumerate(attempted)}
        assert [order[t] for t in got] == sorted(order[t] for t in got), f"op-{op} messages out of order"
        delivered_anyway += len(extra)
    return delivered_anyway


async def _host_down(cluster: MultiHostCluster, victim: Host) -> dict[str, Any]:
    room = random.randint(10**6, 10**9)
    victim_url = f"ws://{victim.address}:7000/ws"
    survivors = cluster.ws_urls
    async with ApiClient(cluster.api_urls[0]) as api_1, ApiClient(cluster.api_urls[1]) as api_2:
        alice = await api_1.register(unique("alice"))
        tokens = [await api_2.register(unique(f"bob{n}")) for n in range(3)]
        carol = await api_1.register(unique("carol"))  # on a node that stays up throughout
        moving = [PageLikeClient(cluster.site_url, victim_url, token, room) for token in tokens]
        staying = PageLikeClient(cluster.site_url, survivors[1], carol, room)
        clients = [*moving, staying]
        runs = [asyncio.create_task(c.run()) for c in clients]
        for client in clients:
            await asyncio.wait_for(client.joined.wait(), 20)
        sender = Sender([api_1, api_2], alice, room, to_user=await api_1.user_id(tokens[0]))
        sending = asyncio.create_task(sender.run())
        await eventually(lambda: all(len(c.received) >= 40 for c in clients), 60, "traffic before the kill")
        assert all(c.received[-1][1] == victim_url for c in moving)
        killed_pids = await asyncio.to_thread(cluster.power_off, victim)
        killed, sent_before = time.monotonic(), len(sender.room_accepted)

        def back(client: PageLikeClient) -> float | None:
            return next((t for t, url, _ in client.received if t > killed and url != victim_url), None)

        await eventually(lambda: all(back(c) for c in moving), 60, "clients back on another node")
        await eventually(lambda: len(sender.room_accepted) > sent_before + 100, 60, "more traffic after the kill")
        sender.stopping = True
        await sending
        marker = unique("end")
        assert await sender.send(0, marker, private=False)
        assert await sender.send(1, marker + "p", private=True)
        for client, run in zip(clients, runs, strict=True):
            try:
                await eventually(lambda c=client: marker in c.texts(3), 30, "the room marker")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {client.describe(killed)}; the client's loop: {run}") from None
        await eventually(lambda: marker + "p" in moving[0].texts(2), 30, "the private marker")
        for client in clients:
            client.stopping = True
        await asyncio.wait_for(asyncio.gather(*runs), 10)
    delivered_anyway = max(check_exactly_once(client, sender, private=(n == 0)) for n, client in enumerate(clients))
    for client in moving:
        t_back = back(client)
        assert t_back is not None
        # not vacuous: the client got nothing between the fault and its return to another node,
        # and messages were accepted in that time (it had to catch up on them)
        assert max(t for t, *_ in client.received if t < t_back) < killed < t_back
        assert any(killed < t < t_back for t in sender.accepted_at), "nothing was sent while the client was away"
    assert not staying.drops, "the client on a node that stayed up was dropped"
    after = [t for t, *_ in staying.received if t > killed]
    return {
        "killed": len(killed_pids),
        "recovery": [round(back(c) - killed, 2) for c in moving],
        # the longest a client on a healthy node waited for a message after the fault
        "others_max_gap": round(max(b - a for a, b in zip([killed, *after], after, strict=False)), 2),
        "accepted": len(sender.room_accepted) + len(sender.private_accepted),
        "refused": sender.refused,
        "delivered_anyway": delivered_anyway,
    }


def test_a_host_with_a_connect_node_and_a_logic_goes_down(cluster: MultiHostCluster) -> None:
    """h4 runs a logic and a connect node; every process on it is killed at once.  Its clients
    reconnect to the other nodes (as the page does) and, with a sender running throughout, end
    with every accepted message exactly once, in order."""
    victim = cluster.network.add_host("h4")
    # etcd's lease at the default of prod (8 s, not the 3 s of the rest): the clients are back
    # long before logic purges the dead node (the next test is what happens after that)
    lease = {"GOCHAT_ETCD__LEASE_TTL": "8"}
    try:
        cluster.start_module(victim, "logic", "logic_4", **lease)
        cluster.start_module(victim, "connect_websocket", "ws_4", **lease)
        result = on_client(cluster, _host_down, cluster, victim)
    finally:
        cluster.power_off(victim)
    print(
        f"\nhost down: {result['killed']} processes killed; clients back on another node after"
        f" {result['recovery']} s (kill to first message there); a client elsewhere waited at most"
        f" {result['others_max_gap']} s for a message; {result['accepted']} messages accepted,"
        f" {len(result['refused'])} refused {sorted({r['message'] for r in result['refused']})}"
        f" ({result['delivered_anyway']} of them delivered all the same)"
    )
    assert result["killed"] >= 2
    assert not cluster.died(), cluster.tails()


async def _resume_after_purge(
    cluster: MultiHostCluster, victim: Host, redis_primary: str
) -> tuple[list[str], list[str]]:
    """bob, on the victim's node, gets private messages; the host dies; once logic has purged the
    dead node (bob has no socket anywhere), bob resumes on another node with ``since`` = the last
    id he saw.  Returns (the private texts sent, the private texts bob received, in order)."""
    room = random.randint(10**6, 10**9)
    primary_host, _, primary_port = redis_primary.rpartition(":")
    db = redis_client.Redis(host=primary_host, port=int(primary_port))
    async with ApiClient(cluster.api_urls[0]) as api:
        alice = await api.register(unique("alice"))
        bob_token = await api.register(unique("bob"))
        bob_id = await api.user_id(bob_token)
        bob = PageLikeClient(cluster.site_url, f"ws://{victim.address}:7000/ws", bob_token, room)
        sender = Sender([api], alice, room, to_user=bob_id)
        run = asyncio.create_task(bob.run())
        await asyncio.wait_for(bob.joined.wait(), 20)
        for n in range(8):
            assert await sender.send(n, f"{'p' if n % 4 == 3 else 'r'}{n}", private=n % 4 == 3)
        await eventually(lambda: len(bob.received) == 8, 20, "bob has all 8")
        bob.stopping = True  # gone with the host: this client reconnects only when told below
        await asyncio.to_thread(cluster.power_off, victim)
        await asyncio.wait_for(run, 10)
        await eventually(lambda: db.hlen(user_nodes_key(bob_id)) == 0, 30, "the dead node purged")
        for n in range(8, 12):
            assert await sender.send(n, f"{'p' if n % 4 == 3 else 'r'}{n}", private=n % 4 == 3)
        bob.stopping = False
        await bob.move_to_another_node()
        run = asyncio.create_task(bob.run())
        await eventually(lambda: "p11" in bob.texts(2), 20, "bob back with the newest private message")
        bob.stopping = True
        await asyncio.wait_for(run, 10)
    db.close()
    return sender.private_accepted, bob.texts(2)


def test_a_client_resuming_after_its_dead_node_was_purged_gets_each_private_message_once(
    cluster: MultiHostCluster,
) -> None:
    victim = cluster.network.add_host("h5")
    try:
        cluster.start_module(victim, "connect_websocket", "ws_6")
        sent, received = on_client(cluster, _resume_after_purge, cluster, victim, cluster.redis_primary())
    finally:
        cluster.power_off(victim)
    assert sent == ["p3", "p7", "p11"]
    assert received == sent, f"bob received {received}"


# -- faults under steady load: the database's host, the Redis primary's host ---------------------


class Load:
    """Steady traffic for a fault test: a sender pushing room messages (every fourth a private
    one) through both apis, and a page-like client on each websocket node (the first gets the
    private messages).  :meth:`finish` sends a marker, waits for it everywhere and checks every
    accepted message arrived exactly once, in order."""

    def __init__(self, cluster: MultiHostCluster, api_1: ApiClient, api_2: ApiClient) -> None:
        self.cluster, self.apis = cluster, [api_1, api_2]
        self.room = random.randint(10**6, 10**9)
        self.clients: list[PageLikeClient] = []
        self.runs: list[asyncio.Task[None]] = []

    async def start(self) -> Load:
        api_1, api_2 = self.apis
        alice = await api_1.register(unique("alice"))
        tokens = [await api_2.register(unique(f"bob{n}")) for n in range(2)]
        self.user_ids = [await api_1.user_id(token) for token in tokens]
        self.to_user = self.user_ids[0]
        self.clients = [
            PageLikeClient(self.cluster.site_url, url, token, self.room)
            for url, token in zip(self.cluster.ws_urls, tokens, strict=True)
        ]
        self.runs = [asyncio.create_task(c.run()) for c in self.clients]
        for client in self.clients:
            await asyncio.wait_for(client.joined.wait(), 20)
        self.sender = Sender(self.apis, alice, self.room, to_user=self.to_user)
        self.sending = asyncio.create_task(self.sender.run())
        await eventually(lambda: all(len(c.received) >= 40 for c in self.clients), 60, "traffic before the fault")
        assert not self.sender.refused, self.sender.refused[:3]
        return self

    def first_accepted_after(self, moment: float) -> float | None:
        return next((t for t in self.sender.accepted_at if t > moment), None)

    def first_received_after(self, client: PageLikeClient, moment: float) -> float | None:
        return next((t for t, *_ in client.received if t > moment), None)

    async def finish(self, after: float) -> int:
        """More traffic once the system is back, the markers, then the exactly-once check;
        returns how many refused pushes were delivered all the same."""
        accepted = len(self.sender.accepted_at)
        await eventually(lambda: len(self.sender.accepted_at) > accepted + 60, 60, "traffic after the recovery")
        self.sender.stopping = True
        await self.sending
        marker = unique("end")
        assert await self.sender.send(0, marker, private=False)
        assert await self.sender.send(1, marker + "p", private=True)
        for client, run in zip(self.clients, self.runs, strict=True):
            try:
                await eventually(lambda c=client: marker in c.texts(3), 30, "the room marker")
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {client.describe(after)}; the client's loop: {run}") from None
        await eventually(lambda: marker + "p" in self.clients[0].texts(2), 30, "the private marker")
        for client in self.clients:
            client.stopping = True
        await asyncio.wait_for(asyncio.gather(*self.runs), 10)
        return sum(check_exactly_once(c, self.sender, private=(n == 0)) for n, c in enumerate(self.clients))


USUAL_ERRORS = {"rpc push msg fail!", "rpc push room msg fail!"}  # the api's, when logic cannot queue
DATABASE_DOWN = 10.0  # seconds the database's host stays down


async def _database_host_down(cluster: MultiHostCluster, redis_primary: str) -> dict[str, Any]:
    db = cluster.db_host
    async with ApiClient(cluster.api_urls[0]) as api_1, ApiClient(cluster.api_urls[1]) as api_2:
        load = await Load(cluster, api_1, api_2).start()
        name = unique("late")
        await api_1.register(name)  # a user who logs in during the outage, and after it
        login = {"userName": name, "passWord": "pw-123456"}
        killed_pids = await asyncio.to_thread(cluster.power_off, db)
        down = time.monotonic()
        # a client reconnects while the database is away: the join and its resume need no database
        await load.clients[1].drop()
        logins: list[tuple[float, dict[str, Any]]] = []  # (seconds it took, reply)
        n = 0
        while time.monotonic() < down + DATABASE_DOWN:
            start = time.monotonic()
            reply = await [api_1, api_2][n % 2].post("/user/login", login)
            logins.append((time.monotonic() - start, reply))
            n += 1
            await asyncio.sleep(0.5)
        sent_during = len(load.sender.accepted_at)
        restarted = await asyncio.to_thread(cluster.start_postgres)
        await asyncio.to_thread(restarted.wait_ready, 60)
        up = time.monotonic()
        while (reply := await api_1.post("/user/login", login))["code"] != 0:
            assert time.monotonic() < up + 30, f"no login 30 s after the database came back: {reply}"
            await asyncio.sleep(0.2)
        login_back = time.monotonic() - up
        # the socket closed during the outage left its node: the user's routes name only the node
        # it resumed on (a Disconnect that failed on the database would have left both)
        host, _, port = redis_primary.rpartition(":")
        with redis_client.Redis(host=host, port=int(port)) as db:
            routes = {k.decode(): int(v) for k, v in db.hgetall(user_nodes_key(load.user_ids[1])).items()}
        delivered_anyway = await load.finish(down)
        accepted_during = [t for t in load.sender.accepted_at if down < t < up]
        refused_during = [r for r in load.sender.refused if down < r["at"] < up]
        rejoined = [j for j in load.clients[1].joins if down < j[0] < up]
        sender = load.sender

        def archived(where: str) -> list[str]:
            rows = cluster.psql(f"SELECT convert_from(body, 'UTF8') FROM message WHERE {where} ORDER BY ms, seq")
            return [json.loads(row)["msg"] for row in rows.splitlines() if row]

        def all_archived() -> bool:
            room = set(archived(f"conversation = 'room:{load.room}'"))
            private = set(archived(f"recipient = {load.to_user} AND op = 2"))
            return set(sender.room_accepted) <= room and set(sender.private_accepted) <= private

        await eventually(lambda: asyncio.to_thread(all_archived), 30, "every accepted message in the database")
        archived_room = archived(f"conversation = 'room:{load.room}'")
    return {
        "killed": len(killed_pids),
        "routes": routes,
        "logins": logins,
        "login_back": round(login_back, 2),
        "accepted_during": len(accepted_during),
        "sent_during": sent_during,
        "refused_during": refused_during,
        "rejoined": rejoined,
        "delivered_anyway": delivered_anyway,
        "accepted": len(sender.accepted_at),
        "archived_room": archived_room,
        "room_accepted": sender.room_accepted,
    }


def test_the_database_host_down_for_ten_seconds_logins_fail_clearly_and_messages_flow(
    cluster: MultiHostCluster,
) -> None:
    """PostgreSQL's host loses power for 10 s under steady load, then its server starts again on
    its data.  Meanwhile a login gets the api's error envelope at once, while pushes are accepted
    and delivered (sessions, rooms and the queue are in Redis) and a client that reconnects
    resumes; once it is back, logins work and task's history writer has put every accepted
    message into the database."""
    result = on_client(cluster, _database_host_down, cluster, cluster.redis_primary())
    # the server started again outlives the scenario (and the thread that asked for it)
    assert cluster.psql("SELECT count(*) FROM message") != "0"
    logins = result["logins"]
    print(
        f"\ndatabase host down {DATABASE_DOWN:.0f} s: {len(logins)} logins tried meanwhile, all refused"
        f" ({sorted({r['message'][:60] for _, r in logins})}, slowest answer {max(t for t, _ in logins):.2f} s);"
        f" {result['accepted_during']} pushes accepted and {len(result['refused_during'])} refused during the"
        f" outage; login back {result['login_back']} s after the server was up again; {result['accepted']}"
        f" messages accepted in all, 0 lost, 0 repeated ({result['delivered_anyway']} refused but delivered);"
        f" every accepted message archived"
    )
    assert result["killed"] >= 1
    assert len(logins) >= 5
    for took, reply in logins:
        assert reply["code"] == 1 and reply["data"] is None and reply["message"], reply
        assert took < 5.0, f"a login during the outage took {took:.2f} s"
    assert result["accepted_during"] >= 50, "pushes stopped while the database was down"
    assert not result["refused_during"], result["refused_during"][:3]
    assert result["rejoined"], "the dropped client did not join again during the outage"
    assert list(result["routes"].values()) == [1], f"the dropped client's routes: {result['routes']}"
    archived = result["archived_room"]
    assert len(archived) == len(set(archived)), "a message archived twice"
    assert not cluster.died(), cluster.tails()


async def _deliver(address: str, credentials: grpc.ChannelCredentials | None) -> int:
    channel = grpc.aio.secure_channel(address, credentials) if credentials else grpc.aio.insecure_channel(address)
    body = b'{"op":3,"msg":"forged"}'
    request = connect_pb2.DeliverRequest(
        items=[connect_pb2.Delivery(room_id=1, msg=connect_pb2.Msg(ver=1, op=3, seq_id="1-1", body=body))]
    )
    try:
        return (await connect_pb2_grpc.ConnectStub(channel).Deliver(request, timeout=5)).code
    finally:
        await channel.close()


async def _raw_delivers(address: str, cases: dict[str, grpc.ChannelCredentials | None]) -> dict[str, str]:
    """What each Deliver call got: "code <n>" or the gRPC status."""
    outcomes = {}
    for what, credentials in cases.items():
        try:
            outcomes[what] = f"code {await _deliver(address, credentials)}"
        except grpc.aio.AioRpcError as exc:
            outcomes[what] = exc.code().name
    return outcomes


def test_a_raw_deliver_from_the_client_host_without_a_valid_certificate_is_refused(
    cluster: MultiHostCluster, tmp_path: Path
) -> None:
    """Task calls the connect nodes' Deliver over mutual TLS; anyone else on the network who
    dials a connect node's gRPC port is refused before the call reaches it."""
    h1 = cluster.hosts["h1"]
    address = f"{h1.address}:6912"
    ca = cluster.pki.ca_path.read_bytes()
    member = cluster.certificate(cluster.client)  # the control: a certificate of the deployment's CA
    stranger = Authority(tmp_path, "stranger").issue("intruder", ips=(cluster.client.address,), dns=())
    cases: dict[str, grpc.ChannelCredentials | None] = {
        "the deployment's certificate": grpc.ssl_channel_credentials(
            ca, member.key.read_bytes(), member.cert.read_bytes()
        ),
        "plaintext": None,
        "TLS without a client certificate": grpc.ssl_channel_credentials(ca),
        "a certificate of another CA": grpc.ssl_channel_credentials(
            ca, stranger.key.read_bytes(), stranger.cert.read_bytes()
        ),
    }
    outcomes = cluster.on_client(lambda: asyncio.run(_raw_delivers(address, cases)))
    print(f"\nraw Deliver to {address} from the client host: {outcomes}")
    assert outcomes["the deployment's certificate"] == "code 0", outcomes
    for what in ("plaintext", "TLS without a client certificate", "a certificate of another CA"):
        assert outcomes[what] == "UNAVAILABLE", (what, outcomes)
    assert not cluster.died(), cluster.tails()


async def _redis_primary_host_down(cluster: MultiHostCluster) -> dict[str, Any]:
    old_primary = cluster.redis_primary()
    victim = next(h for h in cluster.redis_hosts if old_primary.startswith(f"{h.address}:"))
    async with ApiClient(cluster.api_urls[0]) as api_1, ApiClient(cluster.api_urls[1]) as api_2:
        load = await Load(cluster, api_1, api_2).start()
        killed_pids = await asyncio.to_thread(cluster.power_off, victim)
        killed = time.monotonic()
        await load.clients[1].drop()  # a client reconnects in the middle of the failover
        new_primary = ""

        def promoted() -> bool:
            nonlocal new_primary
            new_primary = cluster.redis_primary()
            return new_primary not in ("", old_primary)

        await eventually(lambda: asyncio.to_thread(promoted), 60, "every Sentinel naming the promoted replica")
        promoted_after = time.monotonic() - killed
        await eventually(lambda: load.first_accepted_after(killed), 60, "a push accepted again")
        for client in load.clients:
            await eventually(lambda c=client: load.first_received_after(c, killed), 60, "a message after the kill")
        delivered_anyway = await load.finish(killed)
    first_accepted = load.first_accepted_after(killed)
    assert first_accepted is not None
    return {
        "victim": victim,
        "killed": len(killed_pids),
        "old_primary": old_primary,
        "new_primary": new_primary,
        "promoted": round(promoted_after, 2),
        "first_accepted": round(first_accepted - killed, 2),
        "first_received": [round((load.first_received_after(c, killed) or 0) - killed, 2) for c in load.clients],
        "refused": load.sender.refused,
        "accepted": len(load.sender.accepted_at),
        "delivered_anyway": delivered_anyway,
        "rejoins": [j for j in load.clients[1].joins if j[0] > killed],
    }


def test_the_redis_primary_host_goes_down_a_replica_takes_over(cluster: MultiHostCluster) -> None:
    """Every process on the Redis primary's host (h3: the primary, a Sentinel, an etcd member and
    site) is killed at once under steady load.  The two other Sentinels promote a replica, the
    other replica follows it and acknowledges pushes again; every module follows by itself.  Then
    the host's programs start again, as after a reboot, and its Redis rejoins as a replica."""
    result = on_client(cluster, _redis_primary_host_down, cluster)
    victim = result["victim"]
    try:
        refused = result["refused"]
        print(
            f"\nRedis primary's host down ({victim.name}, {result['killed']} processes killed):"
            f" first push accepted again {result['first_accepted']} s after the kill,"
            f" first message at each client after {result['first_received']} s, both Sentinels left naming"
            f" {result['new_primary']} after {result['promoted']} s;"
            f" {len(refused)} pushes refused meanwhile {sorted({r['message'] for r in refused})};"
            f" {result['accepted']} accepted in all, 0 lost, 0 repeated"
            f" ({result['delivered_anyway']} refused but delivered)"
        )
        assert result["killed"] >= 4  # Redis, Sentinel, etcd, site
        assert result["new_primary"] != result["old_primary"]
        assert result["rejoins"], "the dropped client did not join again"
        # not vacuous: pushes were tried while there was no primary, and got the usual error envelope
        assert refused, "no push was refused during the failover"
        assert all(r["code"] == 1 and r["data"] is None and r["message"] in USUAL_ERRORS for r in refused), refused[:3]
        assert not cluster.died(), cluster.tails()
    finally:
        # the host's programs again, as after a reboot: its Redis a replica of the promoted one
        members = [
            cluster.start_etcd_member(victim),
            cluster.start_redis(victim, replica_of=result["new_primary"]),
            cluster.start_sentinel(victim, fresh=False),
        ]
        for process in members:
            process.wait_ready(60)
        if any(m == "site" for h, m, _ in LAYOUT if h == victim.name):
            cluster.start_module(victim, "site", "site_3")
        cluster.wait_redis_settled(2)
