"""Mutual TLS between the layers: gRPC credentials from ``[rpc] tls_ca``, ``tls_cert``, ``tls_key``.

With the three set, every gRPC server asks for a client certificate signed by the CA and refuses
a connection without one, and every client checks the server's certificate against the CA and the
address it dials (the ``host:port`` the node registered in etcd: its host must be among the
certificate's subject alternative names, as an IP address or a DNS name), or against
``tls_server_name`` when set.  Without them everything speaks plaintext gRPC, as before.

The files are read and checked once, at start-up: a missing file, a key that does not belong to
its certificate or a CA file without a certificate refuse start-up with a :class:`ConfigError`
naming the file, instead of failing every handshake later.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from gochat_py.config import ConfigError, RpcSettings
from gochat_py.tls import check_files, read_pem


@dataclass(frozen=True, slots=True)
class RpcTls:
    """The PEM bytes both sides need, read once."""

    ca: bytes
    cert: bytes
    key: bytes
    server_name: str = ""

    def server_credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials([(self.key, self.cert)], root_certificates=self.ca, require_client_auth=True)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca, private_key=self.key, certificate_chain=self.cert
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def load_rpc_tls(settings: RpcSettings) -> RpcTls | None:
    """None when TLS is off; the config's validation already refused half a configuration."""
    if not settings.tls:
        return None
    check_files("rpc", settings.tls_ca, settings.tls_cert, settings.tls_key)
    return RpcTls(
        read_pem("rpc", "tls_ca", settings.tls_ca),
        read_pem("rpc", "tls_cert", settings.tls_cert),
        read_pem("rpc", "tls_key", settings.tls_key),
        settings.tls_server_name,
    )


def add_port(server: grpc.aio.Server, bind: str, tls: RpcTls | None) -> int:
    """Binds ``server`` with TLS when configured; returns the port (0 from gRPC is an error)."""
    port = server.add_secure_port(bind, tls.server_credentials()) if tls else server.add_insecure_port(bind)
    if not port:
        raise ConfigError(f"cannot bind the gRPC server to {bind}")
    return port


def open_channel(address: str, tls: RpcTls | None, options: list[tuple[str, object]]) -> grpc.aio.Channel:
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(address, tls.channel_credentials(), options=options + tls.channel_options())
