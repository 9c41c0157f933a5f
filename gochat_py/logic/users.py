"""The user table, through SQLAlchemy async: SQLite or PostgreSQL (asyncpg).

The table itself is made by the migrations (gochat_py/storage/migrations); the model here must
match them.  Ids come from the database (SQLite's rowid, PostgreSQL's sequence) and names are
unique there, so every logic of a cluster (one database: gochat_py.storage.database_identity)
hands out each id and each name once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import DateTime, Integer, String, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gochat_py.storage.sql import make_engine


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    # The original's table name and columns; password widened to hold an argon2 hash.
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    password: Mapped[str] = mapped_column(String(255), nullable=False)
    # naive UTC: the column has no time zone (SQLite keeps none, PostgreSQL's asyncpg rejects aware values)
    create_time: Mapped[datetime] = mapped_column(
        DateTime, nullable=False, default=lambda: datetime.now(UTC).replace(tzinfo=None)
    )


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    password: str


class DuplicateUserError(Exception):
    pass


class UserStore:
    def __init__(self, database_url: str) -> None:
        self.engine: AsyncEngine = make_engine(database_url)
        self._sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def close(self) -> None:
        await self.engine.dispose()

    async def by_name(self, name: str) -> User | None:
        async with self._sessions() as session:
            row = await session.scalar(select(UserRow).where(UserRow.user_name == name).limit(1))
            return _user(row)

    async def names_of(self, user_ids: list[int]) -> dict[int, str]:
        """Names of the users that exist among ``user_ids``, in one query."""
        if not user_ids:
            return {}
        async with self._sessions() as session:
            rows = await session.execute(select(UserRow.id, UserRow.user_name).where(UserRow.id.in_(user_ids)))
            return {user_id: name for user_id, name in rows}

    async def create(self, name: str, password_hash: str) -> User:
        async with self._sessions() as session:
            row = UserRow(user_name=name, password=password_hash)
            session.add(row)
            try:
                await session.commit()
            except IntegrityError as exc:
                raise DuplicateUserError(name) from exc
            return User(row.id, row.user_name, row.password)

    async def set_password(self, user_id: int, password_hash: str) -> None:
        async with self._sessions() as session:
            await session.execute(update(UserRow).where(UserRow.id == user_id).values(password=password_hash))
            await session.commit()


def _user(row: UserRow | None) -> User | None:
    return None if row is None else User(row.id, row.user_name, row.password)
