"""Published resources and their versions (journeys carry their compiled Plan)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, timestamp


class Resource(SQLModel, table=True):
    """The head of a resource's history: its newest version."""

    __tablename__ = "resources"

    kind: str = Field(primary_key=True, max_length=32)
    business_line: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    latest_version: str = Field(max_length=32)
    revisions: int = 1
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class ResourceVersion(SQLModel, table=True):
    """One version of a resource, addressed by its content hash; never changed once stored."""

    __tablename__ = "resource_versions"

    kind: str = Field(primary_key=True, max_length=32)
    business_line: str = Field(primary_key=True, max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    version: str = Field(primary_key=True, max_length=32)
    revision: int = Field(description="1 for the first version, then 2, 3, ...")
    # The normalised document (apiVersion, kind, metadata, spec), as the DSL reads it.
    document: dict[str, Any] = Field(sa_column=jsonb(default=""))
    plan: dict[str, Any] | None = Field(default=None, sa_column=jsonb(default="", nullable=True))
    source: str | None = None
    created_by: str | None = Field(default=None, max_length=128)
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
