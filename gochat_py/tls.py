"""TLS from certificate settings: server contexts for the client-facing listeners (the original had
the settings but no TLS), and the checks every ``tls_ca`` / ``tls_cert`` / ``tls_key`` set gets
at start-up, so a wrong file refuses start-up naming it instead of failing each handshake later."""

from __future__ import annotations

import ssl

from gochat_py.config import ConfigError


def server_context(cert: str, key: str) -> ssl.SSLContext | None:
    """A server context when both files are set, None when neither is; one alone is an error."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError("TLS needs both tls_cert and tls_key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS certificate {cert} / key {key}: {exc}") from exc
    return context


def read_pem(section: str, setting: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(f"[{section}] {setting} {path}: cannot read it ({exc.strerror or exc})") from exc


def check_files(section: str, ca: str, cert: str, key: str) -> None:
    """A CA file with a certificate in it, and a certificate that its key belongs to (each if set).
    gRPC and redis-py would accept anything here and fail every handshake; ``ssl`` says why now."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if ca:
        data = read_pem(section, "tls_ca", ca)
        try:
            context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"[{section}] tls_ca {ca}: no CA certificate in it ({exc})") from exc
    if cert:
        read_pem(section, "tls_cert", cert)
        read_pem(section, "tls_key", key)
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"[{section}] tls_cert {cert} / tls_key {key}: not a certificate and its key ({exc})"
            ) from exc
