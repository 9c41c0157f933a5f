"""etcd with authentication: nodes register and find each other with a user and a password, and
still do after etcd restarts, which makes every auth token it gave out worthless.

This module runs on its own Redis and etcd (auth turned on), so it disturbs no other test.
"""

from __future__ import annotations

import asyncio
import random
import re
import uuid
from collections.abc import Iterator

import aetcd
import grpc
import pytest
from aetcd import rpc

from gochat_py.discovery import make_etcd_client
from tests.e2e.harness import ApiClient, Cluster, Infra, WsClient, op_is, registered, running_infra

LEASE_TTL = 3
USER, PASSWORD = "root", "gochat-test-secret"
CLUSTER_ENV = {
    "GOCHAT_ETCD__LEASE_TTL": str(LEASE_TTL),
    "GOCHAT_ETCD__USERNAME": USER,
    "GOCHAT_ETCD__PASSWORD": PASSWORD,
}
CLUSTER_MODULES = ("logic", "connect_websocket", "task", "api")


async def _enable_auth(address: str) -> None:
    """A root user, then authentication on (etcd's own API, as etcdctl would)."""
    channel = grpc.aio.insecure_channel(address)
    try:
        auth = rpc.AuthStub(channel)
        await auth.UserAdd(rpc.AuthUserAddRequest(name=USER, password=PASSWORD), timeout=10)
        await auth.UserGrantRole(rpc.AuthUserGrantRoleRequest(user=USER, role="root"), timeout=10)
        await auth.AuthEnable(rpc.AuthEnableRequest(), timeout=10)
    finally:
        await channel.close()


async def _leases(cluster: Cluster) -> dict[str, tuple[int, int]]:
    """Each registered key with its lease and the revision that created it: a node whose lease
    ran out comes back under a new lease (and a new key), which its key's name does not show."""
    client = make_etcd_client(cluster.settings.etcd)  # with the cluster's user and password
    try:
        items = await client.get_prefix(cluster.settings.etcd.base_path.encode())
        return {item.key.decode(): (item.lease, item.create_revision) for item in items}
    finally:
        await client.close()


def _node_changes(cluster: Cluster) -> list[str]:
    return [line for line in cluster.log_path.read_text().splitlines() if 'msg="service nodes changed"' in line]


def _removed(line: str) -> list[str]:
    match = re.search(r'removed=(?:"([^"]*)"|(\S+))', line)
    return [a for a in (match.group(1) or match.group(2) or "").split(",") if a] if match else []


@pytest.fixture(scope="module")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    """This module's own Redis and etcd, with authentication (the ``cluster`` fixture picks it up)."""
    with running_infra(tmp_path_factory, "infra_etcd_auth") as running:
        asyncio.run(_enable_auth(running.etcd_address))
        yield running


async def test_nodes_stay_registered_and_are_found_after_an_authenticated_etcd_restarts(
    cluster: Cluster, infra: Infra
) -> None:
    before = await registered(cluster)
    assert len(before) == 2, before  # logic and connect_websocket, registered with the password
    host, port = infra.etcd_address.split(":")
    async with aetcd.Client(host=host, port=int(port), timeout=5) as anonymous:
        with pytest.raises(aetcd.exceptions.ClientError):  # authentication is really on
            await anonymous.get_prefix(cluster.settings.etcd.base_path.encode())

    leases = await _leases(cluster)
    assert set(leases) == before
    infra.stop_etcd()
    infra.start_etcd()  # same data (users, leases, keys); the tokens it gave out are unknown now
    await asyncio.sleep(3 * LEASE_TTL)  # the leases would have run out without working keep-alives
    await cluster.logged("etcd refused the auth token (restarted?); logged in again")
    # the same keys on the same leases: kept alive, not expired and registered again
    assert await _leases(cluster) == leases
    addresses = {key.rpartition("@")[2] for key in before}
    seen_removed = [line for line in _node_changes(cluster) if addresses & set(_removed(line))]
    assert not seen_removed, seen_removed  # and no watcher saw a node go away meanwhile

    # modules started now find the others through the same etcd, and a message goes through them
    api_2_port, ws_2_port, ws_2_rpc = cluster.start_second_api_and_websocket_node()
    assert f"{cluster.settings.etcd.base_path}/ConnectRpc/tcp@{ws_2_rpc}" in await registered(cluster)
    room = random.randint(10**6, 10**9)
    tag = uuid.uuid4().hex[:6]
    async with ApiClient(cluster.api_url) as api, ApiClient(f"http://127.0.0.1:{api_2_port}") as api_2:
        old_node = await WsClient(cluster.ws_url).join(await api.register(f"olga{tag}"), room)
        sender = await api_2.register(f"nick{tag}")
        new_node = await WsClient(f"ws://127.0.0.1:{ws_2_port}/ws").join(sender, room)
        await new_node.next_frame(op_is(5, count=2), timeout=15)
        reply = await api_2.post("/push/pushRoom", {"authToken": sender, "msg": "after restart", "roomId": room})
        assert reply["code"] == 0, reply
        for client in (old_node, new_node):  # task found the new node, and still knows the old one
            await client.next_frame(op_is(3, msg="after restart"), timeout=15)
            await client.close()
    crashed = [p.name for p in cluster.system.modules if not p.running()]
    assert not crashed, cluster.tails()
