"""gochat-py over several hosts: three etcd members, one Redis and the modules spread out over
network namespaces (tests/multihost/cluster.py has the layout); the clients run on a host of their
own.  Nothing here dials 127.0.0.1: every address is a test host's."""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from gochat_py.client.tcp import TcpClient
from gochat_py.config import EtcdSettings
from gochat_py.discovery import make_etcd_client
from tests.e2e.harness import ApiClient, TcpReader, WsClient, op_is
from tests.multihost.cluster import MultiHostCluster, etcd_healthy

T = TypeVar("T")


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


def test_every_module_registers_its_hosts_address(cluster: MultiHostCluster) -> None:
    keys = on_client(cluster, registered_nodes, cluster)
    h1, h2 = cluster.hosts["h1"].address, cluster.hosts["h2"].address
    assert addresses_of(keys) == {
        f"{h1}:6900", f"{h2}:6900", f"{h1}:6912", f"{h2}:6912", f"{h2}:6914"
    }, keys  # fmt: skip
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
        assert all(cluster.on_client(etcd_healthy, address) for address in survivors), "no quorum"
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
