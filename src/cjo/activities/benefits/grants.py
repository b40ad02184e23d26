"""Benefits (goods): grant from a ledger that never goes one unit over; redeem, revoke, expire.

Stock counts units and budget counts value (quantity × unit value). Both are counters on
the benefit's ledger row that move only through conditional UPDATEs, so any number of
concurrent grants stops exactly at the limit. The per-user limit counts the user's grants
(revoked ones aside, since a revoke hands the benefit back) under an advisory lock on
(business line, benefit, user). A grant moves granted → redeemed | expired | revoked;
expired grants keep their stock taken (they were handed out), revoked ones return it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from temporalio import activity

from cjo.activities._base import LOCKED, lock_keys, utc
from cjo.activities.benefits._ledger import GRANT_ACTIVITY, decide, money, recorded_grants
from cjo.activities.benefits.models import (
    BenefitStatus,
    ChangeOutcome,
    ExpireGrantsInput,
    ExpireGrantsResult,
    GrantChangeOutcome,
    GrantChangeRequest,
    GrantPosition,
    GrantView,
    RedeemGrantInput,
    RedeemGrantResult,
    RevokeGrantInput,
    RevokeGrantResult,
    UserGrantsInput,
    UserGrantsResult,
)
from cjo.activities.runs.records import RunWrite, holds_of, step_done, write_runs
from cjo.dsl import BenefitSpec
from cjo.steps.contracts import GrantBenefitInput, GrantBenefitResult, GrantOutcome, GrantRequest
from cjo.steps.run import Hold
from cjo.steps.semantics import grant_result
from cjo.store.db import SessionFactory, Statement, reading, run, transaction

__all__ = ["BenefitActivities"]


class BenefitActivities:
    """Grants, redemptions, revocations and expiry, on the database."""

    def __init__(self, sessions: SessionFactory) -> None:
        self._sessions = sessions

    @activity.defn(name=GRANT_ACTIVITY)
    async def grant(self, batch: GrantBenefitInput) -> GrantBenefitResult:
        unique = _first_by_key(batch.requests)
        async with transaction(self._sessions) as connection:
            holds = await _open_ledgers(connection, unique)
            outcomes = {
                r.key: _held(r, hold)
                for r in unique
                if r.run is not None and (hold := holds.get(r.run.campaign_id or "")) is not None
            }
            active = [request for request in unique if request.key not in outcomes]
            outcomes.update(await recorded_grants(connection, [r.key for r in active]))
            fresh = [request for request in active if request.key not in outcomes]
            outcomes.update(await decide(connection, fresh))
            await write_runs(connection, _run_writes(active, outcomes))
        return GrantBenefitResult(results=[outcomes[r.key] for r in batch.requests])

    @activity.defn(name="benefits.redeem")
    async def redeem(self, batch: RedeemGrantInput) -> RedeemGrantResult:
        return RedeemGrantResult(results=await self._change(batch.requests, _REDEEM))

    @activity.defn(name="benefits.revoke")
    async def revoke(self, batch: RevokeGrantInput) -> RevokeGrantResult:
        return RevokeGrantResult(results=await self._change(batch.requests, _REVOKE))

    @activity.defn(name="benefits.expire")
    async def expire_due(self, request: ExpireGrantsInput) -> ExpireGrantsResult:
        """Expire granted grants past their time; their stock stays used (they were handed out)."""
        async with transaction(self._sessions) as connection:
            result = await connection.execute(
                text(
                    "UPDATE grants SET status = 'expired' WHERE status = 'granted' "
                    "AND expires_at < :at "
                    "AND (CAST(:business_line AS text) IS NULL OR business_line = :business_line)"
                ),
                {"at": utc(request.at), "business_line": request.business_line},
            )
        return ExpireGrantsResult(expired=result.rowcount)

    async def status(
        self, business_line: str, benefit: str, spec: BenefitSpec | None = None
    ) -> BenefitStatus:
        """Units and value handed out (and left, given the spec) and grants by status."""
        async with reading(self._sessions) as connection:
            ledger = (
                await connection.execute(
                    text(
                        "SELECT units_granted, value_granted FROM benefit_ledgers "
                        "WHERE business_line = :business_line AND benefit = :benefit"
                    ),
                    {"business_line": business_line, "benefit": benefit},
                )
            ).first()
            counts = await connection.execute(
                text(
                    "SELECT status, count(*) FROM grants "
                    "WHERE business_line = :business_line AND benefit = :benefit GROUP BY status"
                ),
                {"business_line": business_line, "benefit": benefit},
            )
            grants = dict.fromkeys(("granted", "redeemed", "expired", "revoked"), 0)
            for status, count in counts:
                grants[status] = count
        units, value = (int(ledger[0]), Decimal(ledger[1])) if ledger else (0, Decimal(0))
        stock = spec.stock if spec else None
        budget = money(spec.budget) if spec and spec.budget is not None else None
        return BenefitStatus(
            business_line=business_line,
            benefit=benefit,
            units_granted=units,
            value_granted=float(value),
            units_remaining=None if stock is None else stock - units,
            value_remaining=None if budget is None else float(budget - value),
            grants=grants,
        )

    async def find_grant(self, grant_id: str) -> GrantView | None:
        async with reading(self._sessions) as connection:
            row = (
                await connection.execute(text(f"{_GRANT_VIEW} WHERE id = :id"), {"id": grant_id})
            ).first()
        return GrantView.model_validate(row._asdict()) if row is not None else None

    async def user_grants(self, request: UserGrantsInput) -> UserGrantsResult:
        """The user's grants, newest first, a page at a time."""
        after = request.after
        async with reading(self._sessions) as connection:
            rows = (
                await connection.execute(
                    text(
                        f"{_GRANT_VIEW} WHERE user_id = :user"
                        " AND (CAST(:lines AS text[]) IS NULL"
                        "      OR business_line = ANY(CAST(:lines AS text[])))"
                        " AND (CAST(:after_at AS timestamptz) IS NULL"
                        "      OR (granted_at, id) < (CAST(:after_at AS timestamptz), :after_id))"
                        " ORDER BY granted_at DESC, id DESC LIMIT :limit"
                    ),
                    {
                        "user": request.user_id,
                        "lines": request.business_lines,
                        "after_at": utc(after.granted_at) if after else None,
                        "after_id": after.id if after else "",
                        # One more than asked tells whether another page follows.
                        "limit": request.limit + 1,
                    },
                )
            ).all()
        grants = [GrantView.model_validate(row._asdict()) for row in rows[: request.limit]]
        last = grants[-1] if len(rows) > request.limit else None
        return UserGrantsResult(
            grants=grants,
            next=GrantPosition(granted_at=last.granted_at, id=last.id) if last else None,
        )

    async def _change(
        self, requests: Sequence[GrantChangeRequest], change: _Change
    ) -> list[GrantChangeOutcome]:
        unique = _first_by_key(requests)
        async with transaction(self._sessions) as connection:
            # One request per grant per round keeps a batch that names a grant twice sequential.
            for round_ in _rounds(unique):
                params = {
                    "ids": [r.grant_id for r in round_],
                    "keys": [r.key for r in round_],
                    "ats": [utc(r.at) for r in round_],
                }
                await connection.execute(text(_EXPIRE_LISTED), params)
                await connection.execute(text(change.statement), params)
            states = await connection.execute(
                text(
                    f"SELECT id, status, {change.key_column} FROM grants "
                    f"WHERE id = ANY(CAST(:ids AS text[])) "
                    f"OR {change.key_column} = ANY(CAST(:keys AS text[]))"
                ),
                {"ids": [r.grant_id for r in unique], "keys": [r.key for r in unique]},
            )
        status_by_id: dict[str, str] = {}
        grant_by_key: dict[str, str] = {}
        for grant_id, status, change_key in states:
            status_by_id[grant_id] = status
            if change_key is not None:
                grant_by_key[change_key] = grant_id
        outcomes = {r.key: _change_outcome(r, change, status_by_id, grant_by_key) for r in unique}
        return [outcomes[r.key] for r in requests]


