"""new_token(): the 44-character URL-safe base64 session token (spec §11.1)."""

from __future__ import annotations

import base64
import re

from gochat_py.logic.sessions import new_token, room_key, user_server_key


def test_token_shape() -> None:
    token = new_token()
    assert len(token) == 44
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}=", token)
    assert len(base64.urlsafe_b64decode(token)) == 32


def test_tokens_are_unique() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000


def test_tokens_use_the_url_safe_alphabet() -> None:
    joined = "".join(new_token() for _ in range(500))
    assert "+" not in joined
    assert "/" not in joined
    assert {"-", "_"} & set(joined)


def test_original_redis_key_names() -> None:
    assert room_key(1) == "gochat_room_1"
    assert user_server_key(2) == "gochat_2"
