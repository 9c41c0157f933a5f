"""Store outages are described without the request in them (no names or password hashes in logs)."""

from __future__ import annotations

import sqlite3

from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from gochat_py.logic.service import describe_error


def test_sqlalchemy_errors_lose_their_parameters() -> None:
    error = OperationalError(
        "INSERT INTO user (user_name, password) VALUES (?, ?)",
        ("ann", "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"),
        sqlite3.OperationalError("database is locked"),
    )
    assert "argon2id" in str(error)  # what SQLAlchemy itself would print
    described = describe_error(error)
    assert described == "OperationalError: database is locked"
    assert "argon2id" not in described and "ann" not in described and "INSERT" not in described


def test_other_errors_keep_their_text() -> None:
    error = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert describe_error(error) == "ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused."
