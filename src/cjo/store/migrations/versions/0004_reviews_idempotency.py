"""Maker-checker and idempotency: campaign submission, approvals, idempotency records.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 10:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("campaigns", sa.Column("submitted_by", sa.String(length=128), nullable=True))
    op.add_column("campaigns", sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("campaigns", sa.Column("audience_size", sa.BigInteger(), nullable=True))
    op.add_column(
        "campaigns",
        sa.Column("approvals_required", sa.Integer(), server_default=sa.text("1"), nullable=False),
    )
    op.create_table(
        "campaign_approvals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("journey_version", sa.String(length=32), nullable=False),
        sa.Column("approver", sa.String(length=128), nullable=False),
        sa.Column("comment", sa.String(length=1000), nullable=True),
        sa.Column(
            "approved_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("void_reason", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_campaign_approvals_campaign_id"),
        "campaign_approvals",
        ["campaign_id"],
        unique=False,
    )
    op.create_index(
        "ux_campaign_approvals_live",
        "campaign_approvals",
        ["campaign_id", "approver"],
        unique=True,
        postgresql_where=sa.text("voided_at IS NULL"),
    )
    op.create_table(
        "idempotency_records",
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("method_path", sa.String(length=600), nullable=False),
        sa.Column("body_hash", sa.String(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("response", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("principal", "key"),
    )
    op.create_index(
        op.f("ix_idempotency_records_created_at"),
        "idempotency_records",
        ["created_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_idempotency_records_created_at"), table_name="idempotency_records")
    op.drop_table("idempotency_records")
    op.drop_index("ux_campaign_approvals_live", table_name="campaign_approvals")
    op.drop_index(op.f("ix_campaign_approvals_campaign_id"), table_name="campaign_approvals")
    op.drop_table("campaign_approvals")
    op.drop_column("campaigns", "approvals_required")
    op.drop_column("campaigns", "audience_size")
    op.drop_column("campaigns", "submitted_at")
    op.drop_column("campaigns", "submitted_by")
