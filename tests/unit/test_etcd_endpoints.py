"""[etcd] endpoint: one member, or every member of a cluster as one gRPC target."""

from __future__ import annotations

import pytest

from gochat_py.config import ConfigError, EtcdSettings, etcd_endpoints, load_settings
from gochat_py.discovery import grpc_host_port, make_etcd_client


def test_one_member_is_dialled_as_it_is() -> None:
    assert etcd_endpoints("127.0.0.1:2379") == ["127.0.0.1:2379"]
    assert grpc_host_port(["etcd.example.com:2379"]) == ("etcd.example.com", 2379)


def test_several_members_become_one_target_listing_them_all() -> None:
    members = etcd_endpoints(" 10.0.0.1:2379, 10.0.0.2:2379,10.0.0.3:2381 ")
    assert members == ["10.0.0.1:2379", "10.0.0.2:2379", "10.0.0.3:2381"]
    host, port = grpc_host_port(members)
    # aetcd dials f"{host}:{port}": gRPC's ipv4 resolver gets every member
    assert f"{host}:{port}" == "ipv4:10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2381"
    host, port = grpc_host_port(etcd_endpoints("[fd00::1]:2379,[fd00::2]:2379"))
    assert f"{host}:{port}" == "ipv6:[fd00::1]:2379,[fd00::2]:2379"


def test_the_client_is_made_with_that_target() -> None:
    client = make_etcd_client(EtcdSettings(endpoint="10.0.0.1:2379,10.0.0.2:2379"))
    assert f"{client._host}:{client._port}" == "ipv4:10.0.0.1:2379,10.0.0.2:2379"


@pytest.mark.parametrize(
    ("endpoint", "why"),
    [
        ("etcd-1:2379,etcd-2:2379", "each must be an IP address"),
        ("10.0.0.1:2379,[fd00::2]:2379", "mixes IPv4 and IPv6"),
        ("10.0.0.1", "is not host:port"),
        (" , ", "is empty"),
    ],
)
def test_an_endpoint_gRPC_cannot_dial_is_refused_at_load(endpoint: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        etcd_endpoints(endpoint)
    with pytest.raises(ConfigError, match=why):
        load_settings(env="dev", environ={"GOCHAT_ETCD__ENDPOINT": endpoint})
