"""Campaigns, the runs of users through journeys, and what each step did."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, Identity, Index, text
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import jsonb, timestamp


class Campaign(SQLModel, table=True):
    __tablename__ = "campaigns"

    id: str = Field(primary_key=True, max_length=64)
    business_line: str = Field(max_length=64, index=True)
    journey: str = Field(max_length=64)
    journey_version: str = Field(max_length=32)
    state: str = Field(default="draft", max_length=16)
    audience_id: str | None = Field(default=None, max_length=64)
    created_by: str | None = Field(default=None, max_length=128)
    settings: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    created_at: datetime | None = Field(default=None, sa_column=timestamp())
    updated_at: datetime | None = Field(default=None, sa_column=timestamp())
    launched_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    ended_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    # Maker-checker: who submitted it, the audience it was submitted with, and how many
    # approvals by distinct approvers that audience needs (see `campaign_approvals`).
    submitted_by: str | None = Field(default=None, max_length=128)
    submitted_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    audience_size: int | None = Field(default=None, sa_type=BigInteger)
    approvals_required: int = Field(default=1, sa_column_kwargs={"server_default": text("1")})


class Enrolment(SQLModel, table=True):
    """One user's run through one journey: where they are and how it ended."""

    __tablename__ = "enrolments"
    __table_args__ = (
        Index("ix_enrolments_journey_status", "business_line", "journey", "status"),
        Index("ix_enrolments_user", "user_id", "entered_at"),
    )

    run_key: str = Field(
        primary_key=True, max_length=400, description="workflow id and entry number"
    )
    workflow_id: str = Field(max_length=400, index=True)
    campaign_id: str | None = Field(default=None, max_length=64, index=True)
    business_line: str = Field(max_length=64)
    journey: str = Field(max_length=64)
    plan_version: str = Field(max_length=32)
    user_id: str = Field(max_length=128)
    entry_key: str | None = Field(default=None, max_length=256)
    status: str = Field(default="active", max_length=16)
    current_step: str | None = Field(default=None, max_length=64)
    end_reason: str | None = Field(default=None, max_length=16)
    variant: str | None = Field(default=None, max_length=64)
    holdout: bool = False
    entered_at: datetime | None = Field(default=None, sa_column=timestamp())
    converted_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    ended_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )


class StepLogEntry(SQLModel, table=True):
    """What a step did for a user; `key` is the step's idempotency key."""

    __tablename__ = "step_log"
    __table_args__ = (Index("ix_step_log_run", "run_key", "at"),)

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    key: str = Field(unique=True, max_length=512)
    run_key: str = Field(max_length=400)
    user_id: str = Field(max_length=128)
    step_id: str = Field(max_length=64)
    step_type: str = Field(max_length=16)
    outcome: str | None = Field(default=None, max_length=64)
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    at: datetime | None = Field(default=None, sa_column=timestamp())


class ActivityReceipt(SQLModel, table=True):
    """The result of an idempotent side effect, so a retry returns it instead of redoing it."""

    __tablename__ = "activity_receipts"

    key: str = Field(primary_key=True, max_length=512)
    activity: str = Field(max_length=64)
    result: dict[str, Any] = Field(default_factory=dict, sa_column=jsonb())
    at: datetime | None = Field(default=None, sa_column=timestamp())
