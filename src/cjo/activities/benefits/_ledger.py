"""Granting from a benefit's ledger: the per-request decisions behind `benefits.grant`.

Stock and budget move only through a conditional UPDATE of the ledger row, so concurrent
grants stop exactly at the limit; the per-user count is taken under the caller's advisory
lock on (business line, benefit, user).
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from itertools import groupby
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncConnection

from cjo.activities._base import new_id, utc
from cjo.activities.benefits.models import Shortfall
from cjo.dsl import BenefitSpec
from cjo.dsl._types import duration_seconds
from cjo.steps.contracts import GrantOutcome, GrantRequest, RefusalReason
from cjo.store.db import Statement, run

GRANT_ACTIVITY = "benefits.grant"
# Numeric(20, 4) columns: round once here so the ledger and the grants always agree.
_CENT_FRACTION = Decimal("0.0001")


def money(amount: float) -> Decimal:
    return Decimal(str(amount)).quantize(_CENT_FRACTION)


def _expires_at(spec: BenefitSpec, at: datetime) -> datetime:
    if isinstance(spec.validity, str):
        return at + timedelta(seconds=duration_seconds(spec.validity))
    return utc(datetime.fromisoformat(spec.validity.until))


def _window_start(request: GrantRequest) -> datetime | None:
    within = request.spec.per_user.within if request.spec.per_user else None
    return None if within is None else utc(request.at) - timedelta(seconds=duration_seconds(within))


async def recorded_grants(connection: AsyncConnection, keys: list[str]) -> dict[str, GrantOutcome]:
    """Results already recorded for these keys: grant rows, or receipts of refusals."""
    rows = await run(connection, _RECORDED, {"keys": keys, "activity": GRANT_ACTIVITY})
    recorded: dict[str, GrantOutcome] = {}
    for row in rows:
        granted = dict(zip(_RECORDED_COLUMNS, row, strict=True))
        result = granted.pop("result")
        recorded[row[0]] = (
            _granted(granted) if result is None else GrantOutcome.model_validate(result)
        )
    return recorded


_RECORDED_COLUMNS = ("key", "id", "code", "quantity", "value", "unit", "expires_at", "result")
_RECORDED = Statement(
    """
SELECT key, id, code, quantity, value, unit, expires_at, NULL AS result
FROM grants WHERE key = ANY(CAST(:keys AS text[]))
UNION ALL
SELECT key, NULL, NULL, NULL, NULL, NULL, NULL, result
FROM activity_receipts WHERE key = ANY(CAST(:keys AS text[])) AND activity = :activity
"""
)


async def decide(
    connection: AsyncConnection, requests: list[GrantRequest]
) -> dict[str, GrantOutcome]:
    """Grant or refuse each request, in order within each benefit; the caller holds the locks."""
    held = await _held_grants(connection, requests)
    outcomes: dict[str, GrantOutcome] = {}
    # Every transaction takes ledger rows in this one order, so two batches cannot deadlock.
    ordered = sorted(requests, key=lambda r: (r.business_line, r.benefit))
    for _, same_benefit in groupby(ordered, key=lambda r: (r.business_line, r.benefit)):
        group = list(same_benefit)
        passed, refused = _screen(group, _Allowance(held))
        one_spec = len({r.spec for r in group}) == 1
        # Counters only grow, so a total that fits means every request fitted in turn.
        together = await _grant(connection, passed) if len(passed) > 1 and one_spec else None
        if isinstance(together, dict):
            outcomes.update(together)
            outcomes.update(refused)
        else:
            outcomes.update(await _one_by_one(connection, group, _Allowance(held)))
    receipts = [
        {"key": o.key, "activity": GRANT_ACTIVITY, "result": o.model_dump(mode="json")}
        for o in outcomes.values()
        if o.outcome != "granted"
    ]
    if receipts:
        await run(connection, _RECEIPTS, {"receipts": json.dumps(receipts)})
    return outcomes


class _Allowance:
    """Per-user limits across one batch: grants the user holds plus those made in the batch."""

    def __init__(self, held: dict[str, int]) -> None:
        self._held = held
        self._granted_now: dict[str, list[datetime]] = defaultdict(list)

    def refusal(self, request: GrantRequest) -> GrantOutcome | None:
        """Why the request fails before the ledger is asked, if it does."""
        at = utc(request.at)
        if _expires_at(request.spec, at) < at:
            return _refusal(request, "exhausted", "validity_ended")
        limit = request.spec.per_user
        if limit is None:
            return None
        since = _window_start(request)
        in_batch = sum(
            1 for moment in self._granted_now[request.user_id] if since is None or moment > since
        )
        if self._held.get(request.key, 0) + in_batch >= limit.max:
            return _refusal(request, "limited", "per_user")
        return None

    def record(self, request: GrantRequest) -> None:
        self._granted_now[request.user_id].append(utc(request.at))


def _screen(
    group: list[GrantRequest], allowance: _Allowance
) -> tuple[list[GrantRequest], dict[str, GrantOutcome]]:
    """Split one benefit's requests as if the ledger could give every one of them."""
    passed: list[GrantRequest] = []
    refused: dict[str, GrantOutcome] = {}
    for request in group:
        if refusal := allowance.refusal(request):
            refused[request.key] = refusal
        else:
            allowance.record(request)
            passed.append(request)
    return passed, refused


