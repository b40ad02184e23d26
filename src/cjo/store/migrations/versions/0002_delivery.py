"""Delivery: outbox leases and errors, tracked links, inbox read state, receipt keys.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 02:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.add_column("messages", sa.Column("last_error", sa.String(), nullable=True))
    op.add_column(
        "messages",
        sa.Column(
            "links",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("messages", sa.Column("read_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("delivery_receipts", sa.Column("key", sa.String(length=512), nullable=True))
    op.create_unique_constraint("delivery_receipts_key_key", "delivery_receipts", ["key"])


def downgrade() -> None:
    op.drop_constraint("delivery_receipts_key_key", "delivery_receipts", type_="unique")
    op.drop_column("delivery_receipts", "key")
    op.drop_column("messages", "read_at")
    op.drop_column("messages", "links")
    op.drop_column("messages", "last_error")
    op.drop_column("messages", "lease_until")
