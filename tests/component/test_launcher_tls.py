"""``gochat-py up`` starts plaintext Redis and etcd only: with TLS configured for one that does not
answer, it refuses, naming it, rather than start a server the modules could never talk to."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gochat_py.config import load_settings
from gochat_py.launcher import System


def closed_address() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once it is closed


@pytest.mark.parametrize(("section", "name"), [("REDIS", "Redis"), ("ETCD", "etcd")])
def test_up_refuses_to_start_a_plaintext_server_where_tls_is_configured(
    tmp_path: Path, section: str, name: str
) -> None:
    address = closed_address()
    key = "ADDRESS" if section == "REDIS" else "ENDPOINT"
    environ = {f"GOCHAT_{section}__{key}": address, f"GOCHAT_{section}__TLS_CA": str(tmp_path / "ca.pem")}
    system = System(load_settings(env="dev", environ={"GOCHAT_STATE_DIR": str(tmp_path), **environ}))
    try:
        with pytest.raises(RuntimeError) as caught:
            system.start_infra()
    finally:
        system.stop()
    assert f"nothing answers at {address} and TLS to {name} is configured" in str(caught.value)
    assert system.infra == []