async def _one_by_one(
    connection: AsyncConnection, group: list[GrantRequest], allowance: _Allowance
) -> dict[str, GrantOutcome]:
    """One benefit's requests in turn, each asking the ledger for itself."""
    outcomes: dict[str, GrantOutcome] = {}
    # Once a quantity failed, a larger one of the same spec cannot fit in this batch either.
    shortfalls: dict[tuple[BenefitSpec, int], Shortfall] = {}
    for request in group:
        if refusal := allowance.refusal(request):
            outcomes[request.key] = refusal
            continue
        known = [
            reason
            for (spec, quantity), reason in shortfalls.items()
            if spec == request.spec and quantity <= request.quantity
        ]
        granted = known[0] if known else await _grant(connection, [request])
        if isinstance(granted, dict):
            allowance.record(request)
            outcomes.update(granted)
        else:
            shortfalls[(request.spec, request.quantity)] = granted
            outcomes[request.key] = _refusal(request, "exhausted", granted)
    return outcomes


async def _held_grants(connection: AsyncConnection, requests: list[GrantRequest]) -> dict[str, int]:
    """Per request with a per-user limit: the user's grants of that benefit in its window."""
    limited = [r for r in requests if r.spec.per_user]
    if not limited:
        return {}
    counts = await run(
        connection,
        _HELD,
        {
            "lines": [r.business_line for r in limited],
            "benefits": [r.benefit for r in limited],
            "users": [r.user_id for r in limited],
            "since": [_window_start(r) for r in limited],
        },
    )
    return {limited[ordinal - 1].key: count for ordinal, count in counts}


_HELD = Statement(
    """
SELECT r.ord, count(g.id)
FROM unnest(CAST(:lines AS text[]), CAST(:benefits AS text[]), CAST(:users AS text[]),
            CAST(:since AS timestamptz[])) WITH ORDINALITY AS r(business_line, benefit, user_id,
                                                               since, ord)
LEFT JOIN grants g ON g.user_id = r.user_id AND g.business_line = r.business_line
  AND g.benefit = r.benefit AND g.status <> 'revoked'
  AND (r.since IS NULL OR g.granted_at > r.since)
GROUP BY r.ord
"""
)


