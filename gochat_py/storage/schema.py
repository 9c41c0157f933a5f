"""The database schema's version: upgrades (Alembic, gochat_py/storage/migrations) and the start-up check.

Modules never change a schema that holds data on their own: a release whose schema is newer than
the database's refuses to start and says to run ``gochat-py db upgrade``, so an operator decides
when a shared database changes (one host upgrades it, every host then runs the new release).  The
one exception keeps ``./run.sh local`` a single command: a SQLite database with no table at all (a
new dev machine, a new state folder) is created at start.

Upgrades hold a lock for their whole run, so two hosts (or logic and task on one) upgrading at
once do it once: PostgreSQL takes an advisory lock inside the upgrade's transaction; SQLite takes
its write lock (BEGIN IMMEDIATE), which also makes its DDL all-or-nothing.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from gochat_py.logs import kv
from gochat_py.storage.sql import make_engine

log = logging.getLogger("gochat.schema")
MIGRATIONS = Path(__file__).parent / "migrations"
UPGRADE_COMMAND = "gochat-py db upgrade"
# pg_advisory_xact_lock's key: any constant the database's other users do not take
_PG_LOCK = 0x6763_6861_7400  # "gchat"


class DatabaseRefused(Exception):
    """This module must not use the database as it is; the message says why and what to do."""


class SchemaError(DatabaseRefused):
    """The schema is missing, older or newer than this release's."""


def safe_url(database_url: str) -> str:
    """The URL without its password, for log lines and messages."""
    return make_url(database_url).render_as_string(hide_password=True)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


@dataclass(frozen=True, slots=True)
class SchemaState:
    current: str | None  # the revision in alembic_version; None: no such table or row
    head: str  # this release's newest revision
    tables: frozenset[str]  # every table the database holds, ours or not
    known: bool  # current is a revision of this release (or None)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head

    @property
    def empty(self) -> bool:
        return not self.tables

    def problem(self, database_url: str) -> str | None:
        """Why a module cannot start on this database, naming the command that fixes it; None: it can."""
        where = safe_url(database_url)
        if self.up_to_date:
            return None
        if not self.known:
            return (
                f"the database {where} has schema revision {self.current}, which this release does not know"
                f" (its newest is {self.head}): it was upgraded by a newer gochat-py; run that release here too"
            )
        if self.current is None and "user" in self.tables:
            return (
                f"the database {where} was made by a release before schema migrations;"
                f" run `{UPGRADE_COMMAND}` (same configuration) once to adopt it: every row is kept"
            )
        if self.current is None:
            return f"the database {where} has no gochat schema; run `{UPGRADE_COMMAND}` (same configuration)"
        return (
            f"the database {where} has schema revision {self.current}, this release needs {self.head};"
            f" run `{UPGRADE_COMMAND}` (same configuration)"
        )


def _read_state(connection: Connection) -> SchemaState:
    tables = frozenset(sa.inspect(connection).get_table_names())
    current = MigrationContext.configure(connection).get_current_revision()
    scripts = ScriptDirectory.from_config(_alembic_config())
    known = True
    if current is not None:
        try:
            known = scripts.get_revision(current) is not None
        except CommandError:
            known = False
    head = scripts.get_current_head()
    assert head is not None
    return SchemaState(current, head, tables, known)


async def read_state(engine: AsyncEngine) -> SchemaState:
    async with engine.connect() as conn:
        return await conn.run_sync(_read_state)


def migration_engine(database_url: str) -> AsyncEngine:
    """An engine whose transactions lock out other upgraders: SQLite's BEGIN IMMEDIATE (the
    Python driver would otherwise run DDL outside any transaction), PostgreSQL's as usual."""
    engine = make_engine(database_url)
    if engine.dialect.name == "sqlite":

        def _no_implicit_transactions(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        def _begin_immediate(connection: Connection) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        event.listen(engine.sync_engine, "connect", _no_implicit_transactions)
        event.listen(engine.sync_engine, "begin", _begin_immediate)
    return engine


def _upgrade(connection: Connection, only_if_empty: bool) -> tuple[SchemaState, SchemaState | None]:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
    before = _read_state(connection)
    if before.up_to_date or not before.known or (only_if_empty and not before.empty):
        return before, None
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    return before, _read_state(connection)


async def upgrade(database_url: str, only_if_empty: bool = False) -> tuple[SchemaState, SchemaState | None]:
    """Brings the schema to this release's head under the upgrade lock: (state before, state after,
    or None when nothing was run: already current, newer than this release, or not empty when
    ``only_if_empty``)."""
    engine = migration_engine(database_url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(_upgrade, only_if_empty)
    finally:
        await engine.dispose()


LOCKED_ATTEMPTS = 10  # a new SQLite database another module is creating: tries, a second apart


async def require_current_schema(engine: AsyncEngine, database_url: str, module: str) -> None:
    """Start-up check of a module that uses the database: returns when the schema is this
    release's, creates a new empty SQLite database, raises SchemaError otherwise."""
    for attempt in range(LOCKED_ATTEMPTS):
        try:
            state = await read_state(engine)
            if not state.up_to_date and state.empty and engine.dialect.name == "sqlite":
                _, after = await upgrade(database_url, only_if_empty=True)
                if after is not None:
                    where = safe_url(database_url)
                    log.info("database created", extra=kv(module=module, database=where, revision=after.current))
                state = after or await read_state(engine)
            break
        except sa.exc.OperationalError as exc:
            # another module creating the same new SQLite database holds it longer than the busy
            # timeout (a loaded machine): it is there in a moment
            if "locked" not in str(exc.orig) or attempt == LOCKED_ATTEMPTS - 1:
                detail = getattr(exc, "orig", None) or exc
                raise DatabaseRefused(f"cannot use the database {safe_url(database_url)}: {detail}") from exc
            log.info("database locked by another module; trying again", extra=kv(module=module))
            await asyncio.sleep(1.0)
        except (sa.exc.DBAPIError, OSError) as exc:
            detail = getattr(exc, "orig", None) or exc  # the driver's words, without SQLAlchemy's link
            raise DatabaseRefused(f"cannot use the database {safe_url(database_url)}: {detail}") from exc
    problem = state.problem(database_url)
    if problem:
        raise SchemaError(problem)