async def _open_ledgers(
    connection: AsyncConnection, requests: Sequence[GrantRequest]
) -> dict[str, Hold]:
    """Create missing ledger rows, lock each (benefit, user), and answer which requests'
    campaigns hold them: one round trip. A new ledger row is locked until this transaction
    ends, but every grant of that benefit waits for its ledger row anyway. Same-key
    requests share a user, so the lock also serialises retries of one key: what is read
    after it (`recorded_grants`) shows a key decided before."""
    pairs = sorted({(r.business_line, r.benefit) for r in requests})
    campaign_ids = sorted({r.run.campaign_id for r in requests if r.run and r.run.campaign_id})
    things = [("benefits", r.business_line, r.benefit, r.user_id) for r in requests]
    rows = await run(
        connection,
        _OPEN_LEDGERS,
        {
            "lines": [line for line, _ in pairs],
            "benefits": [name for _, name in pairs],
            "campaigns": campaign_ids,
            "lock_keys": lock_keys(things),
        },
    )
    return holds_of(rows)


_OPEN_LEDGERS = Statement(
    "WITH opened AS ("
    " INSERT INTO benefit_ledgers (business_line, benefit, units_granted, value_granted)"
    " SELECT line, benefit, 0, 0"
    " FROM unnest(CAST(:lines AS text[]), CAST(:benefits AS text[])) AS t(line, benefit)"
    f" ON CONFLICT DO NOTHING), {LOCKED}"
    # From `locked`, so the locks are taken even when there is no campaign to read.
    " SELECT c.id, c.state FROM locked"
    " LEFT JOIN campaigns c ON c.id = ANY(CAST(:campaigns AS text[]))"
)


