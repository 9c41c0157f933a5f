"""A database as the release before schema migrations left it (its create_all on SQLite), with rows:
what `gochat-py db upgrade` must adopt without losing any."""

from __future__ import annotations

import sqlite3
from pathlib import Path

# What the release before migrations made (its create_all on SQLite), as sqlite_master holds it.
PRE_MIGRATION_SQLITE = {
    "user": "CREATE TABLE user (\n\tid INTEGER NOT NULL, \n\tuser_name VARCHAR(255) NOT NULL, \n\t"
    "password VARCHAR(255) NOT NULL, \n\tcreate_time DATETIME NOT NULL, \n\t"
    "PRIMARY KEY (id), \n\tUNIQUE (user_name)\n)",
    "message": "CREATE TABLE message (\n\tid VARCHAR(41) NOT NULL, \n\tms BIGINT NOT NULL, \n\t"
    "seq BIGINT NOT NULL, \n\t"
    "conversation VARCHAR(64) NOT NULL, \n\trecipient BIGINT NOT NULL, \n\top SMALLINT NOT NULL, \n\t"
    "body BLOB NOT NULL, \n\tPRIMARY KEY (id)\n)",
    "ix_message_recipient": "CREATE INDEX ix_message_recipient ON message (recipient, ms, seq)",
    "ix_message_conversation": "CREATE INDEX ix_message_conversation ON message (conversation, ms, seq)",
}


def make_pre_migration_sqlite(path: Path, with_messages: bool = True) -> None:
    """A database as the release before migrations left it, with users (and kept messages)."""
    with sqlite3.connect(path) as conn:
        conn.execute(PRE_MIGRATION_SQLITE["user"])
        conn.executemany(
            "INSERT INTO user (user_name, password, create_time) VALUES (?, ?, ?)",
            [("alice", "$argon2id$a", "2025-01-02 03:04:05.000000"), ("bob", "0123abcd", "2025-01-02 03:04:06.5")],
        )
        if with_messages:
            for name in ("message", "ix_message_recipient", "ix_message_conversation"):
                conn.execute(PRE_MIGRATION_SQLITE[name])
            conn.executemany(
                "INSERT INTO message (id, ms, seq, conversation, recipient, op, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [("100-0", 100, 0, "room:1", 0, 3, b'{"msg":"one"}'), ("100-1", 100, 1, "pair:1:2", 2, 2, b"two")],
            )
