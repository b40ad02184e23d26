"""Initial schema: people, resources, runs, goods, messaging, risk and audit tables.

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-24 23:28:34.244366
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity_receipts",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("activity", sa.String(length=64), nullable=False),
        sa.Column(
            "result",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "audience_snapshots",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("segment", sa.String(length=64), nullable=False),
        sa.Column("segment_version", sa.String(length=32), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=400), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("before_hash", sa.String(length=64), nullable=True),
        sa.Column("after_hash", sa.String(length=64), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_table(
        "benefit_ledgers",
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("benefit", sa.String(length=64), nullable=False),
        sa.Column("units_granted", sa.Integer(), nullable=False),
        sa.Column("value_granted", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("business_line", "benefit"),
    )
    op.create_table(
        "campaigns",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("journey_version", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("audience_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("launched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_campaigns_business_line"), "campaigns", ["business_line"], unique=False
    )
    op.create_table(
        "contact_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=True),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_contact_log_user_at", "contact_log", ["user_id", "at"], unique=False)
    op.create_table(
        "delivery_receipts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.Column(
            "raw",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        op.f("ix_delivery_receipts_message_id"), "delivery_receipts", ["message_id"], unique=False
    )
    op.create_table(
        "enrolments",
        sa.Column("run_key", sa.String(length=400), nullable=False),
        sa.Column("workflow_id", sa.String(length=400), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=True),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=False),
        sa.Column("plan_version", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("entry_key", sa.String(length=256), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_step", sa.String(length=64), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("variant", sa.String(length=64), nullable=True),
        sa.Column("holdout", sa.Boolean(), nullable=False),
        sa.Column(
            "entered_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("converted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("run_key"),
    )
    op.create_index(op.f("ix_enrolments_campaign_id"), "enrolments", ["campaign_id"], unique=False)
    op.create_index(
        "ix_enrolments_journey_status",
        "enrolments",
        ["business_line", "journey", "status"],
        unique=False,
    )
    op.create_index("ix_enrolments_user", "enrolments", ["user_id", "entered_at"], unique=False)
    op.create_index(op.f("ix_enrolments_workflow_id"), "enrolments", ["workflow_id"], unique=False)
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("client_id", sa.String(length=128), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column(
            "props",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id"),
    )
    op.create_index("ix_events_name_ts", "events", ["name", "ts"], unique=False)
    op.create_index("ix_events_user_name_ts", "events", ["user_id", "name", "ts"], unique=False)
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("benefit", sa.String(length=64), nullable=False),
        sa.Column("benefit_version", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_value", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("value", sa.Numeric(precision=20, scale=4), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=False),
        sa.Column("benefit_type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=400), nullable=True),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column(
            "granted_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("redeem_key", sa.String(length=512), nullable=True),
        sa.Column("revoke_key", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sa.UniqueConstraint("redeem_key"),
        sa.UniqueConstraint("revoke_key"),
    )
    op.create_index(
        "ix_grants_user_benefit",
        "grants",
        ["user_id", "business_line", "benefit", "granted_at"],
        unique=False,
    )
    op.create_index(
        "ix_grants_due",
        "grants",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'granted'"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("journey", sa.String(length=64), nullable=True),
        sa.Column("workflow_id", sa.String(length=400), nullable=True),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("template", sa.String(length=64), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=True),
        sa.Column("marketing", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("address", sa.String(length=2048), nullable=True),
        sa.Column("subject", sa.String(), nullable=True),
        sa.Column("body", sa.String(), nullable=True),
        sa.Column("html", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "not_before",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("provider_ref", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(
        "ix_messages_outbox",
        "messages",
        ["not_before"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_messages_user", "messages", ["user_id", "created_at"], unique=False)
    op.create_table(
        "profiles",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("phone", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("locale", sa.String(length=35), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("lifecycle", sa.String(length=16), nullable=False),
        sa.Column(
            "tags",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "attrs",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "addresses",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_profiles_attrs",
        "profiles",
        ["attrs"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"attrs": "jsonb_path_ops"},
    )
    op.create_index(op.f("ix_profiles_lifecycle"), "profiles", ["lifecycle"], unique=False)
    op.create_index(op.f("ix_profiles_phone"), "profiles", ["phone"], unique=False)
    op.create_index("ix_profiles_tags", "profiles", ["tags"], unique=False, postgresql_using="gin")
    op.create_table(
        "resource_versions",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("document", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("plan", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("source", sa.String(), nullable=True),
        sa.Column("created_by", sa.String(length=128), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("kind", "business_line", "name", "version"),
    )
    op.create_table(
        "resources",
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("latest_version", sa.String(length=32), nullable=False),
        sa.Column("revisions", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("kind", "business_line", "name"),
    )
    op.create_table(
        "risk_decisions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("policy", sa.String(length=64), nullable=False),
        sa.Column("policy_version", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column(
            "matched",
            postgresql.ARRAY(sa.Text()),
            server_default=sa.text("'{}'::text[]"),
            nullable=False,
        ),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index(op.f("ix_risk_decisions_user_id"), "risk_decisions", ["user_id"], unique=False)
    op.create_table(
        "risk_lists",
        sa.Column("business_line", sa.String(length=64), nullable=False),
        sa.Column("list", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column(
            "added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("business_line", "list", "value"),
    )
    op.create_table(
        "step_log",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("run_key", sa.String(length=400), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=False),
        sa.Column("step_type", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=64), nullable=True),
        sa.Column(
            "detail",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
    )
    op.create_index("ix_step_log_run", "step_log", ["run_key", "at"], unique=False)
    op.create_table(
        "audience_members",
        sa.Column("audience_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(["audience_id"], ["audience_snapshots.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("audience_id", "user_id"),
    )
    op.create_table(
        "consents",
        sa.Column("user_id", sa.String(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("granted", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(["user_id"], ["profiles.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", "channel"),
    )


def downgrade() -> None:
    op.drop_table("consents")
    op.drop_table("audience_members")
    op.drop_index("ix_step_log_run", table_name="step_log")
    op.drop_table("step_log")
    op.drop_table("risk_lists")
    op.drop_index(op.f("ix_risk_decisions_user_id"), table_name="risk_decisions")
    op.drop_table("risk_decisions")
    op.drop_table("resources")
    op.drop_table("resource_versions")
    op.drop_index("ix_profiles_tags", table_name="profiles", postgresql_using="gin")
    op.drop_index(op.f("ix_profiles_phone"), table_name="profiles")
    op.drop_index(op.f("ix_profiles_lifecycle"), table_name="profiles")
    op.drop_index(
        "ix_profiles_attrs",
        table_name="profiles",
        postgresql_using="gin",
        postgresql_ops={"attrs": "jsonb_path_ops"},
    )
    op.drop_table("profiles")
    op.drop_index("ix_messages_user", table_name="messages")
    op.drop_index(
        "ix_messages_outbox", table_name="messages", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_table("messages")
    op.drop_index(
        "ix_grants_due", table_name="grants", postgresql_where=sa.text("status = 'granted'")
    )
    op.drop_index("ix_grants_user_benefit", table_name="grants")
    op.drop_table("grants")
    op.drop_index("ix_events_user_name_ts", table_name="events")
    op.drop_index("ix_events_name_ts", table_name="events")
    op.drop_table("events")
    op.drop_index(op.f("ix_enrolments_workflow_id"), table_name="enrolments")
    op.drop_index("ix_enrolments_user", table_name="enrolments")
    op.drop_index("ix_enrolments_journey_status", table_name="enrolments")
    op.drop_index(op.f("ix_enrolments_campaign_id"), table_name="enrolments")
    op.drop_table("enrolments")
    op.drop_index(op.f("ix_delivery_receipts_message_id"), table_name="delivery_receipts")
    op.drop_table("delivery_receipts")
    op.drop_index("ix_contact_log_user_at", table_name="contact_log")
    op.drop_table("contact_log")
    op.drop_index(op.f("ix_campaigns_business_line"), table_name="campaigns")
    op.drop_table("campaigns")
    op.drop_table("benefit_ledgers")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("audience_snapshots")
    op.drop_table("activity_receipts")