def _held(request: GrantRequest, hold: Hold) -> GrantOutcome:
    return GrantOutcome(key=request.key, outcome=hold, quantity=request.quantity)


def _run_writes(
    requests: Sequence[GrantRequest], outcomes: dict[str, GrantOutcome]
) -> list[RunWrite]:
    """For journey grants: the run's pending records, this step's record, its next step."""
    return [
        step_done(request, request.run, "grant", grant_result(outcomes[request.key]))
        for request in requests
        if request.run is not None
    ]


@dataclass(frozen=True, slots=True)
class _Change:
    """Redeem or revoke: the outcome it produces, the column holding its key, its UPDATE."""

    outcome: ChangeOutcome
    key_column: str
    statement: str


_REQUESTS = (
    "unnest(CAST(:ids AS text[]), CAST(:keys AS text[]), CAST(:ats AS timestamptz[])) "
    "AS r(grant_id, key, at)"
)
# A grant found past its time by a redeem or revoke expires then and there.
_EXPIRE_LISTED = f"""
UPDATE grants g SET status = 'expired' FROM {_REQUESTS}
WHERE g.id = r.grant_id AND g.status = 'granted' AND g.expires_at < r.at
"""
_REDEEM = _Change(
    "redeemed",
    "redeem_key",
    f"""
UPDATE grants g SET status = 'redeemed', redeemed_at = r.at, redeem_key = r.key
FROM {_REQUESTS}
WHERE g.id = r.grant_id AND g.status = 'granted'
  AND NOT EXISTS (SELECT 1 FROM grants used WHERE used.redeem_key = r.key)
""",
)
# Revoking hands the units and value back to the ledger in the same statement.
_REVOKE = _Change(
    "revoked",
    "revoke_key",
    f"""
WITH revoked AS (
  UPDATE grants g SET status = 'revoked', revoked_at = r.at, revoke_key = r.key
  FROM {_REQUESTS}
  WHERE g.id = r.grant_id AND g.status = 'granted'
    AND NOT EXISTS (SELECT 1 FROM grants used WHERE used.revoke_key = r.key)
  RETURNING g.business_line, g.benefit, g.quantity, g.value
), returned AS (
  SELECT business_line, benefit, sum(quantity) AS units, sum(value) AS value
  FROM revoked GROUP BY business_line, benefit
)
UPDATE benefit_ledgers l
SET units_granted = l.units_granted - returned.units,
    value_granted = l.value_granted - returned.value,
    updated_at = now()
FROM returned
WHERE l.business_line = returned.business_line AND l.benefit = returned.benefit
""",
)
_GRANT_VIEW = (
    "SELECT id, business_line, benefit, benefit_version, benefit_type, user_id, quantity,"
    " CAST(value AS float8) AS value, unit, status, code, workflow_id, step_id, granted_at,"
    " expires_at, redeemed_at, revoked_at FROM grants"
)
_SETTLED: dict[str, ChangeOutcome] = {
    "redeemed": "already_redeemed",
    "revoked": "already_revoked",
    "expired": "expired",
}


def _change_outcome(
    request: GrantChangeRequest,
    change: _Change,
    status_by_id: dict[str, str],
    grant_by_key: dict[str, str],
) -> GrantChangeOutcome:
    if request.key in grant_by_key:
        return GrantChangeOutcome(
            key=request.key, grant_id=grant_by_key[request.key], outcome=change.outcome
        )
    status = status_by_id.get(request.grant_id)
    # No listed grant is still `granted` here: the first request naming it changed it.
    outcome = "not_found" if status is None else _SETTLED[status]
    return GrantChangeOutcome(key=request.key, grant_id=request.grant_id, outcome=outcome)


_Keyed = TypeVar("_Keyed", GrantRequest, GrantChangeRequest)


def _first_by_key(requests: Iterable[_Keyed]) -> list[_Keyed]:
    """The first request of each key: a repeated key is answered with the first one's result."""
    first: dict[str, _Keyed] = {}
    for request in requests:
        first.setdefault(request.key, request)
    return list(first.values())


def _rounds(requests: Sequence[GrantChangeRequest]) -> list[list[GrantChangeRequest]]:
    rounds: list[list[GrantChangeRequest]] = []
    seen: Counter[str] = Counter()
    for request in requests:
        index = seen[request.grant_id]
        seen[request.grant_id] += 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(request)
    return rounds
