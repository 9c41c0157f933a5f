"""Typed configuration: ``config/<env>/*.toml`` merged, then ``GOCHAT_*`` environment overrides.

Every module loads the same :class:`Settings` object but only reads its own section, so one
set of files describes a whole deployment.  Environment variables override any key:
``GOCHAT_<SECTION>__<KEY>`` (double underscore between levels, case-insensitive), for example
``GOCHAT_API__BIND=0.0.0.0:7070``, ``GOCHAT_REDIS__ADDRESS=10.0.0.5:6379``,
``GOCHAT_CONNECT_WEBSOCKET__SERVER_ID=ws-a`` or ``GOCHAT_STATE_DIR=/var/lib/gochat-py``.
Lists accept a comma-separated string: ``GOCHAT_CONNECT_TCP__BIND=127.0.0.1:7001,127.0.0.1:7002``.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

ENV_PREFIX = "GOCHAT_"
# Environment variables with the prefix that choose *which* files to read, not a key inside them.
_META_VARS = {"GOCHAT_ENV", "GOCHAT_CONFIG_DIR"}
CONFIG_FILES = ("common", "logic", "connect", "task", "api", "site")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _split_commas(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


AddressList = Annotated[list[str], BeforeValidator(_split_commas)]


class ConfigError(Exception):
    """The configuration cannot be loaded; the message says which file or key."""


def etcd_endpoints(endpoint: str) -> list[str]:
    """The members in ``[etcd] endpoint``.  Several must be IP addresses of one family: the etcd
    client gives them to gRPC as one ``ipv4:``/``ipv6:`` target (gRPC resolves no list of names)."""
    members = [part.strip() for part in endpoint.split(",") if part.strip()]
    if not members:
        raise ConfigError("[etcd] endpoint is empty")
    families = set()
    for member in members:
        host, _ = split_host_port(member)
        if len(members) > 1:
            try:
                families.add(ipaddress.ip_address(host).version)
            except ValueError:
                raise ConfigError(
                    f"[etcd] endpoint {endpoint!r}: with several members each must be an IP address, not {host!r}"
                ) from None
    if len(families) > 1:
        raise ConfigError(f"[etcd] endpoint {endpoint!r}: mixes IPv4 and IPv6 members")
    return members


def split_host_port(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to a tuple; a bad address is a ConfigError."""
    host, sep, port = address.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ConfigError(f"address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _tls_files_complete(section: str, ca: str, cert: str, key: str, ca_required: bool) -> None:
    """Half a TLS configuration is refused at load time, naming what is missing: a certificate
    without its key cannot be presented, and without the CA nothing verifies the peer.  Run as a
    validator of the section's last TLS field (the earlier ones are in its ``info.data``), so the
    error shows that field's value only, never the section's password."""
    names = f"[{section}] tls_ca / tls_cert / tls_key (GOCHAT_{section.upper()}__TLS_CA, __TLS_CERT, __TLS_KEY)"
    if bool(cert) != bool(key):
        have, missing = ("tls_cert", "tls_key") if cert else ("tls_key", "tls_cert")
        raise ValueError(f"{names}: {have} is set but {missing} is not; set both, or neither")
    if ca_required and (ca or cert) and not (ca and cert):
        missing = "tls_cert and tls_key" if ca else "tls_ca"
        raise ValueError(f"{names}: mutual TLS needs all three; {missing} not set")
    if cert and not ca:
        raise ValueError(f"[{section}] tls_cert and tls_key need tls_ca: the CA that signed the server's certificate")


class ClientTls(Section):
    """PEM files of a TLS client.  tls_ca alone: TLS, the server's certificate checked against it;
    with tls_cert and tls_key too: the client certificate the server asks for."""

    tls_section: ClassVar[str] = ""  # the section's name, for the errors
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = Field("", validate_default=True)

    @field_validator("tls_key")
    @classmethod
    def _tls_complete(cls, key: str, info: ValidationInfo) -> str:
        _tls_files_complete(cls.tls_section, info.data.get("tls_ca", ""), info.data.get("tls_cert", ""), key, False)
        return key


class EtcdSettings(ClientTls):
    # One member's host:port, or every member of a cluster, comma-separated, as IP addresses of one
    # family (10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379): the client moves to another member when
    # the one it uses goes away.
    endpoint: str = "127.0.0.1:2379"
    base_path: str = "/gochat_srv"
    logic_service: str = "LogicRpc"
    connect_service: str = "ConnectRpc"
    username: str = ""
    password: str = ""
    timeout: float = Field(5.0, gt=0, description="seconds for one etcd call")
    lease_ttl: int = Field(8, ge=2, description="seconds before a dead node's keys vanish")
    tls_section: ClassVar[str] = "etcd"  # tls_*: etcd with --client-cert-auth asks for the certificate

    @model_validator(mode="after")
    def _endpoints_are_dialable(self) -> EtcdSettings:
        try:
            etcd_endpoints(self.endpoint)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def endpoints(self) -> list[str]:
        return etcd_endpoints(self.endpoint)


class RedisSettings(ClientTls):
    address: str = Field("127.0.0.1:6379", description="the Redis server; unused when sentinels are set")
    password: str = ""
    db: int = 0
    timeout: float = Field(3.0, gt=0, description="socket timeout for one Redis command")
    max_connections: int = Field(64, ge=1, description="Redis connections per process; more commands wait")
    tls_section: ClassVar[str] = "redis"  # tls_*: Redis's tls-port; tls-auth-clients asks for the certificate

    # High availability: ask these Sentinels (host:port) for the primary of master_name, and follow
    # a failover to the promoted replica without a restart.
    sentinels: AddressList = Field([], description="Sentinel addresses; empty = connect to address")
    master_name: str = Field("", description="the name the Sentinels monitor the primary under")
    sentinel_password: str = Field("", description="password of the Sentinels themselves (requirepass)")
    wait_replicas: int = Field(
        0, ge=0, description="replicas that must hold a push before it is accepted (WAIT; 0 = do not wait)"
    )
    wait_timeout: int = Field(500, ge=1, description="milliseconds a push waits for those replicas at most")

    @model_validator(mode="after")
    def _sentinels_name_a_master(self) -> RedisSettings:
        if bool(self.sentinels) != bool(self.master_name):
            raise ValueError("redis.sentinels and redis.master_name go together: set both or neither")
        for address in self.sentinels:
            try:
                split_host_port(address)
            except ConfigError as exc:
                raise ValueError(f"redis.sentinels: {exc}") from None
        return self


class QueueSettings(Section):
    stream: str = "gochat_stream"
    group: str = "gochat_task"
    max_backlog: int = Field(
        64, ge=0, description="entries waiting for task above which logic holds pushes back (0 = never)"
    )
    max_delay: float = Field(
        0.03, ge=0, description="seconds the oldest entry may wait for task before logic holds pushes back (0 = never)"
    )
    max_wait: float = Field(1.0, ge=0, description="seconds a push is held back at most")


class HistorySettings(Section):
    """Kept messages: a hot store in Redis per conversation, and every message in the database."""

    enabled: bool = Field(True, description="keep messages; off = online-only delivery, as the original")
    size: int = Field(
        1000, ge=1, description="messages kept in Redis per room, per user inbox and per private conversation"
    )
    ttl: int = Field(7 * 86400, ge=60, description="seconds a conversation's Redis store lives after its last message")
    retention_days: float = Field(0, ge=0, description="days the database keeps a message (0 = for ever)")
    group: str = "gochat_history"
    batch_size: int = Field(512, ge=1, description="messages written to the database per transaction at most")
    linger: float = Field(
        0.1, ge=0, le=5, description="seconds a partial batch waits for more before it is written (0 = never)"
    )


class MetricsSettings(Section):
    """Where each module serves Prometheus metrics (/metrics) and its probes (/healthz, /readyz);
    empty = not served; port 0 = any."""

    logic: str = "127.0.0.1:9169"
    api: str = "127.0.0.1:9170"
    connect_websocket: str = "127.0.0.1:9171"
    connect_tcp: str = "127.0.0.1:9172"
    task: str = "127.0.0.1:9173"
    site: str = ""
    probe_timeout: float = Field(
        2.0, gt=0, description="seconds the loop (/healthz) and each readiness check (/readyz) may take"
    )

    def addresses(self) -> dict[str, str]:
        """Module -> address, for every module (empty where not served)."""
        return {name: value for name, value in self.model_dump().items() if isinstance(value, str)}


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"


class RpcSettings(Section):
    timeout: float = Field(3.0, gt=0, description="deadline of every gRPC call, seconds")
    auth_timeout: float = Field(15.0, gt=0, description="deadline of Login and Register: password hashing queues")
    attempts: int = Field(3, ge=1, description="nodes tried before a call fails")
    # Mutual TLS between the layers (PEM files), all three or none: servers ask for a client
    # certificate signed by tls_ca, clients check the server's against it.  See README, "TLS
    # between the layers", for the names a certificate must carry.
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    tls_server_name: str = Field(
        "",
        validate_default=True,
        description="name every server certificate carries, checked instead of the address a node registered",
    )

    @field_validator("tls_server_name")
    @classmethod
    def _tls_complete(cls, name: str, info: ValidationInfo) -> str:
        data = info.data
        _tls_files_complete("rpc", data.get("tls_ca", ""), data.get("tls_cert", ""), data.get("tls_key", ""), True)
        if name and not info.data.get("tls_ca"):
            raise ValueError("[rpc] tls_server_name is set but TLS is not (tls_ca, tls_cert, tls_key)")
        return name

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca)


