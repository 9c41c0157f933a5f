"""ServiceWatcher after etcd outages and restarts, and the dead-node reaper, with a fake etcd."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from gochat_py.config import EtcdSettings
from gochat_py.discovery import Node, ServiceWatcher, encode_value
from gochat_py.logic.reaper import reap_dead_nodes

SETTINGS = EtcdSettings(lease_ttl=8)
PREFIX = "/gochat_srv/ConnectRpc/"


@dataclass
class Listing(list):
    header: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(raft_term=2, revision=10))


class FakeEtcd:
    def __init__(self) -> None:
        self.up = True
        self.keys: dict[str, str] = {}
        self.term, self.revision = 2, 10

    def put(self, address: str, server_id: str) -> None:
        self.keys[address] = server_id
        self.revision += 1

    def delete(self, address: str) -> None:
        del self.keys[address]
        self.revision += 1

    async def get_prefix(self, prefix: bytes) -> Listing:
        if not self.up:
            raise ConnectionError("etcd is down")
        listing = Listing(header=SimpleNamespace(raft_term=self.term, revision=self.revision))
        for address, server_id in self.keys.items():
            listing.append(SimpleNamespace(key=f"{PREFIX}tcp@{address}".encode(), value=encode_value(server_id, "ws")))
        return listing


def watcher_on(etcd: FakeEtcd) -> ServiceWatcher:
    return ServiceWatcher(etcd, SETTINGS, "ConnectRpc")  # type: ignore[arg-type]


async def test_a_node_that_leaves_while_etcd_is_healthy_is_dropped_at_once() -> None:
    etcd = FakeEtcd()
    etcd.put("10.0.0.1:1", "ws-a")
    etcd.put("10.0.0.2:1", "ws-b")
    watcher = watcher_on(etcd)
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1", "10.0.0.2:1"} and watcher.settled()
    etcd.delete("10.0.0.2:1")
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1"} and watcher.settled()


async def test_nodes_are_kept_while_etcd_is_away_and_for_a_lease_after_it_comes_back_empty() -> None:
    etcd = FakeEtcd()
    etcd.put("10.0.0.1:1", "ws-a")
    watcher = watcher_on(etcd)
    await watcher._relist()
    etcd.up = False
    with pytest.raises(ConnectionError):
        await watcher._relist()
    assert not watcher.settled() and set(watcher.nodes) == {"10.0.0.1:1"}

    # etcd is back without its data; the node has not registered again yet
    etcd.up, etcd.keys, etcd.term, etcd.revision = True, {}, 2, 1
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1"}, "a live node was forgotten before it could register again"
    assert not watcher.settled()
    etcd.put("10.0.0.3:1", "ws-c")  # new nodes are taken at once
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1", "10.0.0.3:1"}

    watcher._settle_until -= SETTINGS.lease_ttl  # a lease later: what etcd does not list is gone
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.3:1"} and watcher.settled()


@pytest.mark.parametrize("change", ["term", "revision"])
async def test_an_etcd_restart_seen_only_in_the_reply_header_starts_a_settling_time(change: str) -> None:
    """etcd restarted between two listings (no failed call seen): a new raft term, or a revision
    lower than before (its data is gone), is enough."""
    etcd = FakeEtcd()
    etcd.put("10.0.0.1:1", "ws-a")
    watcher = watcher_on(etcd)
    await watcher._relist()
    etcd.keys = {}
    if change == "term":
        etcd.term += 1
    else:
        etcd.revision = 2
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1"} and not watcher.settled()


class FakeSessions:
    def __init__(self, holding: set[str]) -> None:
        self.holding = holding

    async def nodes_with_members(self) -> set[str]:
        return set(self.holding)


class FakeWatcher:
    def __init__(self, nodes: dict[str, Node], settled: bool) -> None:
        self.nodes = nodes
        self.is_settled = settled
        self.ready = asyncio.Event()
        self.ready.set()
        self.listeners: list = []

    def settled(self) -> bool:
        return self.is_settled

    def on_change(self, listener) -> None:  # type: ignore[no-untyped-def]
        self.listeners.append(listener)

    def change(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        for listener in self.listeners:
            listener(nodes)


async def test_the_reaper_purges_a_missing_node_after_the_grace_and_never_while_unsettled() -> None:
    live = {"10.0.0.1:1": Node("10.0.0.1:1", "ws-a", "ws")}
    watcher = FakeWatcher({**live, "10.0.0.2:1": Node("10.0.0.2:1", "ws-b", "ws")}, settled=False)
    purged: list[str] = []

    async def purge(server_id: str) -> None:
        purged.append(server_id)

    sessions = FakeSessions({"ws-a", "ws-b"})
    reaper = asyncio.create_task(reap_dead_nodes(watcher, sessions, purge, grace=0.2, interval=0.05))  # type: ignore[arg-type]
    try:
        watcher.change(live)  # ws-b vanished, but etcd just came back: it may register again
        await asyncio.sleep(0.5)
        assert purged == []
        watcher.is_settled = True
        loop = asyncio.get_running_loop()
        start = loop.time()
        while not purged and loop.time() - start < 5:
            await asyncio.sleep(0.01)
        assert purged == ["ws-b"]
        assert 0.15 <= loop.time() - start < 1.0
    finally:
        reaper.cancel()
