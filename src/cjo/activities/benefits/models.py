"""Inputs and results of the benefit activities besides the grant step's (see
`cjo.steps.contracts`): redemption, revocation, expiry and what people read."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Shortfall = Literal["stock", "budget"]


class GrantChangeRequest(_Model):
    """Redeem or revoke one grant; `key` makes the change idempotent."""

    key: str = Field(min_length=1, max_length=512)
    grant_id: str
    at: datetime


ChangeOutcome = Literal[
    "redeemed", "revoked", "expired", "already_redeemed", "already_revoked", "not_found"
]


class GrantChangeOutcome(_Model):
    key: str
    grant_id: str
    outcome: ChangeOutcome


class RedeemGrantInput(_Model):
    requests: list[GrantChangeRequest]


class RedeemGrantResult(_Model):
    results: list[GrantChangeOutcome]


class RevokeGrantInput(_Model):
    requests: list[GrantChangeRequest]


class RevokeGrantResult(_Model):
    results: list[GrantChangeOutcome]


class ExpireGrantsInput(_Model):
    at: datetime
    business_line: str | None = None


class ExpireGrantsResult(_Model):
    expired: int


class BenefitStatus(_Model):
    """What a benefit has handed out; remaining amounts are None where the spec sets no limit."""

    business_line: str
    benefit: str
    units_granted: int
    value_granted: float
    units_remaining: int | None
    value_remaining: float | None
    grants: dict[str, int]


class GrantView(_Model):
    """A grant as people read it (its key and ledger details left out)."""

    id: str
    business_line: str
    benefit: str
    benefit_version: str
    benefit_type: str
    user_id: str
    quantity: int
    value: float
    unit: str
    status: str
    code: str
    workflow_id: str | None
    step_id: str | None
    granted_at: datetime
    expires_at: datetime | None
    redeemed_at: datetime | None
    revoked_at: datetime | None


class GrantPosition(_Model):
    """Where a page of a user's grants ended (newest first)."""

    granted_at: datetime
    id: str


class UserGrantsInput(_Model):
    """`business_lines`: only grants of these lines (None: every line)."""

    user_id: str
    business_lines: list[str] | None = None
    limit: int = Field(default=50, ge=1, le=500)
    after: GrantPosition | None = None


class UserGrantsResult(_Model):
    grants: list[GrantView]
    next: GrantPosition | None = None
