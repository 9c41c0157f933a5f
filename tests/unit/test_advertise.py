"""What a node registers in etcd: never an address other hosts cannot dial."""

from __future__ import annotations

import socket

import pytest

from gochat_py.config import ConfigError
from gochat_py.discovery import advertised_address, host_addresses, is_routable, route_source


def no_addresses() -> list[str]:
    raise AssertionError("only a wildcard bind without rpc_advertise looks for this host's addresses")


def test_an_explicit_advertise_is_used_as_given() -> None:
    assert advertised_address("0.0.0.0:6900", "logic.internal:6900", 6900, "logic", no_addresses) == (
        "logic.internal:6900"
    )
    # the operator's choice, even loopback: a single-host setup may want it
    assert advertised_address("0.0.0.0:0", "127.0.0.1:6900", 41234, "logic", no_addresses) == "127.0.0.1:6900"


@pytest.mark.parametrize("advertise", ["0.0.0.0:6900", "[::]:6900", ":6900"])
def test_a_wildcard_advertise_is_refused_naming_the_setting(advertise: str) -> None:
    with pytest.raises(ConfigError, match=r"GOCHAT_LOGIC__RPC_ADVERTISE / \[logic\] rpc_advertise.*wildcard"):
        advertised_address("0.0.0.0:0", advertise, 6900, "logic", no_addresses)


def test_a_specific_bind_advertises_itself_with_the_real_port() -> None:
    """The single-host dev setup binds 127.0.0.1 and keeps working as before."""
    assert advertised_address("127.0.0.1:0", "", 41234, "logic", no_addresses) == "127.0.0.1:41234"
    assert advertised_address("10.1.2.3:6900", "", 6900, "logic", no_addresses) == "10.1.2.3:6900"
    assert advertised_address("[fd00::5]:0", "", 41234, "logic", no_addresses) == "[fd00::5]:41234"


@pytest.mark.parametrize("bind", ["0.0.0.0:0", "[::]:0", ":0"])
def test_a_wildcard_bind_advertises_the_first_routable_address_of_the_host(bind: str) -> None:
    candidates = ["127.0.0.1", "127.0.1.1", "::1", "fe80::1", "0.0.0.0", "localhost", "10.0.0.7", "10.0.0.8"]
    assert advertised_address(bind, "", 41234, "logic", lambda: candidates) == "10.0.0.7:41234"
    assert advertised_address(bind, "", 41234, "logic", lambda: ["::1", "fd00::2"]) == "[fd00::2]:41234"


@pytest.mark.parametrize("candidates", [[], ["127.0.0.1", "127.0.1.1", "::1", "localhost", "fe80::1"]])
def test_a_wildcard_bind_on_a_loopback_only_host_refuses_to_start_naming_the_setting(candidates: list[str]) -> None:
    with pytest.raises(ConfigError) as refused:
        advertised_address("0.0.0.0:0", "", 41234, "connect_tcp", lambda: candidates)
    message = str(refused.value)
    assert "GOCHAT_CONNECT_TCP__RPC_ADVERTISE / [connect_tcp] rpc_advertise" in message
    assert "'0.0.0.0:0'" in message


@pytest.mark.parametrize(
    ("host", "routable"),
    [
        ("10.0.0.7", True),
        ("192.0.2.2", True),
        ("fd00::2", True),
        ("chat-1.example.com", True),
        ("127.0.0.1", False),
        ("127.0.1.1", False),
        ("::1", False),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("localhost", False),
        ("LOCALHOST", False),
        ("fe80::1", False),
        ("169.254.1.1", False),
    ],
)
def test_is_routable(host: str, routable: bool) -> None:
    assert is_routable(host) is routable


class UnroutedSocket(socket.socket):
    """A host without a default route: connect() fails as the kernel's ENETUNREACH does."""

    def connect(self, address: object) -> None:
        raise OSError(101, "Network is unreachable")


def test_route_source_without_a_route_is_none() -> None:
    assert route_source(socket.AF_INET, "192.0.2.1", UnroutedSocket) is None


def test_route_source_is_the_local_end_of_the_route() -> None:
    """Through loopback, so this holds on any machine; connect() on UDP sends nothing."""
    assert route_source(socket.AF_INET, "127.0.0.1") == "127.0.0.1"


def test_host_addresses_are_this_hosts_own() -> None:
    """Whatever this machine has (maybe nothing routable), each candidate can be bound here."""
    for address in host_addresses():
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