class LogicSettings(Section):
    rpc_bind: str = "127.0.0.1:6900"
    rpc_advertise: str = ""
    database_url: str = ""
    session_ttl: int = Field(86400, gt=0)
    node_grace: float = Field(1.0, ge=0, description="seconds a dead connect node stays before purge")
    stop_grace: float = Field(
        5.0, ge=0, description="seconds a stopping logic gives the calls it serves to finish before cutting them off"
    )
    member_list_delay: float = Field(0.2, ge=0, description="seconds member-list requests for a room are gathered")
    member_list_auto_limit: int = Field(1000, ge=0, description="largest room that gets member lists on join/leave")
    max_user_name_length: int = Field(64, ge=1, description="characters in a user name, checked at registration")
    mid_window: int = Field(
        600, ge=1, description="seconds a client message id (v2 mid) is remembered: a resend within it is stored once"
    )
    # argon2id cost; the defaults are OWASP's minimum (19 MiB, 2 passes), about 30 ms per hash.
    password_time_cost: int = Field(2, ge=1)
    password_memory_kib: int = Field(19456, ge=1024)


class ConnectNodeSettings(Section):
    server_id: str = ""
    rpc_bind: str = "127.0.0.1:6912"
    rpc_advertise: str = ""
    public_url: str = Field(
        "",
        description="where clients reach this node (a websocket node: its ws:// or wss:// URL); registered in "
        "etcd, and the chat page is handed the live websocket nodes' URLs",
    )
    # PEM files; both set = clients connect with TLS (wss://, or TLS around the TCP frames)
    tls_cert: str = ""
    tls_key: str = ""


