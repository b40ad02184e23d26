"""Risk: named lists and the decisions risk policies made."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, text_array, timestamp


class RiskListEntry(SQLModel, table=True):
    __tablename__ = "risk_lists"

    business_line: str = Field(primary_key=True, max_length=64)
    list: str = Field(primary_key=True, max_length=64)
    value: str = Field(primary_key=True, max_length=256)
    reason: str | None = None
    added_at: datetime | None = Field(default=None, sa_column=timestamp())


class RiskDecision(SQLModel, table=True):
    __tablename__ = "risk_decisions"

    id: str = Field(primary_key=True, max_length=64)
    key: str = Field(unique=True, max_length=512)
    business_line: str = Field(max_length=64)
    policy: str = Field(max_length=64)
    policy_version: str = Field(max_length=32)
    user_id: str = Field(max_length=128, index=True)
    outcome: str = Field(max_length=16)
    matched: list[str] = Field(default_factory=list, sa_column=text_array())
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    at: datetime | None = Field(default=None, sa_column=timestamp())
