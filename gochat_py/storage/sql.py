"""The SQL engine from a database URL (SQLAlchemy async): users and kept messages share it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def make_engine(database_url: str) -> AsyncEngine:
    # hide_parameters: statement errors would otherwise log user names, hashes and messages
    engine = create_async_engine(database_url, pool_pre_ping=True, hide_parameters=True)
    if engine.dialect.name == "sqlite":
        database = make_url(database_url).database
        if database and database != ":memory:":
            # whichever module starts first (logic, task) makes the folder of a new database
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
    """WAL lets readers run beside the writer; busy_timeout queues writers instead of failing.
    busy_timeout first: switching to WAL needs the lock too, and a module starting while another
    creates the database (logic and task at once) would otherwise fail at once with "locked"."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()
