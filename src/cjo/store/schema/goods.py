"""Goods: benefit ledgers (stock and budget counters) and the grants made from them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Index, Numeric, text
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import timestamp


class BenefitLedger(SQLModel, table=True):
    """Units and value granted so far; stock and budget are checked against these."""

    __tablename__ = "benefit_ledgers"

    business_line: str = Field(primary_key=True, max_length=64)
    benefit: str = Field(primary_key=True, max_length=64)
    units_granted: int = 0
    value_granted: Decimal = Field(default=Decimal(0), sa_type=Numeric(20, 4))
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())


class Grant(SQLModel, table=True):
    """A benefit given to a user: granted → redeemed | expired | revoked."""

    __tablename__ = "grants"
    __table_args__ = (
        Index("ix_grants_user_benefit", "user_id", "business_line", "benefit", "granted_at"),
        # Expiry sweeps need only the grants still open, not the history of settled ones.
        Index("ix_grants_due", "expires_at", postgresql_where=text("status = 'granted'")),
    )

    id: str = Field(primary_key=True, max_length=64)
    key: str = Field(unique=True, max_length=512)
    business_line: str = Field(max_length=64)
    benefit: str = Field(max_length=64)
    benefit_version: str = Field(max_length=32)
    user_id: str = Field(max_length=128)
    quantity: int
    unit_value: Decimal = Field(sa_type=Numeric(20, 4))
    value: Decimal = Field(sa_type=Numeric(20, 4))
    unit: str = Field(max_length=16)
    benefit_type: str = Field(max_length=16)
    status: str = Field(default="granted", max_length=16)
    code: str = Field(max_length=64)
    workflow_id: str | None = Field(default=None, max_length=400)
    step_id: str | None = Field(default=None, max_length=64)
    granted_at: datetime | None = Field(default=None, sa_column=timestamp())
    expires_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    redeemed_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    revoked_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    redeem_key: str | None = Field(default=None, unique=True, max_length=512)
    revoke_key: str | None = Field(default=None, unique=True, max_length=512)