class WebsocketSettings(ConnectNodeSettings):
    bind: str = "127.0.0.1:7000"
    path: str = "/ws"
    # Origins a browser page may connect from, e.g. ["https://chat.example.com"]; empty = any.
    # Clients that send no Origin header (not browsers) are always let in.
    allowed_origins: AddressList = []


class TcpSettings(ConnectNodeSettings):
    bind: AddressList = ["127.0.0.1:7001", "127.0.0.1:7002"]
    rpc_bind: str = "127.0.0.1:6914"
    max_frame_size: int = Field(32767, ge=4, le=32767, description="largest frame a client may send, bytes")


class ConnectSettings(Section):
    buckets: int = Field(4, ge=1)
    send_buffer: int = Field(
        524288, ge=4096, description="bytes waiting to be sent to one client before it counts as too slow"
    )
    auth_timeout: float = Field(10.0, gt=0)
    ping_interval: float = Field(54.0, gt=0)
    pong_timeout: float = Field(6.0, gt=0, description="after a ping; 54 + 6 = the original's 60 s")
    write_timeout: float = Field(10.0, gt=0, description="TCP: unacknowledged data for this long drops the peer")
    max_message_size: int = Field(512, ge=64, description="bytes in a v1 client message (the join) at most")
    v2_frame_size: int = Field(
        32767, ge=512, le=1 << 20, description="bytes in one client frame of a protocol-v2 websocket at most"
    )
    max_rooms: int = Field(100, ge=1, description="rooms one protocol-v2 socket may be subscribed to at once")
    command_rate: float = Field(
        50.0, gt=0, description="v2 commands per second per socket, sustained; more is flooding"
    )
    command_burst: int = Field(200, ge=1, description="v2 commands per socket at once; more is flooding")
    typing_rate: float = Field(1.0, gt=0, description="v2 typing notices per second per socket (more get rate_limited)")
    session_check: float = Field(
        60.0, gt=0, description="seconds between checks that the sessions of v2 sockets are still live"
    )
    dedup_window: int = Field(65536, ge=0, description="recent message ids remembered per node")
    logic_concurrency: int = Field(64, ge=1, description="joins and leaves in flight to logic per node")
    pace_lag: float = Field(
        0.02, ge=0, description="median client lag (s) over which a websocket node holds deliveries (0 = never)"
    )
    pace_max_hold: float = Field(0.5, gt=0, description="seconds one delivery is held at most")
    pace_sample: int = Field(16, ge=1, le=1024, description="sockets a node pings to measure its clients' lag")


