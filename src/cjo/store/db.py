"""Engines and sessions. Activities and the API use the async engine; migrations the sync one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlmodel.ext.asyncio.session import AsyncSession

SessionFactory = async_sessionmaker[AsyncSession]


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = True
) -> AsyncEngine:
    """An async engine over psycopg 3 (`postgresql+psycopg://...`).

    `pre_ping` tests each connection as it is handed out, so a request after a database
    restart does not fail. A worker can do without (one round trip per transaction saved):
    an activity that meets a dead connection fails, and Temporal retries it.
    """
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_pre_ping=pre_ping,
        # Times are stored with time zones; the session works in UTC so `now()` agrees.
        connect_args={"options": "-c timezone=UTC"},
    )


def make_sync_engine(url: str) -> Engine:
    return create_engine(url, connect_args={"options": "-c timezone=UTC"})


def make_sessions(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _engine(sessions: SessionFactory) -> AsyncEngine:
    engine = sessions.kw["bind"]
    assert isinstance(engine, AsyncEngine), "sessions are made by make_sessions"
    return engine


# Straight from the engine, without an ORM session around the connection: a session costs
# a transaction about a third more CPU (a quarter of a millisecond here), and the code
# that takes a connection writes SQL, not objects.
@asynccontextmanager
async def transaction(sessions: SessionFactory) -> AsyncIterator[AsyncConnection]:
    """A connection in a transaction: committed when the block ends, rolled back if it raises."""
    async with _engine(sessions).begin() as connection:
        yield connection


@asynccontextmanager
async def reading(sessions: SessionFactory) -> AsyncIterator[AsyncConnection]:
    """A connection for reads (autobegun; what it read is not committed, nothing to commit)."""
    async with _engine(sessions).connect() as connection:
        yield connection


class Statement:
    """SQL for a hot path: written like `text()` (`:name` parameters, `CAST(... AS ...)`),
    compiled for psycopg once, and run on the driver's own connection by `run`.

    SQLAlchemy's work around each statement (compiled-cache lookup, parameter processing,
    result wrapping) costs about 250 µs of CPU here, more than psycopg's own; a journey
    step's activity runs a few statements per user, so its statements skip it.
    """

    def __init__(self, sql: str) -> None:
        self.sql = str(text(sql).compile(dialect=_PSYCOPG))

    def __repr__(self) -> str:
        return f"Statement({self.sql!r})"


_PSYCOPG = psycopg_dialect()  # type: ignore[no-untyped-call]


async def run(
    connection: AsyncConnection, statement: Statement, params: Mapping[str, Any] | None = None
) -> list[tuple[Any, ...]]:
    """Run `statement` in `connection`'s transaction; its rows (none for a plain write)."""
    raw = (await connection.get_raw_connection()).driver_connection
    assert isinstance(raw, psycopg.AsyncConnection)
    cursor = await raw.execute(statement.sql, params)
    return list(await cursor.fetchall()) if cursor.description is not None else []


async def run_each(
    connection: AsyncConnection, statement: Statement, params: Sequence[Mapping[str, Any]]
) -> None:
    """Run `statement` once per parameter set, in `connection`'s transaction."""
    raw = (await connection.get_raw_connection()).driver_connection
    assert isinstance(raw, psycopg.AsyncConnection)
    async with raw.cursor() as cursor:
        await cursor.executemany(statement.sql, params)
