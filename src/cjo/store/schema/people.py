"""People: profiles, consents, events and audience snapshots."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, Index
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, text_array, timestamp


class Profile(SQLModel, table=True):
    """A customer, with the fields the DSL's `user` root exposes."""

    __tablename__ = "profiles"
    __table_args__ = (
        Index("ix_profiles_tags", "tags", postgresql_using="gin"),
        Index(
            "ix_profiles_attrs",
            "attrs",
            postgresql_using="gin",
            postgresql_ops={"attrs": "jsonb_path_ops"},
        ),
    )

    id: str = Field(primary_key=True, max_length=128)
    name: str | None = None
    phone: str | None = Field(default=None, index=True)
    email: str | None = None
    locale: str = Field(default="zh-CN", max_length=35)
    timezone: str | None = Field(default=None, max_length=64)
    birthday: date | None = None
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
    lifecycle: str = Field(default="new", max_length=16, index=True)
    tags: list[str] = Field(default_factory=list, sa_column=text_array())
    attrs: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    addresses: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())


class Consent(SQLModel, table=True):
    """Marketing consent per channel, with where it came from and when."""

    __tablename__ = "consents"

    user_id: str = Field(primary_key=True, foreign_key="profiles.id", ondelete="CASCADE")
    channel: str = Field(primary_key=True, max_length=16)
    granted: bool
    source: str = Field(max_length=64)
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class Event(SQLModel, table=True):
    """What customers did, deduplicated by the sender's own event id."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_name_ts", "user_id", "name", "ts"),
        Index("ix_events_name_ts", "name", "ts"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    client_id: str = Field(unique=True, max_length=128)
    user_id: str = Field(max_length=128)
    name: str = Field(max_length=128)
    props: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    ts: datetime = Field(sa_column=timestamp(default_now=False))
    received_at: datetime | None = Field(default=None, sa_column=timestamp())


class AudienceSnapshot(SQLModel, table=True):
    """A segment's members at one moment, taken with one INSERT ... SELECT."""

    __tablename__ = "audience_snapshots"

    id: str = Field(primary_key=True, max_length=64)
    business_line: str = Field(max_length=64)
    segment: str = Field(max_length=64)
    segment_version: str = Field(max_length=32)
    size: int = 0
    created_at: datetime | None = Field(default=None, sa_column=timestamp())


class AudienceMember(SQLModel, table=True):
    __tablename__ = "audience_members"

    audience_id: str = Field(
        primary_key=True, foreign_key="audience_snapshots.id", ondelete="CASCADE", max_length=64
    )
    user_id: str = Field(primary_key=True, max_length=128)
