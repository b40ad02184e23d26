"""Shared fixtures: a real PostgreSQL (embedded, from a wheel) migrated to head."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

import cjo.store.schema  # noqa: F401  (registers every table)
from cjo.runtime.stack import sqlalchemy_url, start_postgres, stop_postgres
from cjo.store.db import SessionFactory, make_engine, make_sessions
from cjo.store.migrate import upgrade


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One PostgreSQL per test session; CJO_TEST_DATABASE_URL points at another instead."""
    configured = os.environ.get("CJO_TEST_DATABASE_URL")
    if configured:
        url = sqlalchemy_url(configured)
        upgrade(url)
        yield url
        return
    data_dir = Path(tmp_path_factory.mktemp("pg"))
    url = start_postgres(data_dir)
    upgrade(url)
    try:
        yield url
    finally:
        stop_postgres(data_dir)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[SessionFactory]:
    """A session factory over an empty database (every table truncated before the test)."""
    engine = make_engine(database_url, pool_size=20, max_overflow=40)
    tables = ", ".join(f'"{name}"' for name in SQLModel.metadata.tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    try:
        yield make_sessions(engine)
    finally:
        await engine.dispose()
