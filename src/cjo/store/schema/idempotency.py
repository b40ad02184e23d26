"""Answers to requests sent with an `Idempotency-Key`, replayed when the key comes again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, timestamp


class IdempotencyRecord(SQLModel, table=True):
    """A key is the principal's own: two principals may use the same key independently.

    `status` is None while the first request is still being answered.
    """

    __tablename__ = "idempotency_records"

    principal: str = Field(primary_key=True, max_length=128)
    key: str = Field(primary_key=True, max_length=255)
    method_path: str = Field(max_length=600, description="e.g. 'POST /v1/grants/g1/redeem'")
    body_hash: str = Field(max_length=64, description="sha256 of the canonical body")
    status: int | None = None
    response: Any | None = Field(default=None, sa_column=jsonb(default="", nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=timestamp(index=True))
