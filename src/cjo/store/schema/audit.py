"""The append-only audit log: who changed what, when, with hashes of before and after.

Append-only in the database itself: a trigger (migration 0003) refuses UPDATE and DELETE.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, timestamp


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    at: datetime | None = Field(default=None, sa_column=timestamp(index=True))
    actor: str = Field(max_length=128)
    role: str = Field(max_length=16)
    business_line: str | None = Field(default=None, max_length=64)
    action: str = Field(max_length=64)
    target: str = Field(max_length=400)
    request_id: str | None = Field(default=None, max_length=64)
    # The HTTP status the call was answered with.
    status: int | None = None
    before_hash: str | None = Field(default=None, max_length=64)
    after_hash: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
