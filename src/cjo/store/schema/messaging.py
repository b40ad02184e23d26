"""Messaging: every send decision (the outbox is its pending part), contacts and receipts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, Index, text
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, timestamp


class Message(SQLModel, table=True):
    """A send decision. `pending` rows are the outbox the dispatcher delivers from."""

    __tablename__ = "messages"
    __table_args__ = (
        Index(
            "ix_messages_outbox",
            "not_before",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_messages_user", "user_id", "created_at"),
    )

    id: str = Field(primary_key=True, max_length=64)
    key: str = Field(unique=True, max_length=512)
    business_line: str = Field(max_length=64)
    journey: str | None = Field(default=None, max_length=64)
    workflow_id: str | None = Field(default=None, max_length=400)
    step_id: str | None = Field(default=None, max_length=64)
    user_id: str = Field(max_length=128)
    channel: str = Field(max_length=16)
    template: str = Field(max_length=64)
    template_version: str | None = Field(default=None, max_length=32)
    locale: str | None = Field(default=None, max_length=35)
    marketing: bool = True
    status: str = Field(
        max_length=16, description="pending | suppressed | sent | delivered | failed"
    )
    reason: str | None = Field(default=None, max_length=32)
    # Webhook addresses are URLs, which can be long.
    address: str | None = Field(default=None, max_length=2048)
    subject: str | None = None
    body: str | None = None
    html: str | None = None
    attempts: int = 0
    not_before: datetime | None = Field(default=None, sa_column=timestamp())
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    sent_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    provider_ref: str | None = Field(default=None, max_length=128)
    # A dispatcher that claimed the row holds it until then; one that died lets it lapse.
    lease_until: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    last_error: str | None = None
    # The URLs the template declared with `track(...)`, by index: the only redirect targets.
    links: list[str] = Field(default_factory=list, sa_column=jsonb(default="'[]'::jsonb"))
    # The message centre's (inbox) read state.
    read_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )


class ContactLog(SQLModel, table=True):
    """One contact that counts against frequency caps."""

    __tablename__ = "contact_log"
    __table_args__ = (Index("ix_contact_log_user_at", "user_id", "at"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    user_id: str = Field(max_length=128)
    business_line: str = Field(max_length=64)
    journey: str | None = Field(default=None, max_length=64)
    channel: str = Field(max_length=16)
    message_id: str = Field(max_length=64)
    at: datetime | None = Field(default=None, sa_column=timestamp())


class DeliveryReceipt(SQLModel, table=True):
    """What happened to a message after the outbox: sent, delivered, failed, opened, clicked."""

    __tablename__ = "delivery_receipts"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    # Providers repeat callbacks; one receipt per (message, status, provider's report id).
    key: str | None = Field(default=None, max_length=512, unique=True)
    message_id: str = Field(max_length=64, index=True)
    status: str = Field(max_length=16)
    provider_ref: str | None = Field(default=None, max_length=128)
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    at: datetime | None = Field(default=None, sa_column=timestamp())
