"""The schema comes from migrations, and they match the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from cjo.store.db import make_sync_engine
from cjo.store.migrate import current, downgrade, upgrade


def test_migrations_reach_head_and_match_the_models(database_url: str) -> None:
    assert current(database_url) is not None
    engine = make_sync_engine(database_url)
    try:
        with engine.connect() as connection:
            differences = compare_metadata(
                MigrationContext.configure(connection), SQLModel.metadata
            )
    finally:
        engine.dispose()
    assert differences == [], "models changed without a migration: " + repr(differences[:5])


def test_migrations_go_down_and_up_again(database_url: str) -> None:
    downgrade(database_url, "0001")
    assert current(database_url) == "0001"
    downgrade(database_url, "base")
    assert current(database_url) is None
    upgrade(database_url)
    assert current(database_url) == "0004"
