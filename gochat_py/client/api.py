"""The few HTTP api calls a v2 client needs before its socket: log in (or register) for a token,
and ask who the token belongs to.  Everything else goes over the socket.

The api answers every request with an envelope ``{"code", "data", "message"}``; code 0 is success.
"""

from __future__ import annotations

from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=15)


class ApiError(Exception):
    """The api refused (wrong password, name taken, bad token) or could not be reached."""


async def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.post(api.rstrip("/") + path, json=body) as response,
        ):
            envelope = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ApiError(f"{path}: {exc or type(exc).__name__}") from None
    if not isinstance(envelope, dict) or envelope.get("code") != 0:
        message = envelope.get("message") if isinstance(envelope, dict) else envelope
        raise ApiError(f"{path}: {message}")
    return envelope.get("data")


async def login(api: str, user: str, password: str, register: bool = False) -> str:
    """A token for ``user``; with ``register``, the account is created first (the api then logs in)."""
    path = "/user/register" if register else "/user/login"
    token = await _post(api, path, {"userName": user, "passWord": password})
    if not isinstance(token, str) or not token:
        raise ApiError(f"{path}: no token in the answer")
    return token


async def whoami(api: str, token: str) -> tuple[int, str]:
    """The id and name of the token's user (``/user/checkAuth``)."""
    data = await _post(api, "/user/checkAuth", {"authToken": token})
    return int(data["userId"]), str(data["userName"])
