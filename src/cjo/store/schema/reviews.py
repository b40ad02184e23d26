"""Maker-checker records: who approved which journey version of a campaign."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Column, Identity, Index, text
from sqlmodel import Field, SQLModel

from cjo.store.schema._columns import timestamp


class CampaignApproval(SQLModel, table=True):
    """One approver's approval of one campaign at one journey version.

    An approval is never deleted: a change to what was approved voids it (`voided_at`),
    so the history of who approved what stays readable.
    """

    __tablename__ = "campaign_approvals"
    __table_args__ = (
        # An approver counts once per campaign: a second live approval cannot be stored.
        Index(
            "ux_campaign_approvals_live",
            "campaign_id",
            "approver",
            unique=True,
            postgresql_where=text("voided_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), primary_key=True))
    campaign_id: str = Field(max_length=64, index=True)
    journey_version: str = Field(max_length=32)
    approver: str = Field(max_length=128)
    comment: str | None = Field(default=None, max_length=1000)
    approved_at: datetime | None = Field(default=None, sa_column=timestamp())
    voided_at: datetime | None = Field(
        default=None, sa_column=timestamp(nullable=True, default_now=False)
    )
    void_reason: str | None = Field(default=None, max_length=200)