_GRANT_COLUMNS = (
    "id text, key text, business_line text, benefit text, benefit_version text,"
    " user_id text, quantity integer, unit_value numeric, value numeric, unit text,"
    " benefit_type text, status text, code text, workflow_id text, step_id text,"
    " granted_at timestamptz, expires_at timestamptz"
)
_GRANT_FIELDS = (
    "id, key, business_line, benefit, benefit_version, user_id, quantity, unit_value, value,"
    " unit, benefit_type, status, code, workflow_id, step_id, granted_at, expires_at"
)
# Count the requests on the ledger if all of them fit, and only then insert their grants:
# one round trip. Nothing is taken and nothing granted when any limit would be crossed.
_TAKE_AND_GRANT = Statement(
    "WITH taken AS ("
    " UPDATE benefit_ledgers"
    " SET units_granted = units_granted + :units, value_granted = value_granted + :value,"
    " updated_at = now()"
    " WHERE business_line = :business_line AND benefit = :benefit"
    " AND (CAST(:stock AS bigint) IS NULL OR units_granted + :units <= CAST(:stock AS bigint))"
    " AND (CAST(:budget AS numeric) IS NULL"
    " OR value_granted + :value <= CAST(:budget AS numeric))"
    " RETURNING 1)"
    f" INSERT INTO grants ({_GRANT_FIELDS})"
    f" SELECT {_GRANT_FIELDS} FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({_GRANT_COLUMNS})"
    " WHERE EXISTS (SELECT 1 FROM taken)"
    " RETURNING key"
)


async def _grant(
    connection: AsyncConnection, requests: list[GrantRequest]
) -> dict[str, GrantOutcome] | Shortfall:
    """Grant requests of one spec if all of them fit on the ledger; else the limit they break."""
    spec = requests[0].spec
    units = sum(r.quantity for r in requests)
    params: dict[str, Any] = {
        "business_line": requests[0].business_line,
        "benefit": requests[0].benefit,
        "units": units,
        "value": money(spec.value) * units,
        "stock": spec.stock,
        "budget": None if spec.budget is None else money(spec.budget),
    }
    rows = [_grant_row(request) for request in requests]
    inserted = await run(
        connection, _TAKE_AND_GRANT, {**params, "rows": json.dumps(rows, default=str)}
    )
    if inserted:
        return {row["key"]: _granted(row) for row in rows}
    # Only to name the limit for the record; the statement above already decided.
    ((over_stock,),) = await run(connection, _OVER_STOCK, params)
    return "stock" if over_stock else "budget"


_OVER_STOCK = Statement(
    "SELECT CAST(:stock AS bigint) IS NOT NULL"
    " AND units_granted + :units > CAST(:stock AS bigint) FROM benefit_ledgers"
    " WHERE business_line = :business_line AND benefit = :benefit"
)
_RECEIPTS = Statement(
    "INSERT INTO activity_receipts (key, activity, result)"
    " SELECT key, activity, result FROM jsonb_to_recordset(CAST(:receipts AS jsonb))"
    " AS r(key text, activity text, result jsonb)"
)


def _grant_row(request: GrantRequest) -> dict[str, Any]:
    at = utc(request.at)
    unit_value = money(request.spec.value)
    return {
        "id": new_id(),
        "key": request.key,
        "business_line": request.business_line,
        "benefit": request.benefit,
        "benefit_version": request.benefit_version,
        "user_id": request.user_id,
        "quantity": request.quantity,
        "unit_value": unit_value,
        "value": unit_value * request.quantity,
        "unit": request.spec.unit,
        "benefit_type": request.spec.type,
        "status": "granted",
        # 96 random bits: a code cannot be guessed from another user's.
        "code": secrets.token_hex(12).upper(),
        "workflow_id": request.workflow_id,
        "step_id": request.step_id,
        "granted_at": at,
        "expires_at": _expires_at(request.spec, at),
    }


def _granted(row: Mapping[Any, Any]) -> GrantOutcome:
    return GrantOutcome(
        key=row["key"],
        outcome="granted",
        grant_id=row["id"],
        code=row["code"],
        quantity=row["quantity"],
        value=float(row["value"]),
        unit=row["unit"],
        expires_at=row["expires_at"],
    )


def _refusal(
    request: GrantRequest, outcome: Literal["exhausted", "limited"], reason: RefusalReason
) -> GrantOutcome:
    return GrantOutcome(key=request.key, outcome=outcome, reason=reason, quantity=request.quantity)