class TaskSettings(Section):
    consumer: str = ""
    batch_size: int = Field(256, ge=1)
    block_ms: int = Field(1000, ge=1)
    claim_idle: float = Field(5.0, gt=0, description="seconds before another task takes over a message")
    leader_ttl: float = Field(
        3.0, ge=0.3, description="seconds a task process that stopped answering keeps the right to deliver"
    )
    trim_interval: float = Field(10.0, gt=0)
    linger: float = Field(
        0.005, ge=0, le=1, description="under load, seconds a partial batch waits for more entries (0 = never)"
    )


class ApiSettings(Section):
    bind: str = "127.0.0.1:7070"
    # PEM files; both set = the api is served over HTTPS
    tls_cert: str = ""
    tls_key: str = ""
    max_message_length: int = Field(4096, ge=1, description="characters in the msg of /push/push and /push/pushRoom")
    # Rate limits, per api process: token buckets of *_burst requests refilled at *_rate per second
    # (a rate of 0 turns that limit off).  Per client address, and per user name (login) or
    # session token (/push/*: push, pushRoom, count, getRoomInfo).
    rate_limit_loopback: bool = Field(False, description="limit clients on 127.0.0.0/8 and ::1 too")
    trusted_proxies: AddressList = Field([], description="proxies (IPs or CIDRs) whose X-Forwarded-For is believed")
    login_address_rate: float = Field(1.0, ge=0)
    login_address_burst: int = Field(30, ge=1)
    login_user_rate: float = Field(0.1, ge=0)
    login_user_burst: int = Field(10, ge=1)
    register_address_rate: float = Field(0.05, ge=0)
    register_address_burst: int = Field(20, ge=1)
    push_address_rate: float = Field(100.0, ge=0)
    push_address_burst: int = Field(200, ge=1)
    push_user_rate: float = Field(10.0, ge=0)
    push_user_burst: int = Field(50, ge=1)


class SiteSettings(Section):
    bind: str = "127.0.0.1:8080"
    root: str = ""
    api_url: str = ""
    ws_url: str = ""


