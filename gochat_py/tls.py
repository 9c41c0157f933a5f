"""TLS server contexts from certificate settings (the original had the settings but no TLS)."""

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
