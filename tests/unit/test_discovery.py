"""ServiceWatcher after etcd outages and restarts, and the dead-node reaper, with a fake etcd."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

import aetcd
import aetcd.watcher
import pytest

from gochat_py.config import EtcdSettings
from gochat_py.discovery import TOKEN_RENEWAL_MIN, EtcdClient, Node, ServiceWatcher, encode_value
from gochat_py.logic import reaper
from gochat_py.logic.reaper import reap_dead_nodes
from tests.unit.fakes import Clock

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

    async def renew_token_if_refused(self, exc: BaseException) -> None:
        """No authentication here (EtcdClient's renewal has tests of its own)."""

    async def get_prefix(self, prefix: bytes) -> Listing:
        if not self.up:
            raise ConnectionError("etcd is down")
        listing = Listing(header=SimpleNamespace(raft_term=self.term, revision=self.revision))
        for address, server_id in self.keys.items():
            listing.append(SimpleNamespace(key=f"{PREFIX}tcp@{address}".encode(), value=encode_value(server_id, "ws")))
        return listing


def watcher_on(etcd: FakeEtcd, clock: Clock | None = None) -> ServiceWatcher:
    return ServiceWatcher(etcd, SETTINGS, "ConnectRpc", clock=clock or Clock(1000.0))  # type: ignore[arg-type]


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Waits for ``condition`` (an event the code under test causes), with a generous deadline."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.001)

    await asyncio.wait_for(poll(), timeout)


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
    etcd, clock = FakeEtcd(), Clock(1000.0)
    etcd.put("10.0.0.1:1", "ws-a")
    watcher = watcher_on(etcd, clock)
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

    clock.advance(SETTINGS.lease_ttl - 0.1)  # not yet a lease later: still kept
    await watcher._relist()
    assert set(watcher.nodes) == {"10.0.0.1:1", "10.0.0.3:1"} and not watcher.settled()
    clock.advance(0.1)  # a lease later: what etcd does not list is gone
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
        self.calls = 0

    async def nodes_with_members(self) -> set[str]:
        self.calls += 1
        return set(self.holding)


class FakeWatcher:
    def __init__(self, nodes: dict[str, Node], settled: bool) -> None:
        self.nodes = nodes
        self.is_settled = settled
        self.checks = 0
        self.ready = asyncio.Event()
        self.ready.set()
        self.listeners: list = []

    def settled(self) -> bool:
        self.checks += 1
        return self.is_settled

    def on_change(self, listener) -> None:  # type: ignore[no-untyped-def]
        self.listeners.append(listener)

    def change(self, nodes: dict[str, Node]) -> None:
        self.nodes = nodes
        for listener in self.listeners:
            listener(nodes)


async def test_the_reaper_purges_a_missing_node_after_the_grace_and_never_while_unsettled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(1000.0)
    monkeypatch.setattr(reaper, "time", SimpleNamespace(monotonic=clock))  # the reaper's clock only
    live = {"10.0.0.1:1": Node("10.0.0.1:1", "ws-a", "ws")}
    watcher = FakeWatcher({**live, "10.0.0.2:1": Node("10.0.0.2:1", "ws-b", "ws")}, settled=False)
    purged: list[str] = []

    async def purge(server_id: str) -> None:
        purged.append(server_id)

    sessions = FakeSessions({"ws-a", "ws-b"})
    sweeping = asyncio.create_task(reap_dead_nodes(watcher, sessions, purge, grace=5.0, interval=0.005))  # type: ignore[arg-type]
    try:
        watcher.change(live)  # ws-b vanished, but etcd just came back: it may register again
        for _ in range(3):  # sweeps that find the view unsettled, however long it stays so
            clock.advance(60)
            checks = watcher.checks
            await until(lambda: watcher.checks > checks)  # noqa: B023 (used at once)
        assert purged == [] and sessions.calls == 0

        watcher.is_settled = True
        await until(lambda: sessions.calls >= 1)  # ws-b is missing from now on
        clock.advance(4.9)
        calls = sessions.calls
        await until(lambda: sessions.calls >= calls + 3)  # sweeps within the grace
        assert purged == []
        clock.advance(0.2)
        await until(lambda: purged)
        assert purged == ["ws-b"]
    finally:
        sweeping.cancel()


class FakeAuth:
    """etcd's Auth service: each login hands out a new token, or fails while ``down``."""

    def __init__(self) -> None:
        self.logins = 0
        self.down = False

    async def Authenticate(self, request: object, timeout: float) -> SimpleNamespace:
        if self.down:
            raise ConnectionError("etcd is starting")
        self.logins += 1
        return SimpleNamespace(token=f"token-{self.logins}")


def authenticated_client(clock: Clock | None = None) -> tuple[EtcdClient, FakeAuth]:
    client = EtcdClient(host="127.0.0.1", port=1, username="gochat", password="secret", clock=clock or Clock(1000.0))
    auth = FakeAuth()
    client.auth_stub = auth
    client.metadata = (("token", "token-0"),)
    client._watcher = aetcd.watcher.Watcher(None, metadata=client.metadata)  # the real class
    return client, auth


async def test_a_refused_token_is_renewed_once_for_every_loop_that_saw_the_refusal() -> None:
    clock = Clock(1000.0)
    client, auth = authenticated_client(clock)
    refused = aetcd.exceptions.UnauthenticatedError("etcdserver: invalid auth token")
    for _ in range(3):  # the keep-alive and two watchers, all refused at once
        await client.renew_token_if_refused(refused)
        clock.advance(TOKEN_RENEWAL_MIN / 4)
    assert auth.logins == 1
    assert client.metadata == (("token", "token-1"),)
    assert client._watcher._metadata == client.metadata  # the next watch stream uses it too
    clock.advance(TOKEN_RENEWAL_MIN)  # a refusal later on (etcd restarted again): a new login
    await client.renew_token_if_refused(refused)
    assert auth.logins == 2 and client.metadata == (("token", "token-2"),)


async def test_other_errors_and_failed_logins_leave_the_token_and_never_raise() -> None:
    client, auth = authenticated_client()
    await client.renew_token_if_refused(ConnectionError("etcd is down"))
    assert auth.logins == 0 and client.metadata == (("token", "token-0"),)
    auth.down = True
    await client.renew_token_if_refused(aetcd.exceptions.UnauthenticatedError("invalid auth token"))
    assert client.metadata == (("token", "token-0"),)


async def test_a_client_without_credentials_never_logs_in() -> None:
    client = EtcdClient(host="127.0.0.1", port=1)
    await client.renew_token_if_refused(aetcd.exceptions.UnauthenticatedError("user name is empty"))
    assert client.metadata is None