class LauncherSettings(Section):
    """``gochat-py up``: a process that dies is restarted; one that keeps dying stops everything."""

    restart_limit: int = Field(
        5, ge=1, description="deaths of one process within restart_window that stop everything (1 = the first)"
    )
    restart_window: float = Field(
        60.0, gt=0, description="seconds; a process that ran this long counts as healthy again"
    )
    restart_delay: float = Field(0.5, ge=0, description="seconds before the first restart; doubles per death")
    restart_max_delay: float = Field(10.0, ge=0, description="seconds a restart waits at most")


class Settings(Section):
    env: str = "dev"
    config_dir: str = ""
    # common.toml: shared by every module
    state_dir: str = "state"
    etcd: EtcdSettings = EtcdSettings()
    redis: RedisSettings = RedisSettings()
    queue: QueueSettings = QueueSettings()
    history: HistorySettings = HistorySettings()
    log: LogSettings = LogSettings()
    rpc: RpcSettings = RpcSettings()
    metrics: MetricsSettings = MetricsSettings()
    launcher: LauncherSettings = LauncherSettings()
    # one section per module, each in its own file
    logic: LogicSettings = LogicSettings()
    connect: ConnectSettings = ConnectSettings()
    connect_websocket: WebsocketSettings = WebsocketSettings()
    connect_tcp: TcpSettings = TcpSettings()
    task: TaskSettings = TaskSettings()
    api: ApiSettings = ApiSettings()
    site: SiteSettings = SiteSettings()

    @model_validator(mode="after")
    def _replica_wait_ends_before_calls_time_out(self) -> Settings:
        # a push still waiting for replicas when the api gave up would be answered by nobody
        if self.redis.wait_replicas and self.redis.wait_timeout >= self.rpc.timeout * 1000:
            raise ValueError(
                f"redis.wait_timeout ({self.redis.wait_timeout} ms) must be shorter than rpc.timeout"
                f" ({self.rpc.timeout} s)"
            )
        return self

    @model_validator(mode="after")
    def _holds_end_before_calls_time_out(self) -> Settings:
        # a held Deliver that outlived task's deadline would be retried: every message sent twice
        if self.connect.pace_lag and self.connect.pace_max_hold >= self.rpc.timeout:
            raise ValueError(
                f"connect.pace_max_hold ({self.connect.pace_max_hold} s) must be shorter than rpc.timeout"
                f" ({self.rpc.timeout} s)"
            )
        return self

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser().resolve()

    @property
    def database_url(self) -> str:
        if self.logic.database_url:
            return self.logic.database_url
        return f"sqlite+aiosqlite:///{self.state_path / 'gochat.sqlite3'}"

    @property
    def site_root(self) -> Path:
        return Path(self.site.root) if self.site.root else PROJECT_ROOT / "site"


def _merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.upper().startswith(ENV_PREFIX) or name.upper() in _META_VARS:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"bad environment variable name {name!r}")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"environment variable {name!r} conflicts with another one")
        node[path[-1]] = value
    return tree


def default_config_dir(env: str) -> Path:
    local = Path.cwd() / "config" / env
    return local if local.is_dir() else PROJECT_ROOT / "config" / env


def load_settings(
    config_dir: str | Path | None = None,
    env: str | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    environ = dict(os.environ if environ is None else environ)
    env = env or environ.get("GOCHAT_ENV") or "dev"
    directory = Path(config_dir or environ.get("GOCHAT_CONFIG_DIR") or default_config_dir(env))
    if not directory.is_dir():
        raise ConfigError(f"config directory {directory} does not exist")
    raw: dict[str, Any] = {}
    for name in CONFIG_FILES:
        path = directory / f"{name}.toml"
        if not path.exists():
            continue
        try:
            _merge(raw, tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    _merge(raw, _env_overrides(environ))
    raw["env"] = env
    raw["config_dir"] = str(directory.resolve())
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration ({directory}, GOCHAT_* variables):\n{exc}") from exc
