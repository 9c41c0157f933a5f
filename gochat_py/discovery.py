"""Service discovery through etcd: leased registration and prefix watches.

A node registers ``<base>/<service>/tcp@<host>:<port>`` with a value such as
``serverId=ws-<uuid>&serverType=ws`` (the original's layout), attached to a lease it keeps alive.
When the process dies the lease expires and the key vanishes; on a clean stop the lease is revoked
so the key vanishes at once.  Watchers list the prefix, then follow a watch from the listed
revision, and re-list on a timer too, so a missed event or a silently dead watch heals itself.
While etcd is unreachable watchers keep the last known set: traffic keeps flowing.  When etcd
comes back after an outage or a restart (it may have lost its data, and with it every key), the
watchers keep the nodes they knew for one more lease time, so that live nodes can register again
before anyone forgets them; until then :meth:`ServiceWatcher.settled` is False.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import aetcd
import aetcd.client
import aetcd.watcher
import grpc

from gochat_py.config import ConfigError, EtcdSettings, split_host_port
from gochat_py.logs import kv
from gochat_py.tls import check_files, read_pem

log = logging.getLogger("gochat.discovery")
# etcd restarting is routine: reconnect within a second or two of its return, not gRPC's default
# backoff of up to two minutes.  (Not grpc.min_reconnect_backoff_ms: gRPC uses that as the time
# one connection attempt may take, 20 s by default; a short one fails connects on a busy host.)
CHANNEL_OPTIONS = {
    "grpc.initial_reconnect_backoff_ms": 250,
    "grpc.max_reconnect_backoff_ms": 2000,
}
WATCH_RETRY_MAX = 2.0  # seconds between two attempts to watch again
TOKEN_RENEWAL_MIN = 2.0  # seconds between two renewals of the auth token: every loop sees one refusal


@dataclass(frozen=True, slots=True)
class Node:
    """One registered instance: where to call it and which connect node (server id) it is."""

    address: str
    server_id: str
    server_type: str
    public_url: str = ""  # where clients reach it (a websocket node's ws:// or wss:// URL), if set
    revision: int = 0  # etcd's revision of the key: a node that registers again gets a new one


class EtcdClient(aetcd.Client):
    """aetcd's client, which authenticates (user and password set) once per connection: the
    token it gets then is refused for ever once etcd has restarted (its tokens live in memory),
    and the node would drop out of discovery when its lease ran out.  Every loop of this module
    hands its errors to :meth:`renew_token_if_refused`, which logs in again on the same channel
    (closing it would cancel the other loops' calls in flight), once for the refusals all the
    loops see."""

    _token_renewed_at = float("-inf")

    def __init__(
        self,
        *args: Any,
        clock: Callable[[], float] = time.monotonic,
        credentials: grpc.ChannelCredentials | None = None,
        **kwargs: Any,
    ) -> None:
        """``credentials``: TLS to etcd (aetcd itself only speaks plaintext); None = plaintext."""
        super().__init__(*args, **kwargs)
        self.clock = clock
        self._credentials = credentials

    @aetcd.client._handle_errors
    async def connect(self) -> None:
        """aetcd's connect (aetcd 1.0), with a TLS channel when credentials are set."""
        if self._connected.is_set():
            return
        if self._is_connecting:  # another task is connecting: wait for it
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            options = list(self._options.items())
            if self._credentials is None:
                self.channel = aetcd.rpc.insecure_channel(target, options=options)
            else:
                self.channel = grpc.aio.secure_channel(target, self._credentials, options=options)
            if self._username is not None and self._password is not None:
                self.auth_stub = aetcd.rpc.AuthStub(self.channel)
                request = aetcd.rpc.AuthenticateRequest(name=self._username, password=self._password)
                reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", reply.token),)
            self.kvstub = aetcd.rpc.KVStub(self.channel)
            self.clusterstub = aetcd.rpc.ClusterStub(self.channel)
            self.leasestub = aetcd.rpc.LeaseStub(self.channel)
            self.maintenancestub = aetcd.rpc.MaintenanceStub(self.channel)
            self._watcher = aetcd.watcher.Watcher(
                aetcd.rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata
            )
            self._connected.set()
        finally:
            self._is_connecting = False

    async def renew_token_if_refused(self, exc: BaseException) -> None:
        """Never raises: it runs in the callers' error handling."""
        if not isinstance(exc, aetcd.exceptions.UnauthenticatedError) or self.auth_stub is None:
            return
        now = self.clock()
        if now - self._token_renewed_at < TOKEN_RENEWAL_MIN:
            return
        self._token_renewed_at = now
        request = aetcd.rpc.AuthenticateRequest(name=self._username, password=self._password)
        try:
            reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
        except Exception as err:  # etcd not ready yet: the next refusal tries again
            log.warning("etcd authentication failed", extra=kv(error=repr(err)))
            return
        self.metadata = (("token", reply.token),)
        if self._watcher is not None:
            self._watcher._metadata = self.metadata  # its own copy, used for the next watch stream
        log.info("etcd refused the auth token (restarted?); logged in again", extra=kv(error=str(exc)))


def grpc_host_port(endpoints: list[str]) -> tuple[str, int]:
    """``host`` and ``port`` for aetcd, which dials ``f"{host}:{port}"``: one member as it is;
    several as one gRPC ``ipv4:``/``ipv6:`` target listing them all, so that the channel moves to
    the next member when the one it uses dies (gRPC's pick_first), and a cluster that lost a
    member but kept its quorum goes on serving every node."""
    if len(endpoints) == 1:
        return split_host_port(endpoints[0])
    host, port = split_host_port(endpoints[-1])
    scheme = "ipv6" if ":" in host else "ipv4"
    last = f"[{host}]" if ":" in host else host
    return f"{scheme}:{','.join(endpoints[:-1])},{last}", port


def etcd_credentials(settings: EtcdSettings) -> grpc.ChannelCredentials | None:
    """TLS credentials from ``[etcd] tls_*`` (None without tls_ca), the files read once."""
    if not settings.tls_ca:
        return None
    check_files("etcd", settings.tls_ca, settings.tls_cert, settings.tls_key)
    ca = read_pem("etcd", "tls_ca", settings.tls_ca)
    if not settings.tls_cert:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    cert, key = read_pem("etcd", "tls_cert", settings.tls_cert), read_pem("etcd", "tls_key", settings.tls_key)
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def make_etcd_client(settings: EtcdSettings) -> EtcdClient:
    host, port = grpc_host_port(settings.endpoints)
    return EtcdClient(
        host=host,
        port=port,
        username=settings.username or None,
        password=settings.password or None,
        timeout=settings.timeout,
        options=dict(CHANNEL_OPTIONS),
        credentials=etcd_credentials(settings),
    )


def service_prefix(settings: EtcdSettings, service: str) -> str:
    return f"{settings.base_path.rstrip('/')}/{service}/"


WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
# Where the route probe "connects" (UDP: no packet is sent): documentation addresses (RFC 5737,
# RFC 3849), so the kernel picks the source address of this host's default route.
ROUTE_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def is_routable(host: str) -> bool:
    """Whether another host could dial ``host``: not a wildcard, loopback or link-local address
    (a link-local one needs a zone and only reaches the same link), nor a name for loopback."""
    if host in WILDCARD_HOSTS or host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True  # a host name the operator chose
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def route_source(family: int, probe: str, opener: Callable[..., socket.socket] = socket.socket) -> str | None:
    """The source address the kernel would use to reach ``probe``; None without such a route.
    connect() on a UDP socket only looks the route up: nothing leaves the host."""
    try:
        with opener(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            return str(sock.getsockname()[0])
    except OSError:
        return None


def host_addresses() -> list[str]:
    """Candidate addresses of this host, best first: the default routes' sources, then what the
    host's own name resolves to (often 127.0.1.1 on Debian; the caller filters that out)."""
    found = [route_source(family, probe) for family, probe in ROUTE_PROBES]
    try:
        infos = socket.getaddrinfo(socket.gethostname(), None, type=socket.SOCK_STREAM)
    except OSError:
        infos = []
    found += [str(info[4][0]) for info in infos]
    return [address for address in found if address]


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def advertised_address(
    bind: str,
    advertise: str,
    bound_port: int,
    setting: str,
    candidates: Callable[[], list[str]] = host_addresses,
) -> str:
    """What other hosts dial, so it must never be a wildcard or, from a wildcard bind, loopback.

    An explicit ``advertise`` is the operator's choice and is used as given, unless its host is a
    wildcard (nobody can dial that).  A bind to a specific address (127.0.0.1 in the single-host
    dev setup) advertises that address with the real port.  A wildcard bind advertises the first
    routable address of this host from ``candidates``; with none, start-up is refused with the
    name of the setting to set.  ``setting`` is the config section, e.g. ``logic``.
    """
    names = f"GOCHAT_{setting.upper()}__RPC_ADVERTISE / [{setting}] rpc_advertise"
    if advertise:
        host, _ = split_host_port(advertise)
        if host in WILDCARD_HOSTS:
            raise ConfigError(
                f"{names} = {advertise!r} is a wildcard address other hosts cannot dial; set this host's address"
            )
        return advertise
    host, _ = split_host_port(bind)
    if host not in WILDCARD_HOSTS:
        return join_host_port(host, bound_port)
    routable = [address for address in candidates() if is_routable(address)]
    if not routable:
        raise ConfigError(
            f"rpc_bind {bind!r} is a wildcard and this host has no routable address to advertise; set {names}"
        )
    return join_host_port(routable[0], bound_port)


def encode_value(server_id: str, server_type: str, public_url: str = "") -> bytes:
    """The original's ``serverId=…&serverType=…``; ``publicUrl`` is added when the node has one
    (readers of the original's layout ignore keys they do not know)."""
    fields = {"serverId": server_id, "serverType": server_type}
    if public_url:
        fields["publicUrl"] = public_url
    return urlencode(sorted(fields.items())).encode()


def parse_node(key: bytes, value: bytes, prefix: str, revision: int = 0) -> Node | None:
    name = key.decode(errors="replace")
    if not name.startswith(prefix):
        return None
    address = name[len(prefix) :].partition("@")[2] or name[len(prefix) :]
    fields = dict(parse_qsl(value.decode(errors="replace")))
    if not address or "serverId" not in fields:
        return None
    return Node(
        address=address,
        server_id=fields["serverId"],
        server_type=fields.get("serverType", ""),
        public_url=fields.get("publicUrl", ""),
        revision=revision,
    )


class Registration:
    """Keeps one instance key alive in etcd for the life of the process."""

    def __init__(self, client: EtcdClient, settings: EtcdSettings, service: str, node: Node) -> None:
        self._client = client
        self._settings = settings
        self.node = node
        self.key = f"{service_prefix(settings, service)}tcp@{node.address}".encode()
        self._value = encode_value(node.server_id, node.server_type, node.public_url)
        self._lease_id: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._confirmed_at: float | None = None  # monotonic time etcd last confirmed the lease

    async def start(self) -> None:
        """Registers, then keeps the lease alive.  A node started while etcd is away does not
        exit: it serves, says so, and registers as soon as etcd answers (the others see it then),
        as it would after losing etcd later on."""
        registered = True
        try:
            await self._register()
        except Exception as exc:
            registered = False
            log.warning(
                "etcd unreachable; this node registers as soon as it answers",
                extra=kv(endpoint=self._settings.endpoint, key=self.key.decode(), error=repr(exc)),
            )
        self._task = asyncio.create_task(self._keep_alive(registered), name="etcd-keepalive")

    async def _register(self) -> None:
        lease = await self._client.lease(self._settings.lease_ttl)
        await self._client.put(self.key, self._value, lease=lease.id)
        self._lease_id = lease.id
        self._confirmed_at = time.monotonic()
        log.info(
            "registered in etcd",
            extra=kv(key=self.key.decode(), server_id=self.node.server_id, ttl=self._settings.lease_ttl),
        )

    async def _keep_alive(self, healthy: bool = True) -> None:
        interval = max(self._settings.lease_ttl / 3, 0.5)
        while True:
            # after a failure, try again soon: a lease lost while etcd was away is renewed at once
            await asyncio.sleep(interval if healthy else min(interval, 0.5))
            try:
                reply = None if self._lease_id is None else await self._client.refresh_lease(self._lease_id)
                if reply is None or reply.TTL <= 0:
                    # The lease expired while etcd was away (or etcd lost its data): start again.
                    await self._register()
                self._confirmed_at = time.monotonic()
                if not healthy:
                    log.info("etcd reachable again", extra=kv(key=self.key.decode()))
                healthy = True
            except Exception as exc:
                if healthy:
                    log.warning("etcd keep-alive failed", extra=kv(key=self.key.decode(), error=repr(exc)))
                healthy = False
                await self._client.renew_token_if_refused(exc)

    async def check(self) -> str:
        """Readiness: the key exists as far as we know, i.e. etcd confirmed the lease less than a
        lease time ago (so a missed keep-alive or two does not count, an outage does)."""
        if self._confirmed_at is None:
            raise RuntimeError(f"not registered in etcd yet ({self._settings.endpoint})")
        age = time.monotonic() - self._confirmed_at
        if age >= self._settings.lease_ttl:
            raise RuntimeError(f"etcd last confirmed the lease {age:.0f} s ago; the key may be gone")
        return f"registered as {self.node.address}"

    async def stop(self) -> None:
        self._confirmed_at = None  # leaving: not ready for traffic any more
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._lease_id is not None:
            try:
                await asyncio.wait_for(self._client.revoke_lease(self._lease_id), self._settings.timeout)
                log.info("deregistered from etcd", extra=kv(key=self.key.decode()))
            except Exception as exc:
                log.warning("etcd deregistration failed", extra=kv(key=self.key.decode(), error=repr(exc)))


class ServiceWatcher:
    """The live set of a service's nodes, kept current from etcd."""

    def __init__(
        self, client: EtcdClient, settings: EtcdSettings, service: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._client = client
        self.clock = clock
        self._settings = settings
        self.service = service
        self.prefix = service_prefix(settings, service)
        self.nodes: dict[str, Node] = {}
        self.ready = asyncio.Event()
        # monotonic time of the last successful listing: how fresh ``nodes`` is
        self.last_sync = 0.0
        # after an outage: until this monotonic time, nodes missing from a listing are kept
        self._settle_until = 0.0
        self._outage = False
        self._raft_term = 0
        self._revision = 0
        self._listing = asyncio.Lock()  # one listing at a time: an older answer never wins
        self._changed = asyncio.Event()
        self._listeners: list[Callable[[dict[str, Node]], None]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def on_change(self, listener: Callable[[dict[str, Node]], None]) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._watch_loop(), name=f"watch-{self.service}"),
            asyncio.create_task(self._relist_loop(), name=f"relist-{self.service}"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def wait_changed(self, timeout: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    async def check(self) -> str:
        """Readiness: etcd has answered a listing of this service (the nodes it has are known)."""
        if not self.ready.is_set():
            raise RuntimeError(f"etcd has not listed {self.service} yet ({self._settings.endpoint})")
        return f"{len(self.nodes)} {self.service} node(s) known"

    def settled(self) -> bool:
        """True when ``nodes`` is etcd's current view: etcd answers, and every live node has had a
        lease time to register again since etcd last came back.  Only then does a node missing
        from ``nodes`` mean that it is gone."""
        return not self._outage and self.ready.is_set() and self.clock() >= self._settle_until

    def _lost_etcd(self, exc: Exception) -> None:
        if not self._outage:
            log.warning("etcd unreachable; keeping the known nodes", extra=kv(service=self.service, error=repr(exc)))
        self._outage = True

    async def _relist(self) -> int:
        async with self._listing:
            return await self._relist_now()

    async def _relist_now(self) -> int:
        try:
            result = await self._client.get_prefix(self.prefix.encode())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._lost_etcd(exc)
            await self._client.renew_token_if_refused(exc)
            raise
        now = self.clock()
        term, revision = (result.header.raft_term, result.header.revision) if result.header else (0, 0)
        # a new term: etcd restarted or changed leader; an older revision: etcd lost its data
        restarted = (self._raft_term and term != self._raft_term) or revision < self._revision
        self._raft_term, self._revision = term or self._raft_term, revision
        if self._outage or restarted:
            self._outage = False
            self._settle_until = now + self._settings.lease_ttl
            log.info("etcd is back", extra=kv(service=self.service, settle=self._settings.lease_ttl))
        nodes = {}
        for item in result:
            node = parse_node(item.key, item.value, self.prefix, getattr(item, "mod_revision", 0))
            if node:
                nodes[node.address] = node
        if now < self._settle_until:
            # etcd may have lost the keys of live nodes; they register again within a lease time
            for address, node in self.nodes.items():
                nodes.setdefault(address, node)
        if nodes != self.nodes:
            added = sorted(set(nodes) - set(self.nodes))
            removed = sorted(set(self.nodes) - set(nodes))
            self.nodes = nodes
            log.info(
                "service nodes changed",
                extra=kv(service=self.service, nodes=len(nodes), added=",".join(added), removed=",".join(removed)),
            )
            for listener in self._listeners:
                listener(nodes)
            self._changed.set()
        self.last_sync = self.clock()
        self.ready.set()
        return result.header.revision if result.header else 0

    async def _watch_loop(self) -> None:
        backoff = 0.5
        while True:
            try:
                revision = await self._relist()
                watch = await self._client.watch_prefix(self.prefix.encode(), start_revision=revision + 1)
                backoff = 0.5
                async for _event in watch:
                    await self._relist()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not self._outage:  # while etcd is away, one line said so already
                    log.warning("etcd watch failed", extra=kv(service=self.service, error=repr(exc)))
                await self._client.renew_token_if_refused(exc)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, WATCH_RETRY_MAX)

    async def _relist_loop(self) -> None:
        """Safety net against a watch that hangs without an error; also ends a settling time."""
        period = max(self._settings.lease_ttl / 2, 1.0)
        while True:
            settling = self._settle_until - self.clock()
            await asyncio.sleep(min(period, settling + 0.05) if settling > 0 else period)
            with contextlib.suppress(Exception):
                await self._relist()
