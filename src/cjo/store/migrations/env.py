"""Alembic environment: runs migrations against the URL `cjo.store.migrate` configured."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import cjo.store.schema  # noqa: F401  (registers every table on SQLModel.metadata)
from cjo.store.db import make_sync_engine

target_metadata = SQLModel.metadata


def run() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("no database URL configured for migrations")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_sync_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=target_metadata)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


run()
