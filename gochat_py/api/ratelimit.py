"""Rate limits for the HTTP API, sans-I/O: token buckets (gochat_py.token_buckets) per api process.

:class:`ApiLimits` applies the ``[api]`` settings: per client address on login, register and the
``/push/*`` routes, per user name on login (password guessing), per session token on ``/push/*``.
An IPv6 client counts as its /64 (one host usually has the whole block).  Loopback clients are
exempt unless ``rate_limit_loopback`` is set, so local tools and benchmarks run unthrottled.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable

from gochat_py.config import ApiSettings
from gochat_py.token_buckets import MAX_KEYS, TokenBuckets

MAX_KEY_LENGTH = 64  # longer user keys (names, tokens) are kept as a digest
LOGIN, REGISTER, PUSH = "login", "register", "push"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(specs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(spec.strip(), strict=False) for spec in specs if spec.strip())


def _parse(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def client_address(peer: str | None, forwarded_for: Iterable[str], trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer's, or when the peer is a trusted proxy, the nearest address
    in ``X-Forwarded-For`` that is not one (those headers are ignored from anyone else)."""
    address = _parse(peer or "")
    if address is None:
        return peer or ""
    if not trusted or not any(address in net for net in trusted):
        return str(address)
    hops = [hop.strip() for header in forwarded_for for hop in header.split(",") if hop.strip()]
    for hop in reversed(hops):
        parsed = _parse(hop)
        if parsed is None:
            break  # garbage in the chain: trust nothing before it
        address = parsed
        if not any(address in net for net in trusted):
            break
    return str(address)


def address_key(address: str) -> str:
    """The bucket of a client address: IPv4 as is, IPv6 by its /64."""
    parsed = _parse(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((int(parsed) >> 64 << 64, 64)))
    return address


def user_key(user: str) -> str:
    if len(user) <= MAX_KEY_LENGTH:
        return user
    return "sha256:" + hashlib.sha256(user.encode("utf-8", "surrogatepass")).hexdigest()


def is_loopback(address: str) -> bool:
    """127.0.0.0/8 and ::1, and a peer without an IP address (a Unix socket)."""
    parsed = _parse(address)
    return parsed is None or parsed.is_loopback


class ApiLimits:
    """The api's buckets, built from ``[api]``: by client address and by user, per route group."""

    def __init__(self, settings: ApiSettings, max_keys: int = MAX_KEYS) -> None:
        s = settings
        self.limit_loopback = s.rate_limit_loopback
        self.trusted_proxies = _networks(s.trusted_proxies)
        self.by_address = {
            LOGIN: TokenBuckets(s.login_address_rate, s.login_address_burst, max_keys),
            REGISTER: TokenBuckets(s.register_address_rate, s.register_address_burst, max_keys),
            PUSH: TokenBuckets(s.push_address_rate, s.push_address_burst, max_keys),
        }
        self.by_user = {
            LOGIN: TokenBuckets(s.login_user_rate, s.login_user_burst, max_keys),
            PUSH: TokenBuckets(s.push_user_rate, s.push_user_burst, max_keys),
        }

    def client_address(self, peer: str | None, forwarded_for: Iterable[str] = ()) -> str:
        return client_address(peer, forwarded_for, self.trusted_proxies)

    def exempt(self, address: str) -> bool:
        return not self.limit_loopback and is_loopback(address)

    def address_wait(self, group: str, address: str, now: float) -> float:
        """Seconds to wait (0.0: go ahead) for a request of ``group`` from ``address``."""
        if self.exempt(address):
            return 0.0
        return self.by_address[group].take(address_key(address), now)

    def user_wait(self, group: str, user: str, now: float) -> float:
        """Seconds to wait for a request of ``group`` by ``user`` (a name or a session token)."""
        buckets = self.by_user.get(group)
        return buckets.take(user_key(user), now) if buckets is not None else 0.0


def too_many_requests(wait: float) -> str:
    """The message a refused client gets; whole seconds, at least 1."""
    seconds = max(1, int(wait) + (wait > int(wait)))
    return f"too many requests, try again in {seconds} s"
